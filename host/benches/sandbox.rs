//! Sandbox costs, measured against baselines taken in the same run:
//! cold compile vs cache-hit load; instantiate-from-InstancePre + one small
//! `propose`, with and without the pooling allocator (p50/p99); and a
//! `propose` that reads a 10,000-trial history through the `history` import.
//!
//! Run: `cargo bench -p reagent --bench sandbox` (results also written to
//! target/bench/sandbox.json).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reagent::sandbox::test_guests as g;
use reagent::sandbox::{Limits, Sandbox, SandboxConfig};
use reagent::strategy::data::{MemoryStore, StaticData, StrategyData};
use reagent::strategy::{
    Assignment, CallInput, Context, Direction, Estimate, FloatRange, Grants, HypothesisSummary,
    IntRange, KnobKind, KnobSpec, Objective, Phase, StrategySource, TrialStatus, TrialSummary,
    Value,
};

fn knobs() -> Vec<KnobSpec> {
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
            name: "cross_layers".into(),
            kind: KnobKind::Int(IntRange { low: 0, high: 3 }),
            baseline: Value::Int(0),
        },
        KnobSpec {
            name: "dropout".into(),
            kind: KnobKind::Float(FloatRange {
                low: 0.0,
                high: 0.5,
            }),
            baseline: Value::Float(0.0),
        },
    ]
}

fn context(phase: Phase, seed: u64) -> Context {
    Context {
        campaign: "bench".into(),
        tags: vec![],
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
        round: 1,
        trials_done: 3,
        trials_left: 20,
    }
}

