//! The reference methods: random search (here) and Optuna's samplers (a
//! Python process running `bench/task_optimizer.py`, asked and told one
//! trial at a time over stdin/stdout). Both evaluate the baseline first,
//! every trial at seed 1 (as Reagent's exploration trials), and hand back
//! the configuration with the best observed loss: what those tools return.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;

use crate::strategy::{KnobKind, KnobSpec, Value, value_json};

use super::backend::config_from_params;
use super::tasks::{Config, Eval, Task};
use super::{Job, Run};

/// Trials of a reference method, in order.
pub struct Search {
    pub evals: Vec<(Config, Eval)>,
    pub host_ms: f64,
}

impl Search {
    pub fn into_run(self, task: &Task, label: &str, j: Job) -> Run {
        let task = task.with_instance(j.seed);
        let baseline = task.truth(&task.baseline()).unwrap_or(f64::NAN);
        let mut run = Run::start(&task.name, label, j.budget, j.seed, baseline);
        run.host_ms = self.host_ms;
        let mut best = baseline;
        let mut chosen: Option<(usize, f64)> = None;
        for (i, (config, eval)) in self.evals.iter().enumerate() {
            run.trials += 1;
            run.search_trials += 1;
            match eval {
                Eval::Done { loss, secs, .. } => {
                    run.trial_secs += secs;
                    if let Ok(v) = task.truth(config) {
                        best = best.min(v);
                    }
                    if chosen.is_none_or(|(_, l)| *loss < l) {
                        chosen = Some((i, *loss));
                    }
                }
                Eval::Failed { secs, .. } => {
                    run.trial_secs += secs;
                    run.failed += 1;
                    run.failed_secs += secs;
                }
            }
            run.best_so_far.push(best);
        }
        if let Some((i, _)) = chosen.filter(|(i, _)| *i > 0) {
            run.chosen = task.truth(&self.evals[i].0).unwrap_or(f64::NAN);
            let holdout = |k: usize| match &self.evals[k].1 {
                Eval::Done { holdout, .. } => *holdout,
                Eval::Failed { .. } => f64::INFINITY,
            };
            run.beat_holdout = holdout(i) < holdout(0);
        }
        run
    }
}

/// A value drawn uniformly from a knob's range (log-uniformly on a log knob).
fn sample(k: &KnobSpec, rng: &mut SmallRng) -> Value {
    match &k.kind {
        KnobKind::Float(r) => Value::Float(rng.random_range(r.low..=r.high)),
        KnobKind::LogFloat(r) => Value::Float(rng.random_range(r.low.ln()..=r.high.ln()).exp()),
        KnobKind::Int(r) => Value::Int(rng.random_range(r.low..=r.high)),
        KnobKind::Categorical(c) => Value::Choice(c[rng.random_range(0..c.len())].clone()),
        KnobKind::Flag => Value::Flag(rng.random_bool(0.5)),
    }
}

/// Random search: the baseline, then `budget - 1` uniform draws.
pub fn random_search(task: &Task, budget: u32, seed: u64) -> Search {
    let started = Instant::now();
    let task = task.with_instance(seed);
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x005e_ed0f_4a4d);
    let mut evals = Vec::new();
    for i in 0..budget {
        let config = if i == 0 {
            task.baseline()
        } else {
            task.knobs
                .iter()
                .map(|k| (k.name.clone(), sample(k, &mut rng)))
                .collect()
        };
        let eval = task.evaluate(&config, 1);
        evals.push((config, eval));
    }
    Search {
        evals,
        host_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

/// Which Python runs Optuna, and the script.
#[derive(Debug, Clone)]
pub struct OptunaSetup {
    pub python: PathBuf,
    pub script: PathBuf,
}

/// One Python process answering studies one after another.
pub struct OptunaSession {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Drop for OptunaSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn knob_json(k: &KnobSpec) -> serde_json::Value {
    match &k.kind {
        KnobKind::Float(r) => {
            json!({"name": k.name, "kind": "float", "low": r.low, "high": r.high})
        }
        KnobKind::LogFloat(r) => {
            json!({"name": k.name, "kind": "log-float", "low": r.low, "high": r.high})
        }
        KnobKind::Int(r) => json!({"name": k.name, "kind": "int", "low": r.low, "high": r.high}),
        KnobKind::Categorical(c) => json!({"name": k.name, "kind": "categorical", "choices": c}),
        KnobKind::Flag => json!({"name": k.name, "kind": "flag"}),
    }
}

impl OptunaSession {
    pub fn start(setup: &OptunaSetup) -> anyhow::Result<OptunaSession> {
        let mut child = Command::new(&setup.python)
            .arg(&setup.script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot start {} {}: {e} (bench/setup-venv.sh installs Optuna into target/python/venv)",
                    setup.python.display(),
                    setup.script.display()
                )
            })?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Ok(OptunaSession {
            child,
            stdin,
            stdout,
        })
    }

    fn say(&mut self, v: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        writeln!(self.stdin, "{v}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            anyhow::bail!("bench/task_optimizer.py ended early (see its error above)");
        }
        let answer: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("task_optimizer.py said {line:?}: {e}"))?;
        if let Some(e) = answer.get("error") {
            anyhow::bail!("task_optimizer.py: {e}");
        }
        Ok(answer)
    }

    /// One study of `budget` trials with `sampler` on `task` at `seed`.
    pub fn run(
        &mut self,
        task: &Task,
        sampler: &str,
        budget: u32,
        seed: u64,
    ) -> anyhow::Result<Search> {
        let started = Instant::now();
        let task = task.with_instance(seed);
        let baseline: serde_json::Map<String, serde_json::Value> = task
            .baseline()
            .iter()
            .map(|(k, v)| (k.clone(), value_json(v)))
            .collect();
        self.say(json!({
            "op": "study",
            "sampler": sampler,
            "seed": seed,
            "space": task.knobs.iter().map(knob_json).collect::<Vec<_>>(),
            "baseline": baseline,
        }))?;
        let mut evals = Vec::new();
        for _ in 0..budget {
            let asked = self.say(json!({"op": "ask"}))?;
            let params = asked
                .get("params")
                .ok_or_else(|| anyhow::anyhow!("task_optimizer.py answered {asked} to ask"))?;
            let (config, _) = config_from_params(&task.knobs, params)?;
            let eval = task.evaluate(&config, 1);
            let value = match &eval {
                Eval::Done { loss, .. } => json!(loss),
                Eval::Failed { .. } => serde_json::Value::Null,
            };
            self.say(json!({"op": "tell", "value": value}))?;
            evals.push((config, eval));
        }
        Ok(Search {
            evals,
            host_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }
}
