//! Reagent against Optuna (TPE) and random search, and the host's own costs,
//! measured in one run. Needs `bench/setup-venv.sh` (Optuna from PyPI into
//! target/python/venv); `scripts/bench.sh` runs everything in order.
//!
//! 1. Search efficiency: the same knob space, the same trial budget and the
//!    same training command, launched as subprocesses by all three methods,
//!    for each objective × budget × seed. Reported per budget: the median
//!    best validation improvement over the baseline, the held-out
//!    improvement of the configuration each method would ship (re-run on
//!    fresh seeds), the trials needed to reach Optuna's final best, and
//!    Reagent / Optuna ratios.
//! 2. Orchestration overhead: N no-op trials, Reagent vs an Optuna ask/tell
//!    loop launching the same no-op subprocess.
//! 3. Hibernation: processes and memory left while detached jobs run.
//! 4. The store at scale: `status` and `report` latency, peak memory and the
//!    database size with 100,000 recorded trials.
//! 5. Peak memory of the host driving 64 concurrent no-op jobs, and (6.)
//!    one driver serving 8 campaigns of 16 concurrent jobs each.
//!
//! Knobs (environment): REAGENT_BENCH_OBJECTIVES (noisy,ranker),
//! REAGENT_BENCH_BUDGETS (30,60), REAGENT_BENCH_SEEDS (3),
//! REAGENT_BENCH_NOOP_TRIALS (2000), REAGENT_BENCH_STORE_TRIALS (100000),
//! REAGENT_BENCH_ONLY (search,overhead,hibernation,store,memory,
//! portfolio-memory; `stopping`,
//! the ranker with and without early stopping, runs only when named).
//! Results: target/bench/compare.json.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use reagent::spec::{self, Campaign};
use reagent::strategy::{KnobKind, Value, render_value, value_json};
use serde_json::{Value as Json, json};

mod common;
mod ranker_bench;

use common::{NOOP, REAGENT};
use ranker_bench::{check, env_list, repo};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs a child to the end; returns (output, wall seconds, CPU seconds, peak
/// RSS in KiB) from wait4, so each child's figures are its own.
fn measured(cmd: &mut Command) -> (std::process::Output, f64, f64, u64) {
    // The peak RSS comes from GNU time when it is there: a child spawned
    // from this process (vfork + exec) starts its `ru_maxrss` at this
    // process's own peak (hundreds of MiB after the store bench fills a
    // database in memory), which made `status` look like 298 MiB.
    let time = Path::new("/usr/bin/time");
    let mut wrapped;
    let cmd = if time.exists() {
        wrapped = Command::new(time);
        wrapped
            .args(["-f", "bench-maxrss-kib %M", "--"])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        if let Some(d) = cmd.get_current_dir() {
            wrapped.current_dir(d);
        }
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        &mut wrapped
    } else {
        cmd
    };
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    // Read the pipes on threads so a chatty child never blocks.
    let mut child = child;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).ok();
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).ok();
        v
    });
    // SAFETY: wait4 on our own child, with zeroed out-parameters.
    #[allow(unsafe_code)]
    let (status, usage) = unsafe {
        let mut status: libc::c_int = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::wait4(pid, &mut status, 0, &mut usage);
        (status, usage)
    };
    let wall = start.elapsed().as_secs_f64();
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = secs(usage.ru_utime) + secs(usage.ru_stime);
    use std::os::unix::process::ExitStatusExt as _;
    let mut stderr = t_err.join().unwrap();
    let mut maxrss = usage.ru_maxrss as u64;
    let text = String::from_utf8_lossy(&stderr).into_owned();
    if let Some(at) = text.rfind("bench-maxrss-kib ") {
        maxrss = text[at + 17..].trim().parse().unwrap_or(maxrss);
        stderr.truncate(at);
    }
    let output = std::process::Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: t_out.join().unwrap(),
        stderr,
    };
    (output, wall, cpu, maxrss)
}

fn python() -> PathBuf {
    let p = repo().join("target/python/venv/bin/python3");
    assert!(
        p.exists(),
        "no Optuna venv: run bench/setup-venv.sh first (scripts/bench.sh does)"
    );
    p
}

// ------------------------------------------------------------ objectives

/// A training command with its knob space: a campaign file, read with
/// Reagent's own parser so all three methods get the same space.
struct Objective {
    name: String,
    spec: Campaign,
    /// Extra PATH entry the command needs.
    path: Option<PathBuf>,
}

fn noisy() -> Objective {
    let file = repo().join("bench/configs/noisy.toml");
    let mut spec = spec::load(&file).unwrap_or_else(|e| panic!("{e}"));
    // The venv's python starts in ~45 ms, the pyenv shim in ~200.
    spec.job.command[0] = python().display().to_string();
    Objective {
        name: "noisy".into(),
        spec,
        path: None,
    }
}