/// A history of `n` trials over `n / 2` hypotheses around the baseline.
fn history(n: u64) -> StaticData {
    let mut data = StaticData::default();
    for h in 0..n / 2 {
        let lr = 0.01 + (h % 97) as f64 * 0.005;
        let assignments = vec![Assignment {
            knob: "lr".into(),
            value: Value::Float(lr.min(1.0)),
        }];
        let mean = 0.8 - 0.01 * (1.0 - ((lr - 0.2) / 0.2).powi(2)).max(-1.0);
        data.hypotheses.push(HypothesisSummary {
            id: h + 1,
            title: format!("h{h}"),
            category: "lr".into(),
            phase: Phase::Exploit,
            assignments: assignments.clone(),
            parents: vec![],
            outcome: Some(Estimate {
                mean,
                sd: 0.002,
                n: 2,
            }),
            effect: Some(0.8 - mean),
            promising: mean < 0.797,
            trials: 2,
            failed: 0,
        });
        for s in 0..2 {
            data.trials.push(TrialSummary {
                id: h * 2 + s,
                hypothesis: h + 1,
                phase: Phase::Exploit,
                assignments: assignments.clone(),
                seed: s,
                status: TrialStatus::Succeeded,
                objective: Some(mean + (s as f64 - 0.5) * 0.001),
                objective_stderr: Some(0.001),
                failure: None,
            });
        }
    }
    data
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Calls {
    p50: Duration,
    p99: Duration,
    fuel: u64,
}

fn warm_calls(sandbox: &Sandbox, source: &StrategySource, n: usize) -> Calls {
    let strategy = sandbox.load(source, &Grants::default()).expect("load");
    let data: Arc<dyn StrategyData> = Arc::new(StaticData::default());
    let limits = Limits::default();
    let mut times = Vec::with_capacity(n);
    let mut fuel = 0;
    for i in 0..n + n / 10 {
        let input = CallInput::Propose {
            context: context(Phase::Validate, i as u64),
            max: 4,
        };
        let start = Instant::now();
        let (record, _) = sandbox.call(
            &strategy,
            input,
            Arc::clone(&data),
            MemoryStore::default(),
            &limits,
        );
        let elapsed = start.elapsed();
        assert!(record.outcome.is_ok(), "{:?}", record.outcome);
        fuel = record.usage.fuel;
        if i >= n / 10 {
            times.push(elapsed); // the first 10% warm up caches
        }
    }
    times.sort();
    Calls {
        p50: percentile(&times, 0.5),
        p99: percentile(&times, 0.99),
        fuel,
    }
}

fn main() {
    let three_phase = StrategySource::parse("builtin:three-phase");
    let echo = StrategySource::File(g::ECHO_GENERATOR.into());

    // 1. Cold compile vs cache-hit load (median of 3 each).
    let mut cold = Vec::new();
    let mut hit = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let config = SandboxConfig {
            cache_dir: Some(dir.path().into()),
            pooling: true,
        };
        let sandbox = Sandbox::new(config.clone()).unwrap();
        let start = Instant::now();
        let s = sandbox.load(&three_phase, &Grants::default()).unwrap();
        cold.push(start.elapsed());
        assert!(s.info.compiled);
        drop((s, sandbox));
        let sandbox = Sandbox::new(config).unwrap();
        let start = Instant::now();
        let s = sandbox.load(&three_phase, &Grants::default()).unwrap();
        hit.push(start.elapsed());
        assert!(!s.info.compiled);
    }
    cold.sort();
    hit.sort();
    let (cold, hit) = (cold[1], hit[1]);

    // 2. Warm calls with and without pooling.
    let dir = tempfile::tempdir().unwrap();
    let pooled = Sandbox::new(SandboxConfig {
        cache_dir: Some(dir.path().into()),
        pooling: true,
    })
    .unwrap();
    let unpooled = Sandbox::new(SandboxConfig {
        cache_dir: Some(dir.path().into()),
        pooling: false,
    })
    .unwrap();
    let n = 2000;
    let tp_pool = warm_calls(&pooled, &three_phase, n);
    let tp_nopool = warm_calls(&unpooled, &three_phase, n);
    let echo_pool = warm_calls(&pooled, &echo, n);
    let echo_nopool = warm_calls(&unpooled, &echo, n);

    // 3. propose over a 10,000-trial history through the history import.
    let data: Arc<dyn StrategyData> = Arc::new(history(10_000));
    let mut big = Vec::new();
    for (name, source) in [
        ("echo-generator (reads every trial)", &echo),
        ("three-phase exploit", &three_phase),
    ] {
        let strategy = pooled.load(source, &Grants::default()).unwrap();
        let mut times = Vec::new();
        let mut last = None;
        for i in 0..7 {
            let input = CallInput::Propose {
                context: context(Phase::Exploit, i),
                max: 8,
            };
            let start = Instant::now();
            let (record, _) = pooled.call(
                &strategy,
                input,
                Arc::clone(&data),
                MemoryStore::default(),
                &Limits::default(),
            );
            times.push(start.elapsed());
            assert!(record.outcome.is_ok(), "{name}: {:?}", record.outcome);
            last = Some(record);
        }
        times.sort();
        let r = last.unwrap();
        big.push((
            name,
            times[3],
            r.usage.fuel,
            r.usage.host_calls,
            r.usage.peak_memory_bytes,
        ));
    }

    println!("sandbox benchmark (one run; ratios are within this run)");
    println!();
    println!("load builtin:three-phase            time");
    println!(
        "  cold compile                  {:>9.2} ms",
        cold.as_secs_f64() * 1e3
    );
    println!(
        "  cache-hit load                {:>9.2} ms   ({:.0}x faster than cold)",
        hit.as_secs_f64() * 1e3,
        cold.as_secs_f64() / hit.as_secs_f64()
    );
    println!();
    println!("warm call: instantiate from InstancePre + propose(max 4), {n} calls");
    println!("  strategy          allocator     p50 µs    p99 µs   fuel/call");
    for (name, alloc, c) in [
        ("three-phase", "pooling", &tp_pool),
        ("three-phase", "on-demand", &tp_nopool),
        ("echo-generator", "pooling", &echo_pool),
        ("echo-generator", "on-demand", &echo_nopool),
    ] {
        println!(
            "  {name:<17} {alloc:<10} {:>9.1} {:>9.1} {:>11}",
            micros(c.p50),
            micros(c.p99),
            c.fuel
        );
    }
    println!(
        "  pooling / on-demand p50: three-phase {:.2}, echo {:.2}",
        micros(tp_pool.p50) / micros(tp_nopool.p50),
        micros(echo_pool.p50) / micros(echo_nopool.p50)
    );
    println!();
    println!("propose over a 10,000-trial history (median of 7)");
    println!("  strategy                              ms    host calls        fuel   peak MiB");
    for (name, t, fuel, calls, mem) in &big {
        println!(
            "  {name:<34} {:>6.2} {:>13} {:>11} {:>10.1}",
            t.as_secs_f64() * 1e3,
            calls,
            fuel,
            *mem as f64 / (1 << 20) as f64
        );
    }

    let results = serde_json::json!({
        "cold_compile_ms": cold.as_secs_f64() * 1e3,
        "cache_hit_load_ms": hit.as_secs_f64() * 1e3,
        "warm_call_us": {
            "three_phase": {"pooling": {"p50": micros(tp_pool.p50), "p99": micros(tp_pool.p99)}, "on_demand": {"p50": micros(tp_nopool.p50), "p99": micros(tp_nopool.p99)}},
            "echo": {"pooling": {"p50": micros(echo_pool.p50), "p99": micros(echo_pool.p99)}, "on_demand": {"p50": micros(echo_nopool.p50), "p99": micros(echo_nopool.p99)}},
        },
        "history_10k": big.iter().map(|(name, t, fuel, calls, mem)| serde_json::json!({
            "strategy": name, "ms": t.as_secs_f64() * 1e3, "fuel": fuel, "host_calls": calls, "peak_memory_bytes": mem
        })).collect::<Vec<_>>(),
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("sandbox.json"),
        serde_json::to_string_pretty(&results).unwrap(),
    )
    .unwrap();
}
