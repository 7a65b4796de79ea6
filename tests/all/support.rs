//! Shared fixtures: one sandbox per test binary, contexts, data.

use std::sync::{Arc, OnceLock};

use reagent::sandbox::{Limits, Sandbox, SandboxConfig};
use reagent::strategy::data::{MemoryStore, StaticData, StrategyData};
use reagent::strategy::record::CallRecord;
use reagent::strategy::{
    CallInput, Context, Direction, Estimate, FailureReport, FloatRange, Grants, IntRange, KnobKind,
    KnobSpec, Objective, Phase, StrategySource, Value,
};

/// The compile cache of the test run, under the target directory.
pub fn cache_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-component-cache")
}

/// The test venv's Python (`$REAGENT_BENCH_PYTHON`, else
/// target/python/venv, which scripts/test.sh makes), and whether it can
/// import `module`. Each test decides whether a missing one skips or fails.
pub fn venv_python(module: &str) -> (std::path::PathBuf, bool) {
    let p = std::env::var_os("REAGENT_BENCH_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/python/venv/bin/python")
        });
    let ok = std::process::Command::new(&p)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    (p, ok)
}

/// The venv's Python when it imports `module`; `None` (with a message)
/// when it does not, unless `REAGENT_REQUIRE_PYTHON=1` (CI): then the test
/// fails, naming what scripts/test.sh installs.
pub fn python_with(module: &str) -> Option<std::path::PathBuf> {
    let (p, ok) = venv_python(module);
    if ok {
        return Some(p);
    }
    assert!(
        std::env::var("REAGENT_REQUIRE_PYTHON").as_deref() != Ok("1"),
        "REAGENT_REQUIRE_PYTHON=1 but {} cannot import {module} (scripts/test.sh installs it)",
        p.display()
    );
    eprintln!(
        "skipping: {} cannot import {module} (scripts/test.sh installs it)",
        p.display()
    );
    None
}

pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        Sandbox::new(SandboxConfig {
            cache_dir: Some(cache_dir()),
            pooling: true,
        })
        .expect("sandbox")
    })
}

pub fn guest(path: &str) -> StrategySource {
    StrategySource::File(path.into())
}

pub fn knobs() -> Vec<KnobSpec> {
    vec![
        KnobSpec {
            name: "lr".into(),
            kind: KnobKind::LogFloat(FloatRange {
                low: 1e-4,
                high: 1.0,
            }),
            baseline: Value::Float(0.05),
        },
        KnobSpec {
            name: "optimizer".into(),
            kind: KnobKind::Categorical(vec!["sgd".into(), "adam".into(), "adagrad".into()]),
            baseline: Value::Choice("sgd".into()),
        },
        KnobSpec {
            name: "batch_size".into(),
            kind: KnobKind::Int(IntRange {
                low: 32,
                high: 2048,
            }),
            baseline: Value::Int(256),
        },
        KnobSpec {
            name: "dropout".into(),
            kind: KnobKind::Float(FloatRange {
                low: 0.0,
                high: 0.5,
            }),
            baseline: Value::Float(0.0),
        },
        KnobSpec {
            name: "use_bias".into(),
            kind: KnobKind::Flag,
            baseline: Value::Flag(true),
        },
    ]
}

pub fn context(campaign: &str, phase: Phase, seed: u64) -> Context {
    Context {
        campaign: campaign.into(),
        tags: vec!["test".into()],
        objective: Objective {
            metric: "valid_ne".into(),
            direction: Direction::Minimize,
        },
        knobs: knobs(),
        phase,
        baseline: Some(Estimate {
            mean: 0.8,
            sd: 0.002,
            n: 3,
        }),
        noise: Some(0.003),
        seed,
        round: 0,
        trials_done: 3,
        trials_left: 20,
    }
}

pub fn failure(log_tail: &str) -> FailureReport {
    FailureReport {
        trial: 7,
        hypothesis: 3,
        assignments: vec![],
        exit_code: Some(1),
        signal: None,
        timed_out: false,
        stopped_early: false,
        log_tail: log_tail.into(),
        attempt: 1,
        max_attempts: 3,
        last_metrics: vec![],
    }
}

/// Loads `source` with default grants and makes one propose call.
pub fn propose(source: &StrategySource, ctx: Context, max: u32, limits: &Limits) -> CallRecord {
    propose_with(source, ctx, max, limits, Arc::new(StaticData::default())).0
}

pub fn propose_with(
    source: &StrategySource,
    ctx: Context,
    max: u32,
    limits: &Limits,
    data: Arc<dyn StrategyData>,
) -> (CallRecord, MemoryStore) {
    let strategy = sandbox()
        .load(source, &Grants::default())
        .unwrap_or_else(|e| panic!("load {source}: {e}"));
    sandbox().call(
        &strategy,
        CallInput::Propose { context: ctx, max },
        data,
        MemoryStore::default(),
        limits,
    )
}

pub fn kind(record: &CallRecord) -> &'static str {
    match &record.outcome {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    }
}