fn ranker() -> Objective {
    ranker_sized(
        "ranker",
        &["--users", "300", "--items", "600", "--queries", "900"],
    )
}

/// The ranker on click logs of the demo's size, where a trial trains for
/// seconds (long enough for early stopping to act on).
fn ranker_demo_size() -> Objective {
    ranker_sized("ranker-demo-size", &[])
}

fn ranker_sized(folder: &str, size: &[&str]) -> Objective {
    let root = repo();
    let bin = ranker_bench::ranker_bin();
    let dir = root.join("target/bench").join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    ranker_bench::ranker_data_sized(&bin, &dir.join("data"), "7", size);
    let toml = std::fs::read_to_string(root.join("examples/ranker/campaign.toml"))
        .unwrap()
        // No injected infrastructure flakes: this compares search, not
        // failure handling (Optuna would just lose those trials).
        .replace(
            "REAGENT_RANKER_FLAKE = \"0.1\"",
            "REAGENT_RANKER_FLAKE = \"0\"",
        );
    std::fs::write(dir.join("campaign.toml"), toml).unwrap();
    let spec = spec::load(&dir.join("campaign.toml")).unwrap_or_else(|e| panic!("{e}"));
    Objective {
        name: "ranker".into(),
        spec,
        path: Some(bin),
    }
}

fn path_with(extra: &Option<PathBuf>) -> String {
    let base = std::env::var("PATH").unwrap_or_default();
    match extra {
        Some(p) => format!("{}:{base}", p.display()),
        None => base,
    }
}

/// The knob space as optuna_runner.py reads it.
fn space_json(spec: &Campaign) -> Json {
    Json::Array(
        spec.knobs
            .iter()
            .map(|k| {
                let mut o = json!({"name": k.name, "baseline": value_json(&k.baseline)});
                match &k.kind {
                    KnobKind::Float(r) => {
                        o["kind"] = "float".into();
                        o["low"] = r.low.into();
                        o["high"] = r.high.into();
                    }
                    KnobKind::LogFloat(r) => {
                        o["kind"] = "log-float".into();
                        o["low"] = r.low.into();
                        o["high"] = r.high.into();
                    }
                    KnobKind::Int(r) => {
                        o["kind"] = "int".into();
                        o["low"] = r.low.into();
                        o["high"] = r.high.into();
                    }
                    KnobKind::Categorical(c) => {
                        o["kind"] = "categorical".into();
                        o["choices"] = json!(c);
                    }
                    KnobKind::Flag => o["kind"] = "flag".into(),
                }
                o
            })
            .collect(),
    )
}

/// Runs the objective's command once for `config` (knob → value) with
/// `seed`; returns (objective, holdout).
fn evaluate(obj: &Objective, config: &BTreeMap<String, String>, seed: u64) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("metrics.jsonl");
    let mut values = config.clone();
    values.insert("seed".into(), seed.to_string());
    values.insert("trial".into(), "0".into());
    let argv: Vec<String> = obj
        .spec
        .job
        .command
        .iter()
        .map(|a| reagent::campaign::engine::render_arg(a, &values))
        .collect();
    let o = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(&obj.spec.job.workdir)
        .envs(obj.spec.job.env.iter().cloned())
        .env("PATH", path_with(&obj.path))
        .env("REAGENT_METRICS", &metrics)
        .env("REAGENT_SEED", seed.to_string())
        .output()
        .unwrap();
    check(&o, "evaluating a configuration");
    let text = std::fs::read_to_string(&metrics).unwrap_or_default();
    let mut last: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines() {
        if let Ok(Json::Object(m)) = serde_json::from_str::<Json>(line) {
            for (k, v) in m {
                if let Some(x) = v.as_f64() {
                    last.insert(k, x);
                }
            }
        }
    }
    let holdout = obj.spec.objective.holdout.clone().unwrap_or_default();
    (
        last[&obj.spec.objective.metric],
        last.get(&holdout).copied().unwrap_or(f64::NAN),
    )
}

fn baseline_config(spec: &Campaign) -> BTreeMap<String, String> {
    spec.knobs
        .iter()
        .map(|k| (k.name.clone(), render_value(&k.baseline)))
        .collect()
}

/// One method's run: trial objectives in launch order, and the
/// configuration it would ship.
struct Run {
    objectives: Vec<Option<f64>>,
    chosen: BTreeMap<String, String>,
    wall: f64,
    /// CPU-hours the run spent (Reagent's ledger; 0 for Optuna).
    cpu_hours: f64,
    /// Trials stopped early (Reagent with `[stopping]`).
    stopped: u64,
}

fn run_reagent(obj: &Objective, budget: u32, seed: u64) -> Run {
    run_reagent_with(obj, budget, seed, "")
}

