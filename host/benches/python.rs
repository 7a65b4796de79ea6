//! Python strategy costs against the Rust built-in, in the same run:
//! cold compile vs cache-hit load, and instantiate + one `propose` (p50,
//! p99) for `builtin:three-phase` and the example Python generator
//! (examples/python-evolve, componentize-py).
//!
//! The Python component is the one the tests build,
//! target/py-guests/evolve.wasm (`cargo test --test all python::` makes it;
//! or `reagent strategy build examples/python-evolve --out
//! target/py-guests/evolve.wasm`).
//!
//! Run: `cargo bench -p reagent --bench python` (results also written to
//! target/bench/python.json).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reagent::sandbox::{Limits, Sandbox, SandboxConfig};
use reagent::strategy::data::{MemoryStore, StaticData, StrategyData};
use reagent::strategy::{
    CallInput, Context, Direction, Estimate, FloatRange, Grants, IntRange, KnobKind, KnobSpec,
    Objective, Phase, StrategySource, Value,
};

fn context(seed: u64) -> Context {
    Context {
        campaign: "bench".into(),
        tags: vec![],
        objective: Objective {
            metric: "valid_loss".into(),
            direction: Direction::Minimize,
        },
        knobs: vec![
            KnobSpec {
                name: "lr".into(),
                kind: KnobKind::LogFloat(FloatRange {
                    low: 1e-3,
                    high: 1.0,
                }),
                baseline: Value::Float(0.3),
            },
            KnobSpec {
                name: "optimizer".into(),
                kind: KnobKind::Categorical(vec!["sgd".into(), "adam".into()]),
                baseline: Value::Choice("sgd".into()),
            },
            KnobSpec {
                name: "layers".into(),
                kind: KnobKind::Int(IntRange { low: 0, high: 3 }),
                baseline: Value::Int(0),
            },
            KnobSpec {
                name: "batch_size".into(),
                kind: KnobKind::Int(IntRange {
                    low: 32,
                    high: 2048,
                }),
                baseline: Value::Int(256),
            },
        ],
        phase: Phase::Validate,
        baseline: Some(Estimate {
            mean: 0.55,
            sd: 0.001,
            n: 3,
        }),
        noise: Some(0.003),
        seed,
        round: 1,
        trials_done: 3,
        trials_left: 20,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Cold compile (fresh cache dir) and cache-hit load (a new sandbox on
/// the same cache dir), `rounds` times each; medians.
fn load_costs(source: &StrategySource, rounds: usize) -> (Duration, Duration) {
    let mut cold = Vec::new();
    let mut hit = Vec::new();
    for _ in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let config = SandboxConfig {
            cache_dir: Some(dir.path().into()),
            pooling: true,
        };
        let sandbox = Sandbox::new(config.clone()).unwrap();
        let start = Instant::now();
        let s = sandbox.load(source, &Grants::default()).unwrap();
        cold.push(start.elapsed());
        assert!(s.info.compiled);
        drop((s, sandbox));
        for _ in 0..3 {
            let sandbox = Sandbox::new(config.clone()).unwrap();
            let start = Instant::now();
            let s = sandbox.load(source, &Grants::default()).unwrap();
            hit.push(start.elapsed());
            assert!(!s.info.compiled);
        }
    }
    (median(cold), median(hit))
}

struct Calls {
    p50: Duration,
    p99: Duration,
    fuel: u64,
    peak_memory: u64,
}

fn warm_calls(sandbox: &Sandbox, source: &StrategySource, n: usize) -> Calls {
    let strategy = sandbox.load(source, &Grants::default()).expect("load");
    let data: Arc<dyn StrategyData> = Arc::new(StaticData::default());
    let limits = Limits::default();
    let mut times = Vec::with_capacity(n);
    let (mut fuel, mut peak_memory) = (0, 0);
    for i in 0..n + n / 10 {
        let input = CallInput::Propose {
            context: context(i as u64),
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
        assert!(record.outcome.is_ok(), "{source}: {:?}", record.outcome);
        fuel = record.usage.fuel;
        peak_memory = record.usage.peak_memory_bytes;
        if i >= n / 10 {
            times.push(elapsed); // the first 10% warm up caches
        }
    }
    times.sort();
    Calls {
        p50: times[times.len() / 2],
        p99: times[((times.len() - 1) as f64 * 0.99).round() as usize],
        fuel,
        peak_memory,
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let evolve_path = root.join("target/py-guests/evolve.wasm");
    assert!(
        evolve_path.is_file(),
        "{} is missing: run `cargo test --test all python::` (or `reagent strategy build \
         examples/python-evolve --out target/py-guests/evolve.wasm`) first",
        evolve_path.display()
    );
    let rust = StrategySource::parse("builtin:three-phase");
    let python = StrategySource::File(evolve_path);

    // `REAGENT_PY_BENCH_PROFILE=load|call`: only that part, many times, on
    // a kept cache (target/bench/py-cache): something for `perf record`.
    if let Ok(part) = std::env::var("REAGENT_PY_BENCH_PROFILE") {
        let config = SandboxConfig {
            cache_dir: Some(root.join("target/bench/py-cache")),
            pooling: true,
        };
        drop(
            Sandbox::new(config.clone())
                .unwrap()
                .load(&python, &Grants::default()),
        );
        if part == "load" {
            let mut times = Vec::new();
            for _ in 0..20 {
                let sandbox = Sandbox::new(config.clone()).unwrap();
                let start = Instant::now();
                drop(sandbox.load(&python, &Grants::default()).unwrap());
                times.push(start.elapsed());
            }
            println!("cache-hit load p50 {:.2} ms", ms(median(times)));
        } else {
            let sandbox = Sandbox::new(config).unwrap();
            let c = warm_calls(&sandbox, &python, 2000);
            println!(
                "warm propose p50 {:.3} ms p99 {:.3} ms",
                ms(c.p50),
                ms(c.p99)
            );
        }
        return;
    }

    let (rust_cold, rust_hit) = load_costs(&rust, 3);
    let (py_cold, py_hit) = load_costs(&python, 1);

    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(SandboxConfig {
        cache_dir: Some(dir.path().into()),
        pooling: true,
    })
    .unwrap();
    let rust_calls = warm_calls(&sandbox, &rust, 2000);
    let py_calls = warm_calls(&sandbox, &python, 300);

    println!("python strategy benchmark (one run; ratios are within this run)");
    println!();
    println!("load                        cold compile   cache-hit load");
    println!(
        "  builtin:three-phase       {:>9.1} ms   {:>9.2} ms",
        ms(rust_cold),
        ms(rust_hit)
    );
    println!(
        "  python evolve.wasm        {:>9.1} ms   {:>9.2} ms",
        ms(py_cold),
        ms(py_hit)
    );
    println!(
        "  python / rust             {:>9.1}x      {:>9.1}x",
        ms(py_cold) / ms(rust_cold),
        ms(py_hit) / ms(rust_hit)
    );
    println!();
    println!("warm call: instantiate from InstancePre + propose(max 4), pooling allocator");
    println!("  strategy               p50 ms    p99 ms        fuel   peak MiB");
    for (name, c) in [
        ("builtin:three-phase", &rust_calls),
        ("python evolve.wasm", &py_calls),
    ] {
        println!(
            "  {name:<20} {:>8.3} {:>9.3} {:>11} {:>10.1}",
            ms(c.p50),
            ms(c.p99),
            c.fuel,
            c.peak_memory as f64 / (1 << 20) as f64
        );
    }
    println!(
        "  python / rust p50: {:.1}x",
        ms(py_calls.p50) / ms(rust_calls.p50)
    );

    let results = serde_json::json!({
        "cold_compile_ms": {"three_phase": ms(rust_cold), "python_evolve": ms(py_cold)},
        "cache_hit_load_ms": {"three_phase": ms(rust_hit), "python_evolve": ms(py_hit)},
        "warm_call_ms": {
            "three_phase": {"p50": ms(rust_calls.p50), "p99": ms(rust_calls.p99), "fuel": rust_calls.fuel, "peak_memory_bytes": rust_calls.peak_memory},
            "python_evolve": {"p50": ms(py_calls.p50), "p99": ms(py_calls.p99), "fuel": py_calls.fuel, "peak_memory_bytes": py_calls.peak_memory},
        },
    });
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("python.json"),
        serde_json::to_string_pretty(&results).unwrap(),
    )
    .unwrap();
}
