//! The strategy bench (`reagent strategy bench`, host/src/lab): a benched
//! campaign is the real engine's campaign, and the command compares
//! strategies on a tiny task.

use reagent::lab::tasks::Task;
use reagent::lab::{self, CampaignSettings};
use reagent::records::campaign::TrialStatus;
use reagent::store::Store;
use reagent::strategy::{StrategySource, render_value};

use crate::campaign::{Project, text};

/// What a campaign decided, trial by trial: the hypothesis (its changes,
/// where it came from), the seed, how the trial ended and what it measured;
/// then the winner.
fn decisions(store: &Store, id: u64) -> Vec<String> {
    let hyps = store.hypotheses(id).unwrap();
    let mut trials = store.trials(id).unwrap();
    trials.sort_by_key(|t| t.id);
    let mut out: Vec<String> = trials
        .iter()
        .map(|t| {
            let h = hyps.iter().find(|h| h.id == t.hypothesis).unwrap();
            let changes: Vec<String> = h
                .hypothesis
                .assignments
                .iter()
                .map(|a| format!("{}={}", a.knob, render_value(&a.value)))
                .collect();
            format!(
                "t{} h{} [{}] {:?} seed {} attempt {} {:?} objective {:?} failure {:?} action {:?}",
                t.id,
                t.hypothesis,
                changes.join(","),
                h.origin,
                t.seed,
                t.attempt,
                t.status,
                t.objective,
                t.failure,
                t.action_taken,
            )
        })
        .collect();
    let row = store.campaign(id).unwrap().unwrap();
    out.push(format!("winner {:?} state {:?}", row.winner, row.state));
    out
}

#[test]
fn a_benched_campaign_takes_the_decisions_a_real_one_takes() {
    // The trainer task fails where batch × depth is too big (OOM) or the
    // learning rate too high (NaN): the debugger is in the loop too.
    let task = Task::shipped("trainer", 3).unwrap();
    let settings = CampaignSettings {
        budget: 18,
        seed: 3,
        parallel: 1,
        generator: StrategySource::Builtin("three-phase".into()),
        debugger: StrategySource::Builtin("runbook".into()),
        command: vec![
            env!("CARGO_BIN_EXE_reagent").into(),
            "__task".into(),
            "trainer".into(),
            "--instance".into(),
            "3".into(),
        ],
    };
    let toml = lab::campaign_toml(&task, &settings);

    // The real campaign: `reagent run` with local jobs running `reagent __task`.
    let p = Project::new(|t| t);
    std::fs::write(p.path("bench.toml"), &toml).unwrap();
    let o = p.reagent(&["run", "bench.toml", "--yes"]);
    assert!(
        o.status.success() || o.status.code() == Some(1),
        "{}",
        text(&o)
    );
    let real = Store::open(&p.path(".reagent/reagent.redb")).unwrap();
    let real_decisions = decisions(&real, 1);

    // The benched one: the same file through the engine and the task backend.
    let spec = reagent::spec::parse("bench.toml", &toml, p.dir.path()).unwrap();
    let store = Store::in_memory().unwrap();
    let id = lab::drive(
        &store,
        &spec,
        &task,
        crate::support::sandbox(),
        &mut Default::default(),
    )
    .unwrap();
    let bench_decisions = decisions(&store, id);
    assert_eq!(
        real_decisions.join("\n"),
        bench_decisions.join("\n"),
        "the real campaign (left) and the benched one (right) decided differently"
    );
    // The run exercised what the bench claims to reproduce: explorations,
    // failures the debugger handled, a confirmed result.
    let trials = store.trials(id).unwrap();
    assert!(trials.len() >= 15, "{bench_decisions:#?}");
    assert!(
        trials.iter().any(|t| t.status == TrialStatus::Failed),
        "no trial failed: {bench_decisions:#?}"
    );
    // And the figures the bench reports are the real campaign's.
    let (a, b) = (
        lab::engine_result(&real, 1, &task).unwrap(),
        lab::engine_result(&store, id, &task).unwrap(),
    );
    assert_eq!(a.best_so_far, b.best_so_far);
    assert_eq!((a.chosen, a.beat_holdout), (b.chosen, b.beat_holdout));
    assert_eq!((a.trials, a.failed), (b.trials, b.failed));
}