/// A Reagent campaign on `obj`, with `extra` appended to its file.
fn run_reagent_with(obj: &Objective, budget: u32, seed: u64, extra: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mut toml = std::fs::read_to_string(obj.spec.job.workdir.join(if obj.name == "noisy" {
        "noisy.toml"
    } else {
        "campaign.toml"
    }))
    .unwrap();
    // Same budget in trials, one at a time like the Optuna loop; a
    // different strategy seed per replicate.
    let set = |toml: &mut String, key: &str, value: String| {
        let re = regex::Regex::new(&format!(r"(?m)^{key}\s*=.*$")).unwrap();
        *toml = re.replace(toml, format!("{key} = {value}")).into_owned();
    };
    set(&mut toml, "max_trials", budget.to_string());
    set(&mut toml, "max_parallel", "1".into());
    set(&mut toml, "cpu_hours", "1000.0".into());
    toml.push_str(&format!("\n[strategies]\nseed = {seed}\n{extra}"));
    let file = obj
        .spec
        .job
        .workdir
        .join(format!(".bench-{}-{budget}-{seed}.toml", obj.name));
    std::fs::write(&file, &toml).unwrap();
    let env_path = path_with(&obj.path);
    let r = |args: &[&str]| {
        Command::new(REAGENT)
            .args(args)
            .arg("--workspace")
            .arg(dir.path())
            .env("PATH", &env_path)
            .output()
            .unwrap()
    };
    check(&r(&["init"]), "reagent init");
    let start = Instant::now();
    let mut cmd = Command::new(REAGENT);
    cmd.args(["run"])
        .arg(&file)
        .args(["--yes", "--workspace"])
        .arg(dir.path())
        .env("PATH", &env_path);
    if obj.name == "noisy" {
        cmd.env("PYTHONDONTWRITEBYTECODE", "1");
    }
    let o = cmd.output().unwrap();
    let wall = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&file);
    check(&o, "reagent run");
    let trials: Json = serde_json::from_slice(&r(&["trials", "1", "--json"]).stdout).unwrap();
    let metric = &obj.spec.objective.metric;
    let mut rows: Vec<&Json> = trials.as_array().unwrap().iter().collect();
    rows.sort_by_key(|t| t["id"].as_u64());
    let objectives = rows
        .iter()
        .filter(|t| !matches!(t["status"].as_str(), Some("queued" | "dropped")))
        .map(|t| t["metrics"][metric].as_f64())
        .collect();
    let report: Json =
        serde_json::from_slice(&r(&["report", "1", "--format", "json"]).stdout).unwrap();
    let mut chosen = baseline_config(&obj.spec);
    if let Some(a) = report["best"]["assignments"].as_object() {
        for (k, v) in a {
            let value = match v {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            chosen.insert(k.clone(), value);
        }
    }
    Run {
        objectives,
        chosen,
        wall,
        cpu_hours: report["spent"]["cpu_hours"].as_f64().unwrap_or(f64::NAN),
        stopped: report["trials"]["stopped"].as_u64().unwrap_or(0),
    }
}

