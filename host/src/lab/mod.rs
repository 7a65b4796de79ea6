//! The strategy lab's bench (`reagent strategy bench`): strategies compared
//! offline on tasks that answer a trial in microseconds.
//!
//! A Reagent strategy is benched by running the real engine (phases,
//! budget, confirmation, debugger, the audit log) over an in-memory store
//! against [`backend::TaskBackend`], which answers each job from the task:
//! not a second implementation of the campaign loop. Random search runs
//! here; Optuna's samplers through `bench/task_optimizer.py` (ask/tell over
//! stdin). Every run of a (task, budget, seed) sees the same noise.

pub mod backend;
mod others;
pub mod summary;
pub mod surrogate;
pub mod tasks;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::campaign::engine::{Engine, full_config};
use crate::governance::{self, Identity, policy::Policy};
use crate::records::campaign::{Stage, TrialStatus};
use crate::sandbox::Sandbox;
use crate::store::Store;
use crate::strategy::{KnobKind, KnobSpec, StrategySource, Value, render_value};

pub use others::OptunaSetup;
use tasks::{Config, HOLDOUT, METRIC, Task};

/// What produces configurations.
#[derive(Debug, Clone)]
pub enum Method {
    /// A generator (with a debugger) run by the real engine.
    Engine {
        generator: StrategySource,
        debugger: StrategySource,
    },
    /// Uniform random search (log-uniform on log knobs), here.
    Random,
    /// An Optuna sampler (`tpe`, `random`) through the bench's Python.
    Optuna(String),
}

impl Method {
    /// How tables and plots name it.
    pub fn label(&self) -> String {
        match self {
            Method::Engine { generator, .. } => match generator {
                StrategySource::Builtin(name) => name.clone(),
                StrategySource::File(p) => p
                    .file_stem()
                    .map_or_else(|| p.display().to_string(), |s| s.to_string_lossy().into()),
            },
            Method::Random => "random".into(),
            Method::Optuna(sampler) => format!("optuna-{sampler}"),
        }
    }

    /// `builtin:NAME`, a component path, `random`, `optuna-tpe`,
    /// `optuna-random`.
    pub fn parse(text: &str, debugger: &StrategySource) -> anyhow::Result<Method> {
        Ok(match text {
            "random" => Method::Random,
            "optuna-tpe" => Method::Optuna("tpe".into()),
            "optuna-random" => Method::Optuna("random".into()),
            _ => Method::Engine {
                generator: match StrategySource::parse(text) {
                    StrategySource::File(p) => StrategySource::File(
                        p.canonicalize()
                            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", p.display()))?,
                    ),
                    builtin => builtin,
                },
                debugger: debugger.clone(),
            },
        })
    }
}

/// One campaign's worth of results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Run {
    pub task: String,
    pub method: String,
    pub budget: u32,
    pub seed: u64,
    /// The baseline's noise-free loss.
    pub baseline: f64,
    /// Noise-free loss of the best succeeded configuration after each
    /// trial launched (the baseline's until something beats it).
    pub best_so_far: Vec<f64>,
    /// Noise-free loss of the configuration the method hands back (the
    /// baseline's when it hands back nothing).
    pub chosen: f64,
    /// Whether what it handed back beat the baseline on the holdout metric.
    pub beat_holdout: bool,
    pub trials: u32,
    /// Trials spent searching: all of a reference method's; a Reagent
    /// campaign's less its baseline replicates and confirmation runs (what
    /// it pays for honest statistics).
    pub search_trials: u32,
    pub failed: u32,
    /// Simulated seconds: all trials, and the failed ones.
    pub trial_secs: f64,
    pub failed_secs: f64,
    /// Host time of the whole campaign, in milliseconds.
    pub host_ms: f64,
}

impl Run {
    /// A run of nothing yet: the baseline is the best and the hand-back.
    pub fn start(task: &str, method: &str, budget: u32, seed: u64, baseline: f64) -> Run {
        Run {
            task: task.into(),
            method: method.into(),
            budget,
            seed,
            baseline,
            best_so_far: Vec::new(),
            chosen: baseline,
            beat_holdout: false,
            trials: 0,
            search_trials: 0,
            failed: 0,
            trial_secs: 0.0,
            failed_secs: 0.0,
            host_ms: 0.0,
        }
    }
}

/// What to bench.
pub struct Plan {
    pub tasks: Vec<Task>,
    pub methods: Vec<Method>,
    pub budgets: Vec<u32>,
    pub seeds: u64,
    /// Trials of one campaign at once (the engine's `max_parallel`).
    pub parallel: u32,
    pub threads: usize,
    pub optuna: Option<OptunaSetup>,
}

/// One (task, method, budget, seed).
#[derive(Debug, Clone, Copy)]
struct Job {
    task: usize,
    method: usize,
    budget: u32,
    seed: u64,
}