#[test]
fn bench_compares_strategies_on_a_tiny_task_with_a_table_json_and_a_plot() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("bench.svg");
    let run = |extra: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_reagent"));
        c.args([
            "strategy",
            "bench",
            "--task",
            "mixed",
            "--strategy",
            "builtin:three-phase,random",
            "--seeds",
            "3",
            "--budget",
            "12",
        ])
        .args(extra)
        .env("REAGENT_CACHE_DIR", crate::support::cache_dir());
        c.output().unwrap()
    };
    let o = run(&["--json", "--plot", svg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = out["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{out:#}");
    assert_eq!(out["runs"].as_array().unwrap().len(), 6);
    for row in rows {
        assert_eq!(row["seeds"], 3);
        let curve: Vec<f64> = row["curve"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!(curve.windows(2).all(|w| w[1] <= w[0]), "{curve:?}");
    }
    // On `mixed` one change (kernel = rbf) is worth most of the gap:
    // three-phase's validation must find it on every seed.
    let tp = rows.iter().find(|r| r["method"] == "three-phase").unwrap();
    assert!(tp["improvement_q1"].as_f64().unwrap() > 0.03, "{tp:#}");
    // Fair accounting: of three-phase's 12 trials, 3 measure the baseline
    // and 6 confirm the winner; random search spends all 12 searching.
    assert_eq!(tp["search_trials_median"], 3.0, "{tp:#}");
    let random = rows.iter().find(|r| r["method"] == "random").unwrap();
    assert_eq!(random["search_trials_median"], 12.0, "{random:#}");
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("three-phase") && plot.contains("random"));

    // The table a person reads.
    let o = run(&[]);
    assert!(o.status.success(), "{}", text(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "mixed — 12 trials, 3 seeds",
        "three-phase",
        "random",
        "P(beat on holdout)",
        "search trials",
    ] {
        assert!(table.contains(needle), "{needle}: {table}");
    }

    // Mistakes say what to do.
    let o = run(&["--task", "brannin"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("no task \"brannin\""), "{}", text(&o));
    let o = run(&["--budget", "3"]);
    assert!(text(&o).contains("too small"), "{}", text(&o));
}

#[test]
fn a_surrogate_task_is_fitted_to_a_recorded_campaign_and_benched() {
    // A short real campaign on the interact task, then its surrogate.
    let task = Task::shipped("interact", 1).unwrap();
    let settings = CampaignSettings {
        budget: 14,
        seed: 1,
        parallel: 2,
        generator: StrategySource::Builtin("three-phase".into()),
        debugger: StrategySource::Builtin("runbook".into()),
        command: vec![
            env!("CARGO_BIN_EXE_reagent").into(),
            "__task".into(),
            "interact".into(),
            "--instance".into(),
            "1".into(),
        ],
    };
    let p = Project::new(|t| t);
    std::fs::write(p.path("c.toml"), lab::campaign_toml(&task, &settings)).unwrap();
    let o = p.reagent(&["run", "c.toml", "--yes"]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    let file = p.path("c1.task.json");
    let o = p.reagent(&[
        "strategy",
        "bench",
        "--task-from-campaign",
        "1",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("replicated configurations"),
        "{}",
        text(&o)
    );
    // The surrogate agrees with the task where the campaign measured.
    let fitted = Task::named(file.to_str().unwrap(), 0).unwrap();
    let base = fitted.truth(&fitted.baseline()).unwrap();
    let truth = task.truth(&task.baseline()).unwrap();
    assert!((base - truth).abs() < 0.01, "{base} vs {truth}");
    let o = p.reagent(&[
        "strategy",
        "bench",
        "--task",
        file.to_str().unwrap(),
        "--seeds",
        "2",
        "--budget",
        "10",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("campaign-1 — 10 trials"), "{}", text(&o));
}

/// The venv's Python with Optuna (scripts/test.sh makes it), or None when
/// this machine has none and the run does not require it.
fn bench_python() -> Option<std::path::PathBuf> {
    crate::support::python_with("optuna")
}

#[test]
fn optuna_samplers_run_on_the_same_tasks_seeded() {
    let Some(python) = bench_python() else { return };
    let run = || {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_reagent"))
            .args([
                "strategy",
                "bench",
                "--task",
                "branin",
                "--strategy",
                "optuna-tpe,optuna-random",
                "--seeds",
                "2",
                "--budget",
                "16",
                "--json",
                "--python",
            ])
            .arg(&python)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let (a, b) = (run(), run());
    let rows = a["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{a:#}");
    for r in rows {
        // Branin's baseline is 24 above its optimum: any search gains.
        assert!(r["improvement_median"].as_f64().unwrap() > 1.0, "{r:#}");
    }
    let runs = |v: &serde_json::Value| {
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["method"].clone(),
                    r["seed"].clone(),
                    r["best_so_far"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    // Seeded: the same trials twice; and the two samplers differ.
    assert_eq!(runs(&a), runs(&b));
    assert_ne!(runs(&a)[0].2, runs(&a)[2].2);
}