fn run_optuna(obj: &Objective, budget: u32, seed: u64, sampler: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let space = dir.path().join("space.json");
    let command = dir.path().join("command.json");
    let out = dir.path().join("result.json");
    std::fs::write(&space, space_json(&obj.spec).to_string()).unwrap();
    std::fs::write(&command, json!(obj.spec.job.command).to_string()).unwrap();
    let start = Instant::now();
    let o = Command::new(python())
        .arg(repo().join("bench/optuna_runner.py"))
        .arg("--space")
        .arg(&space)
        .arg("--command-json")
        .arg(&command)
        .args(["--trials", &budget.to_string(), "--sampler", sampler])
        .args(["--seed", &seed.to_string()])
        .arg("--workdir")
        .arg(dir.path().join("trials"))
        .arg("--cwd")
        .arg(&obj.spec.job.workdir)
        .args(["--metric", &obj.spec.objective.metric])
        .args([
            "--holdout",
            obj.spec.objective.holdout.as_deref().unwrap_or("none"),
        ])
        .arg("--out")
        .arg(&out)
        .envs(obj.spec.job.env.iter().cloned())
        .env("PATH", path_with(&obj.path))
        .env("OPENBLAS_NUM_THREADS", "1")
        .output()
        .unwrap();
    let wall = start.elapsed().as_secs_f64();
    check(&o, "optuna_runner.py");
    let result: Json = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let objectives = result["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["objective"].as_f64())
        .collect();
    let mut chosen = baseline_config(&obj.spec);
    if let Some(p) = result["best"]["params"].as_object() {
        for (k, v) in p {
            let spec = obj.spec.knobs.iter().find(|s| &s.name == k).unwrap();
            let value = match (&spec.kind, v) {
                (KnobKind::Int(_), v) => render_value(&Value::Int(v.as_f64().unwrap() as i64)),
                (KnobKind::Float(_) | KnobKind::LogFloat(_), v) => {
                    render_value(&Value::Float(v.as_f64().unwrap()))
                }
                (_, Json::String(s)) => s.clone(),
                (_, other) => other.to_string(),
            };
            chosen.insert(k.clone(), value);
        }
    }
    Run {
        objectives,
        chosen,
        wall,
        cpu_hours: 0.0,
        stopped: 0,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Best-so-far (minimizing) after each trial.
fn best_so_far(objs: &[Option<f64>]) -> Vec<f64> {
    let mut best = f64::INFINITY;
    objs.iter()
        .map(|o| {
            if let Some(x) = o {
                best = best.min(*x);
            }
            best
        })
        .collect()
}

fn search(results: &mut serde_json::Map<String, Json>) {
    let objectives = env_list("REAGENT_BENCH_OBJECTIVES", "noisy,ranker");
    let budgets: Vec<u32> = env_list("REAGENT_BENCH_BUDGETS", "30,60")
        .iter()
        .map(|b| b.parse().unwrap())
        .collect();
    let seeds = env_num("REAGENT_BENCH_SEEDS", 3);
    let fresh: Vec<u64> = (5001..5004).collect();
    let mut out = serde_json::Map::new();
    for name in objectives {
        let obj = match name.as_str() {
            "noisy" => noisy(),
            "ranker" => ranker(),
            other => panic!("unknown objective {other}"),
        };
        let sign = match obj.spec.objective.direction {
            reagent::strategy::Direction::Minimize => 1.0,
            reagent::strategy::Direction::Maximize => -1.0,
        };
        let base_cfg = baseline_config(&obj.spec);
        let base_valid = evaluate(&obj, &base_cfg, 1).0;
        let base_holdout: f64 = fresh
            .iter()
            .map(|s| evaluate(&obj, &base_cfg, *s).1)
            .sum::<f64>()
            / fresh.len() as f64;
        let mut per_budget = serde_json::Map::new();
        for &budget in &budgets {
            println!("\n== {} · {budget} trials · {seeds} seeds ==", obj.name);
            let mut table: BTreeMap<&str, Vec<Json>> = BTreeMap::new();
            for seed in 1..=seeds {
                let runs = [
                    ("reagent", run_reagent(&obj, budget, seed)),
                    ("optuna-tpe", run_optuna(&obj, budget, seed, "tpe")),
                    ("random", run_optuna(&obj, budget, seed, "random")),
                ];
                let tpe_final = *best_so_far(&runs[1].1.objectives).last().unwrap();
                for (method, run) in &runs {
                    let curve = best_so_far(&run.objectives);
                    let best = *curve.last().unwrap_or(&f64::INFINITY);
                    let reach = curve
                        .iter()
                        .position(|b| sign * (b - tpe_final) <= 1e-12)
                        .map(|i| i + 1);
                    let held: f64 = fresh
                        .iter()
                        .map(|s| evaluate(&obj, &run.chosen, *s).1)
                        .sum::<f64>()
                        / fresh.len() as f64;
                    let row = json!({
                        "seed": seed,
                        "trials": run.objectives.len(),
                        "best_valid": best,
                        "improvement": sign * (base_valid - best),
                        "heldout_improvement": sign * (base_holdout - held),
                        "trials_to_reach_tpe_final": reach,
                        "chosen": run.chosen,
                        "wall_secs": run.wall,
                    });
                    println!(
                        "  seed {seed} {method:<11} best {best:.5} (+{:.5}), held-out +{:.5}, reaches TPE's best at {}",
                        sign * (base_valid - best),
                        sign * (base_holdout - held),
                        reach.map_or("never".to_string(), |r| format!("trial {r}"))
                    );
                    table.entry(method).or_default().push(row);
                }
            }
            let med = |m: &str, key: &str| {
                let mut v: Vec<f64> = table[m].iter().filter_map(|r| r[key].as_f64()).collect();
                median(&mut v)
            };
            let reach = |m: &str| {
                let mut v: Vec<f64> = table[m]
                    .iter()
                    .map(|r| {
                        r["trials_to_reach_tpe_final"]
                            .as_f64()
                            .unwrap_or(f64::INFINITY)
                    })
                    .collect();
                median(&mut v)
            };
            println!(
                "  {:<12} {:>14} {:>14} {:>22}",
                "median", "improvement", "held-out", "trials to TPE's best"
            );
            for m in ["reagent", "optuna-tpe", "random"] {
                println!(
                    "  {m:<12} {:>14.5} {:>14.5} {:>22}",
                    med(m, "improvement"),
                    med(m, "heldout_improvement"),
                    if reach(m).is_finite() {
                        format!("{:.0}", reach(m))
                    } else {
                        "never".into()
                    }
                );
            }
            let ratio = med("reagent", "improvement") / med("optuna-tpe", "improvement");
            let ratio_held =
                med("reagent", "heldout_improvement") / med("optuna-tpe", "heldout_improvement");
            println!("  reagent / optuna-tpe: improvement {ratio:.2}x, held-out {ratio_held:.2}x");
            per_budget.insert(
                budget.to_string(),
                json!({
                    "runs": table,
                    "median_improvement": {
                        "reagent": med("reagent", "improvement"),
                        "optuna-tpe": med("optuna-tpe", "improvement"),
                        "random": med("random", "improvement"),
                    },
                    "median_heldout_improvement": {
                        "reagent": med("reagent", "heldout_improvement"),
                        "optuna-tpe": med("optuna-tpe", "heldout_improvement"),
                        "random": med("random", "heldout_improvement"),
                    },
                    "median_trials_to_reach_tpe_final": {
                        "reagent": reach("reagent"),
                        "random": reach("random"),
                    },
                    "ratio_reagent_over_tpe": ratio,
                    "ratio_heldout_reagent_over_tpe": ratio_held,
                }),
            );
        }
        out.insert(
            obj.name.clone(),
            json!({"baseline_valid": base_valid, "baseline_heldout": base_holdout, "budgets": per_budget}),
        );
    }
    results.insert("search".into(), Json::Object(out));
}

/// Early stopping on the ranker (the demo's data size, so that a trial
/// trains for seconds): the same campaigns with and without
/// `[stopping]` (median rule on valid_ne per epoch), same seeds; the final
/// improvement (validation and held-out) and the CPU-hours each spent.
fn stopping(results: &mut serde_json::Map<String, Json>) {
    let obj = ranker_demo_size();
    let budget = env_num("REAGENT_BENCH_STOPPING_BUDGET", 44) as u32;
    let seeds = env_num("REAGENT_BENCH_SEEDS", 3);
    let fresh: Vec<u64> = (5001..5004).collect();
    let base_cfg = baseline_config(&obj.spec);
    let base_valid = evaluate(&obj, &base_cfg, 1).0;
    let base_holdout: f64 = fresh
        .iter()
        .map(|s| evaluate(&obj, &base_cfg, *s).1)
        .sum::<f64>()
        / fresh.len() as f64;
    let rule = "\n[stopping]\nmetric = \"valid_ne\"\nmin_steps = 1\nmin_trials = 3\n";
    println!("\n== ranker · early stopping · {budget} trials · {seeds} seeds ==");
    let mut table: BTreeMap<&str, Vec<Json>> = BTreeMap::new();
    for seed in 1..=seeds {
        for (label, extra) in [("off", ""), ("on", rule)] {
            let run = run_reagent_with(&obj, budget, seed, extra);
            let best = *best_so_far(&run.objectives)
                .last()
                .unwrap_or(&f64::INFINITY);
            let held: f64 = fresh
                .iter()
                .map(|s| evaluate(&obj, &run.chosen, *s).1)
                .sum::<f64>()
                / fresh.len() as f64;
            println!(
                "  seed {seed} stopping {label:<3} best {best:.5} (+{:.5}), held-out +{:.5}, {:.4} CPU-hours, {} stopped",
                base_valid - best,
                base_holdout - held,
                run.cpu_hours,
                run.stopped
            );
            table.entry(label).or_default().push(json!({
                "seed": seed,
                "improvement": base_valid - best,
                "heldout_improvement": base_holdout - held,
                "cpu_hours": run.cpu_hours,
                "stopped": run.stopped,
                "wall_secs": run.wall,
            }));
        }
    }
    let med = |m: &str, key: &str| {
        let mut v: Vec<f64> = table[m].iter().filter_map(|r| r[key].as_f64()).collect();
        median(&mut v)
    };
    for m in ["off", "on"] {
        println!(
            "  median, stopping {m:<3}: improvement {:.5}, held-out {:.5}, {:.4} CPU-hours",
            med(m, "improvement"),
            med(m, "heldout_improvement"),
            med(m, "cpu_hours")
        );
    }
    let cpu_ratio = med("on", "cpu_hours") / med("off", "cpu_hours");
    println!(
        "  on / off: CPU-hours {cpu_ratio:.2}x, improvement {:.2}x, held-out {:.2}x",
        med("on", "improvement") / med("off", "improvement"),
        med("on", "heldout_improvement") / med("off", "heldout_improvement")
    );
    results.insert(
        "stopping".into(),
        json!({"budget": budget, "runs": table, "cpu_ratio_on_over_off": cpu_ratio}),
    );
}

// ------------------------------------------------------- host's own costs

fn noop_campaign(dir: &Path, trials: u64, parallel: u32, command: &str) -> PathBuf {
    common::noop_campaign(dir, trials, parallel, command, "60s")
}

fn overhead(results: &mut serde_json::Map<String, Json>) {
    let n = env_num("REAGENT_BENCH_NOOP_TRIALS", 2000);
    println!("\n== orchestration overhead: {n} no-op trials, one at a time ==");
    let dir = tempfile::tempdir().unwrap();
    noop_campaign(dir.path(), n, 1, NOOP);
    let (o, wall, everything) = common::run_campaign(dir.path());
    let wall = wall.as_secs_f64();
    check(&o, "reagent run (no-op)");
    let launched = std::fs::read_dir(dir.path().join(".reagent/jobs"))
        .unwrap()
        .count() as f64;
    // The no-op jobs alone, to subtract.
    let jobs = common::noop_jobs_cpu(launched as u64);
    let reagent_cpu = (everything - jobs).max(0.0);

    let out = dir.path().join("optuna-overhead.json");
    let o = Command::new(python())
        .arg(repo().join("bench/optuna_overhead.py"))
        .args(["--trials", &(launched as u64).to_string()])
        .arg("--out")
        .arg(&out)
        .env("OPENBLAS_NUM_THREADS", "1")
        .output()
        .unwrap();
    check(&o, "optuna_overhead.py");
    let opt: Json = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let opt_wall = opt["wall_secs"].as_f64().unwrap();
    let opt_cpu = opt["cpu_secs_self"].as_f64().unwrap();
    let per = |x: f64| x / launched * 1e3;
    println!(
        "  reagent:    wall {:.2} ms/trial, CPU {:.2} ms/trial (host, supervisors, wake clients; jobs excluded)",
        per(wall),
        per(reagent_cpu)
    );
    println!(
        "  optuna-tpe: wall {:.2} ms/trial, CPU {:.2} ms/trial (the Python loop; jobs excluded)",
        per(opt_wall),
        per(opt_cpu)
    );
    println!(
        "  reagent / optuna: wall {:.2}x, CPU {:.2}x   (goal ≤ 0.20x)",
        wall / opt_wall,
        reagent_cpu / opt_cpu
    );
    results.insert(
        "overhead".into(),
        json!({
            "trials": launched,
            "reagent": {"wall_ms_per_trial": per(wall), "cpu_ms_per_trial": per(reagent_cpu)},
            "optuna_tpe": {"wall_ms_per_trial": per(opt_wall), "cpu_ms_per_trial": per(opt_cpu), "raw": opt},
            "ratio_wall": wall / opt_wall,
            "ratio_cpu": reagent_cpu / opt_cpu,
        }),
    );
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn supervisors_of(dir: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains("__supervise") && cmd.contains(&*dir.to_string_lossy()) {
            out.push(pid);
        }
    }
    out
}

fn hibernation(results: &mut serde_json::Map<String, Json>) {
    println!("\n== hibernation: 4 detached jobs sleeping 5 s ==");
    let dir = tempfile::tempdir().unwrap();
    noop_campaign(dir.path(), 8, 4, &format!("sleep 5; {NOOP}"));
    let o = Command::new(REAGENT)
        .args(["run", "campaign.toml", "--yes", "--detach"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    check(&o, "reagent run --detach");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let sups = supervisors_of(dir.path());
    let rss: u64 = sups.iter().map(|p| rss_kib(*p)).sum();
    let hosts = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("reagent")
                && cmd.contains(" run")
                && cmd.contains(&*dir.path().to_string_lossy())
        })
        .count();
    println!(
        "  while 4 jobs run: {hosts} host processes, {} supervisors using {:.1} MiB RSS in all ({:.1} MiB each)",
        sups.len(),
        rss as f64 / 1024.0,
        rss as f64 / 1024.0 / sups.len().max(1) as f64
    );
    results.insert(
        "hibernation".into(),
        json!({"host_processes": hosts, "supervisors": sups.len(), "supervisors_rss_kib": rss}),
    );
    // Let them finish before the folder goes.
    std::thread::sleep(std::time::Duration::from_secs(12));
}

fn store(results: &mut serde_json::Map<String, Json>) {
    let n = env_num("REAGENT_BENCH_STORE_TRIALS", 100_000);
    println!("\n== the store with {n} recorded trials ==");
    let dir = tempfile::tempdir().unwrap();
    let file = noop_campaign(dir.path(), n, 1, NOOP);
    check(
        &Command::new(REAGENT)
            .args(["plan"])
            .arg(&file)
            .arg("--yes")
            .current_dir(dir.path())
            .output()
            .unwrap(),
        "plan",
    );
    let start = Instant::now();
    {
        use reagent::records::campaign::*;
        let store = reagent::store::Store::open(&dir.path().join(".reagent/reagent.redb")).unwrap();
        let mut row = store.campaign(1).unwrap().unwrap();
        let h0 = HypothesisRow {
            id: 0,
            stage: Stage::Validate,
            hypothesis: reagent::strategy::Hypothesis {
                title: "baseline".into(),
                rationale: String::new(),
                category: "baseline".into(),
                assignments: vec![],
                parents: vec![],
            },
            origin: Origin::Baseline,
            status: HypothesisStatus::Active,
            call_seq: None,
        };
        let chunk = 2000u64;
        let mut id = 1u64;
        while id <= n {
            store
                .write(|tx| {
                    if id == 1 {
                        tx.put_hypothesis(1, &h0)?;
                    }
                    for t in id..(id + chunk).min(n + 1) {
                        let hid = if t <= 3 { 0 } else { t };
                        let x = (t as f64 * 0.618_033_988_7).fract();
                        let assignments = vec![reagent::strategy::Assignment {
                            knob: "x".into(),
                            value: Value::Float(x),
                        }];
                        if hid != 0 {
                            tx.put_hypothesis(
                                1,
                                &HypothesisRow {
                                    id: hid,
                                    stage: Stage::Exploit,
                                    hypothesis: reagent::strategy::Hypothesis {
                                        title: format!("x = {x:.4}"),
                                        rationale: String::new(),
                                        category: "exploit".into(),
                                        assignments: assignments.clone(),
                                        parents: vec![],
                                    },
                                    origin: Origin::Generator,
                                    status: HypothesisStatus::Active,
                                    call_seq: None,
                                },
                            )?;
                        }
                        let mut metrics = BTreeMap::new();
                        metrics.insert("loss".to_string(), x);
                        tx.put_trial(
                            1,
                            &TrialRow {
                                id: t,
                                hypothesis: hid,
                                stage: if hid == 0 {
                                    Stage::Validate
                                } else {
                                    Stage::Exploit
                                },
                                seed: if t <= 3 { t } else { 1 },
                                assignments: if hid == 0 { vec![] } else { assignments },
                                key: format!("c1-t{t}"),
                                status: TrialStatus::Succeeded,
                                attempt: 1,
                                retry_of: None,
                                handle: None,
                                reserved_cpu: 0.0,
                                reserved_gpu: 0.0,
                                spent_cpu: 0.0001,
                                spent_gpu: 0.0,
                                objective: Some(if hid == 0 { 0.5 } else { x }),
                                objective_stderr: None,
                                holdout: None,
                                metrics,
                                outcome: None,
                                failure: None,
                                diagnosis: None,
                                action_taken: None,
                                guard_violation: None,
                                launched_ms: Some(0),
                                finished_ms: Some(0),
                            },
                        )?;
                        tx.append(
                            Some(1),
                            EventBody::TrialFinished {
                                id: t,
                                status: TrialStatus::Succeeded,
                                objective: Some(x),
                                spent_cpu: 0.0001,
                                spent_gpu: 0.0,
                                summary: String::new(),
                            },
                        )?;
                    }
                    Ok(())
                })
                .unwrap();
            id += chunk;
        }
        row.next_trial = n + 1;
        row.next_hypothesis = n + 1;
        row.ledger.launched = n as u32;
        row.ledger.spent_cpu = n as f64 * 0.0001;
        // The tally the engine keeps on the row (what `status` reads), as
        // a pass over these trials would leave it.
        row.tally = Some(
            reagent::campaign::engine::View::load(&store, 1)
                .unwrap()
                .tally(),
        );
        store.write(|tx| tx.put_campaign(&row)).unwrap();
    }
    let fill = start.elapsed().as_secs_f64();
    let size = std::fs::metadata(dir.path().join(".reagent/reagent.redb"))
        .unwrap()
        .len();
    let run = |args: &[&str]| {
        let mut c = Command::new(REAGENT);
        c.args(args).current_dir(dir.path());
        measured(&mut c)
    };
    let (o, status_wall, _, status_rss) = run(&["status", "1", "--json"]);
    check(&o, "status");
    let shown: Json = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(shown["trials"]["succeeded"], n, "status: {shown}");
    let (o, report_wall, _, report_rss) = run(&["report", "1", "--format", "json"]);
    check(&o, "report");
    let (o, verify_wall, _, _) = run(&["audit", "verify"]);
    check(&o, "audit verify");
    // The same `status` reading every trial, as before the row kept a
    // tally (a row without one still takes that path): the baseline.
    {
        let store = reagent::store::Store::open(&dir.path().join(".reagent/reagent.redb")).unwrap();
        let mut row = store.campaign(1).unwrap().unwrap();
        row.tally = None;
        store.write(|tx| tx.put_campaign(&row)).unwrap();
    }
    let (o, old_status_wall, _, old_status_rss) = run(&["status", "1", "--json"]);
    check(&o, "status (no tally)");
    let old: Json = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        old["trials"], shown["trials"],
        "the tally differs from the trials"
    );
    assert_eq!(old["best"], shown["best"], "the tally's best differs");
    println!(
        "  filled in {fill:.1} s; database {:.1} MiB ({:.0} bytes per trial)",
        size as f64 / 1048576.0,
        size as f64 / n as f64
    );
    println!(
        "  status {:.0} ms (peak {:.1} MiB; reading every trial instead: {:.0} ms, {:.1} MiB), report {:.0} ms (peak {:.1} MiB), audit verify {:.0} ms",
        status_wall * 1e3,
        status_rss as f64 / 1024.0,
        old_status_wall * 1e3,
        old_status_rss as f64 / 1024.0,
        report_wall * 1e3,
        report_rss as f64 / 1024.0,
        verify_wall * 1e3
    );
    results.insert(
        "store".into(),
        json!({
            "trials": n, "db_bytes": size,
            "status_ms": status_wall * 1e3, "status_peak_rss_kib": status_rss,
            "status_without_tally_ms": old_status_wall * 1e3, "status_without_tally_peak_rss_kib": old_status_rss,
            "report_ms": report_wall * 1e3, "report_peak_rss_kib": report_rss,
            "audit_verify_ms": verify_wall * 1e3,
        }),
    );
}

fn memory(results: &mut serde_json::Map<String, Json>) {
    println!("\n== host memory driving 64 concurrent no-op jobs ==");
    let dir = tempfile::tempdir().unwrap();
    noop_campaign(dir.path(), 256, 64, &format!("sleep 1; {NOOP}"));
    let mut c = Command::new(REAGENT);
    c.args(["run", "campaign.toml", "--yes"])
        .current_dir(dir.path());
    let (o, wall, cpu, rss) = measured(&mut c);
    check(&o, "reagent run (64 parallel)");
    println!(
        "  peak RSS of `reagent run` {:.1} MiB (goal ≤ 100 MiB); {wall:.1} s wall, {cpu:.2} s CPU for 256 trials",
        rss as f64 / 1024.0
    );
    results.insert(
        "memory".into(),
        json!({"parallel": 64, "trials": 256, "run_peak_rss_kib": rss, "wall_secs": wall}),
    );
}

/// Peak memory of one driver serving a portfolio: 8 campaigns of 64
/// no-op trials, each 16 at once (128 jobs in flight), no quota.
fn portfolio_memory(results: &mut serde_json::Map<String, Json>) {
    println!("\n== host memory driving 8 campaigns x 16 concurrent no-op jobs ==");
    let dir = tempfile::tempdir().unwrap();
    let file = noop_campaign(dir.path(), 64, 16, &format!("sleep 1; {NOOP}"));
    let toml = std::fs::read_to_string(&file).unwrap();
    for i in 1..=8 {
        let f = dir.path().join(format!("c{i}.toml"));
        std::fs::write(
            &f,
            toml.replace("name = \"bench\"", &format!("name = \"bench{i}\"")),
        )
        .unwrap();
        check(
            &Command::new(REAGENT)
                .args(["plan"])
                .arg(&f)
                .arg("--yes")
                .current_dir(dir.path())
                .output()
                .unwrap(),
            "plan",
        );
    }
    // One driver serves every campaign; it returns when campaign 8 ends.
    let mut c = Command::new(REAGENT);
    c.args(["run", "8"]).current_dir(dir.path());
    let (o, wall, cpu, rss) = measured(&mut c);
    check(&o, "reagent run (8 x 16)");
    for i in 1..=8 {
        let o = Command::new(REAGENT)
            .args(["run", &i.to_string()])
            .current_dir(dir.path())
            .output()
            .unwrap();
        check(&o, "reagent run (the rest)");
    }
    println!(
        "  peak RSS of `reagent run` {:.1} MiB (goal ≤ 150 MiB); {wall:.1} s wall, {cpu:.2} s CPU",
        rss as f64 / 1024.0
    );
    results.insert(
        "portfolio_memory".into(),
        json!({"campaigns": 8, "parallel": 16, "trials_each": 64, "run_peak_rss_kib": rss, "wall_secs": wall}),
    );
}

fn main() {
    let only = env_list(
        "REAGENT_BENCH_ONLY",
        "search,overhead,hibernation,store,memory,portfolio-memory",
    );
    let mut results = serde_json::Map::new();
    for part in &only {
        match part.as_str() {
            "search" => search(&mut results),
            "stopping" => stopping(&mut results),
            "overhead" => overhead(&mut results),
            "hibernation" => hibernation(&mut results),
            "store" => store(&mut results),
            "memory" => memory(&mut results),
            "portfolio-memory" => portfolio_memory(&mut results),
            other => panic!("unknown part {other}"),
        }
    }
    let out = repo().join("target/bench/compare.json");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(
        &out,
        serde_json::to_vec_pretty(&Json::Object(results)).unwrap(),
    )
    .unwrap();
    println!("\nwritten to {}", out.display());
}