/// Runs every (task, method, budget, seed) of `plan`; `progress` hears
/// (done, total) after each campaign. Runs come back in plan order.
pub fn bench(
    plan: &Plan,
    sandbox: &Sandbox,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> anyhow::Result<Vec<Run>> {
    let mut jobs = Vec::new();
    for task in 0..plan.tasks.len() {
        for &budget in &plan.budgets {
            for method in 0..plan.methods.len() {
                for seed in 0..plan.seeds {
                    jobs.push(Job {
                        task,
                        method,
                        budget,
                        seed,
                    });
                }
            }
        }
    }
    let total = jobs.len();
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<anyhow::Result<Run>>>> =
        Mutex::new((0..total).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    // Optuna's runs go through one Python process per sampler, each on a
    // thread of its own; the rest share the workers.
    let (python, native): (Vec<usize>, Vec<usize>) =
        (0..total).partition(|&i| matches!(plan.methods[jobs[i].method], Method::Optuna(_)));
    let record = |i: usize, r: anyhow::Result<Run>| {
        results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
        progress(done.fetch_add(1, Ordering::SeqCst) + 1, total);
    };
    std::thread::scope(|scope| {
        let samplers: std::collections::BTreeSet<String> = python
            .iter()
            .filter_map(|&i| match &plan.methods[jobs[i].method] {
                Method::Optuna(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        for sampler in samplers {
            let mine: Vec<usize> = python
                .iter()
                .copied()
                .filter(|&i| matches!(&plan.methods[jobs[i].method], Method::Optuna(s) if *s == sampler))
                .collect();
            let jobs = &jobs;
            let record = &record;
            scope.spawn(move || {
                let setup = plan.optuna.as_ref();
                let mut session = setup
                    .ok_or_else(|| anyhow::anyhow!("Optuna was asked for but not set up"))
                    .and_then(others::OptunaSession::start);
                for i in mine {
                    let j = jobs[i];
                    let r = match &mut session {
                        Ok(s) => s.run(&plan.tasks[j.task], &sampler, j.budget, j.seed),
                        Err(e) => Err(anyhow::anyhow!("{e:#}")),
                    };
                    let label = format!("optuna-{sampler}");
                    record(i, r.map(|r| r.into_run(&plan.tasks[j.task], &label, j)));
                }
            });
        }
        for _ in 0..plan.threads.max(1) {
            scope.spawn(|| {
                let mut cache = Default::default();
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&i) = native.get(k) else { break };
                    let j = jobs[i];
                    let task = &plan.tasks[j.task];
                    let r = match &plan.methods[j.method] {
                        Method::Engine {
                            generator,
                            debugger,
                        } => engine_run(
                            task,
                            generator,
                            debugger,
                            j,
                            plan.parallel,
                            sandbox,
                            &mut cache,
                        ),
                        Method::Random => Ok(others::random_search(task, j.budget, j.seed)
                            .into_run(task, "random", j)),
                        Method::Optuna(_) => unreachable!("partitioned above"),
                    };
                    record(i, r);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results
        .into_iter()
        .zip(&jobs)
        .map(|(r, j)| {
            r.unwrap_or_else(|| Err(anyhow::anyhow!("not run")))
                .map_err(|e| {
                    e.context(format!(
                        "{} on task {} (budget {}, seed {})",
                        plan.methods[j.method].label(),
                        plan.tasks[j.task].name,
                        j.budget,
                        j.seed
                    ))
                })
        })
        .collect()
}

/// A knob as a campaign file writes it.
fn knob_toml(k: &KnobSpec) -> String {
    let base = match &k.baseline {
        Value::Choice(s) => format!("{s:?}"),
        Value::Float(x) => format!("{x:?}"),
        v => render_value(v),
    };
    match &k.kind {
        KnobKind::Float(r) => format!(
            "{{ kind = \"float\", low = {:?}, high = {:?}, baseline = {base} }}",
            r.low, r.high
        ),
        KnobKind::LogFloat(r) => format!(
            "{{ kind = \"log-float\", low = {:?}, high = {:?}, baseline = {base} }}",
            r.low, r.high
        ),
        KnobKind::Int(r) => format!(
            "{{ kind = \"int\", low = {}, high = {}, baseline = {base} }}",
            r.low, r.high
        ),
        KnobKind::Categorical(c) => {
            format!("{{ kind = \"categorical\", choices = {c:?}, baseline = {base} }}")
        }
        KnobKind::Flag => format!("{{ kind = \"flag\", baseline = {base} }}"),
    }
}

/// Settings of a benched campaign beyond the task.
#[derive(Debug, Clone)]
pub struct CampaignSettings {
    pub budget: u32,
    pub seed: u64,
    pub parallel: u32,
    pub generator: StrategySource,
    pub debugger: StrategySource,
    /// The job's command (a real campaign: `reagent __task …`).
    pub command: Vec<String>,
}

/// The campaign file a bench run uses: a real campaign over the task,
/// runnable with `reagent run` when `command` runs `reagent __task`.
pub fn campaign_toml(task: &Task, s: &CampaignSettings) -> String {
    let time_limit = (task.secs * 2.0).ceil();
    // Trials, not CPU-hours, bind: the budget covers every trial at its
    // full reservation (cpus × time limit) with room to spare.
    let cpu_hours = f64::from(s.budget + 2) * time_limit / 3600.0;
    let mut out = format!(
        "[campaign]\nname = \"bench-{name}\"\ntags = [\"bench\"]\n\n\
         [objective]\nmetric = \"{METRIC}\"\ndirection = \"minimize\"\nholdout = \"{HOLDOUT}\"\n\n\
         [job]\ncommand = {cmd:?}\ntime_limit = \"{time_limit}s\"\n\n\
         [job.resources]\ncpus = 1\n\n[knobs]\n",
        name = task.name,
        cmd = s.command,
    );
    for k in &task.knobs {
        out.push_str(&format!("{} = {}\n", k.name, knob_toml(k)));
    }
    out.push_str(&format!(
        "\n[budget]\ncpu_hours = {cpu_hours:?}\nmax_trials = {}\nmax_parallel = {}\n\n\
         [strategies]\ngenerator = \"{}\"\ndebugger = \"{}\"\nseed = {}\n",
        s.budget,
        s.parallel.max(1),
        source_text(&s.generator),
        source_text(&s.debugger),
        s.seed,
    ));
    out
}

fn source_text(s: &StrategySource) -> String {
    s.to_string().replace('\\', "\\\\").replace('"', "\\\"")
}

/// The campaign of one bench run, parsed as `reagent plan` would.
pub fn campaign_spec(
    task: &Task,
    s: &CampaignSettings,
    base: &Path,
) -> anyhow::Result<crate::spec::Campaign> {
    let text = campaign_toml(task, s);
    crate::spec::parse("bench.toml", &text, base).map_err(|e| anyhow::anyhow!("{e}\n{text}"))
}

/// Strategies loaded by earlier campaigns of this worker.
type Loaded = crate::campaign::engine::LoadedStrategies;

fn engine_run(
    task: &Task,
    generator: &StrategySource,
    debugger: &StrategySource,
    j: Job,
    parallel: u32,
    sandbox: &Sandbox,
    cache: &mut Loaded,
) -> anyhow::Result<Run> {
    let started = Instant::now();
    let task = task.with_instance(j.seed);
    let settings = CampaignSettings {
        budget: j.budget,
        seed: j.seed,
        parallel,
        generator: generator.clone(),
        debugger: debugger.clone(),
        command: vec![
            "reagent".into(),
            "__task".into(),
            task.name.clone(),
            "--instance".into(),
            j.seed.to_string(),
        ],
    };
    let spec = campaign_spec(&task, &settings, &std::env::temp_dir())?;
    let store = Store::in_memory()?;
    let id = drive(&store, &spec, &task, sandbox, cache)?;
    let mut run = engine_result(&store, id, &task)?;
    run.method = Method::Engine {
        generator: generator.clone(),
        debugger: debugger.clone(),
    }
    .label();
    run.budget = j.budget;
    run.seed = j.seed;
    run.host_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(run)
}

/// Registers and approves `spec` and drives it to its end against the
/// task backend; the campaign's id.
pub fn drive(
    store: &Store,
    spec: &crate::spec::Campaign,
    task: &Task,
    sandbox: &Sandbox,
    cache: &mut Loaded,
) -> anyhow::Result<u64> {
    let reg = governance::register_plan(
        store,
        spec,
        "bench.toml",
        &Identity::User("bench".into()),
        &Policy::default_policy(),
        true,
    )?;
    if let Some(e) = reg.refused {
        return Err(e.context("the bench could not approve its own plan"));
    }
    let id = reg.row.id;
    let backend = backend::TaskBackend::new(task);
    let mut engine =
        Engine::new(store, sandbox, &backend, None, |_| {}).with_strategies(std::mem::take(cache));
    engine.resume_running(id)?;
    let mut outcome = Ok(id);
    for _ in 0..100_000 {
        let pass = engine.advance(id)?;
        if !pass.state.is_active() {
            break;
        }
        if !pass.changed && pass.in_flight == 0 {
            outcome = Err(anyhow::anyhow!(
                "the campaign stopped moving in state {} with nothing in flight",
                pass.state.name()
            ));
            break;
        }
    }
    *cache = engine.into_parts().0;
    outcome
}

/// A trial's configuration as a map.
fn config_of(spec: &crate::spec::Campaign, changes: &[crate::strategy::Assignment]) -> Config {
    full_config(spec, changes).into_iter().collect()
}

/// What a finished benched campaign found, measured against the task's truth.
pub fn engine_result(store: &Store, id: u64, task: &Task) -> anyhow::Result<Run> {
    let row = store
        .campaign(id)?
        .ok_or_else(|| anyhow::anyhow!("campaign {id} is gone"))?;
    let spec = &row.spec;
    let mut trials = store.trials(id)?;
    trials.sort_by_key(|t| t.id);
    let baseline = task.truth(&task.baseline()).unwrap_or(f64::NAN);
    let mut best = baseline;
    let mut run = Run::start(&task.name, "", 0, 0, baseline);
    for t in trials.iter().filter(|t| t.handle.is_some()) {
        let secs = t.outcome.as_ref().map_or(0.0, |o| o.wall_secs);
        run.trials += 1;
        if t.hypothesis != 0 && t.stage != Stage::Confirm {
            run.search_trials += 1;
        }
        run.trial_secs += secs;
        if t.status == TrialStatus::Succeeded {
            if let Ok(v) = task.truth(&config_of(spec, &t.assignments)) {
                best = best.min(v);
            }
        } else {
            run.failed += 1;
            run.failed_secs += secs;
        }
        run.best_so_far.push(best);
    }
    if let Some(h) = row.winner {
        let hyps = store.hypotheses(id)?;
        if let Some(w) = hyps.iter().find(|x| x.id == h) {
            run.chosen = task
                .truth(&config_of(spec, &w.hypothesis.assignments))
                .unwrap_or(f64::NAN);
        }
        let holdout_mean = |hyp: u64| {
            let xs: Vec<f64> = trials
                .iter()
                .filter(|t| t.hypothesis == hyp && t.status == TrialStatus::Succeeded)
                .filter_map(|t| t.holdout)
                .collect();
            (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
        };
        run.beat_holdout = matches!(
            (holdout_mean(h), holdout_mean(0)),
            (Some(w), Some(b)) if w < b
        );
    }
    Ok(run)
}

/// Where `bench/` is: beside the binary's source checkout, or `$REAGENT_BENCH_DIR`.
pub fn bench_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("REAGENT_BENCH_DIR") {
        return Some(PathBuf::from(d));
    }
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench");
    d.is_dir().then_some(d)
}

/// A surrogate task fitted to campaign `id` of `store` (see
/// [`surrogate`]): its loss is the campaign's objective (negated when the
/// campaign maximised it), a trial's run time the median of the recorded
/// ones.
pub fn task_from_campaign(store: &Store, id: u64) -> anyhow::Result<(Task, surrogate::Fit)> {
    let row = store
        .campaign(id)?
        .ok_or_else(|| anyhow::anyhow!("no campaign {id} in this workspace"))?;
    let spec = &row.spec;
    let sign = match spec.objective.direction {
        crate::strategy::Direction::Minimize => 1.0,
        crate::strategy::Direction::Maximize => -1.0,
    };
    let mut data = Vec::new();
    let mut secs = Vec::new();
    for t in store.trials(id)? {
        let config = config_of(spec, &t.assignments);
        match t.status {
            TrialStatus::Succeeded => {
                let Some(y) = t.objective else { continue };
                data.push((config, Some(sign * y)));
                if let Some(o) = &t.outcome {
                    secs.push(o.wall_secs);
                }
            }
            TrialStatus::Failed => data.push((config, None)),
            _ => {}
        }
    }
    let fit = surrogate::fit(&spec.knobs, &data)
        .map_err(|e| e.context(format!("campaign {id} ({})", spec.name)))?;
    secs.sort_by(f64::total_cmp);
    let secs = summary::quantile(&secs, 0.5);
    let task = Task {
        name: format!("campaign-{id}"),
        summary: format!(
            "surrogate of campaign {id} ({}): a Gaussian process over {} succeeded trials{}, noise sd {:.3e} ({})",
            spec.name,
            fit.succeeded,
            if sign < 0.0 {
                format!(", loss = -{}", spec.objective.metric)
            } else {
                format!(", loss = {}", spec.objective.metric)
            },
            fit.noise_sd,
            if fit.replicated_groups > 0 {
                format!("from {} replicated configurations", fit.replicated_groups)
            } else {
                "nothing was replicated: a tenth of the loss spread".into()
            }
        ),
        knobs: spec.knobs.clone(),
        optimum: None,
        run_sd: fit.noise_sd,
        seed_sd: 0.0,
        secs: if secs.is_finite() && secs > 0.0 {
            secs
        } else {
            60.0
        },
        instance: 0,
        kind: tasks::Kind::Surrogate(Box::new(fit.surrogate.clone())),
    };
    Ok((task, fit))
}
