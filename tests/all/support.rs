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
