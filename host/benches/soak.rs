//! The soak (see common/soak.rs): 10,000 trials of a quick job with random
//! failures, killed supervisors and operator actions, in one campaign.
//! Reports the driver's memory and descriptors after warm-up and at the
//! end, and checks nothing was lost.
//!
//! Run: `cargo bench -p reagent --bench soak` (REAGENT_SOAK_TRIALS,
//! REAGENT_SOAK_SEED; results also written to target/bench/soak.json).

use std::time::Duration;

#[path = "common/soak.rs"]
mod soak;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    let trials = env_u64("REAGENT_SOAK_TRIALS").unwrap_or(10_000);
    let seed = env_u64("REAGENT_SOAK_SEED").unwrap_or(1);
    let s = soak::Soak {
        trials,
        seed,
        parallel: 4,
        kill_every: 300,
        act_every: Duration::from_secs(20),
    };
    let dir = tempfile::tempdir().unwrap();
    let out = soak::run(dir.path(), &s);
    let (rss_warm, rss_end, fds_warm, fds_end) =
        soak::drift(&out.samples, trials).expect("samples after warm-up");
    let mib = |k: u64| k as f64 / 1024.0;
    let peak = out.samples.iter().map(|x| x.rss_kib).max().unwrap_or(0);
    println!(
        "soak: {trials} trials (seed {seed}) in {:.1} min",
        out.wall.as_secs_f64() / 60.0
    );
    println!(
        "  launched {} jobs, {} failed trials, {} supervisors killed, {} operator actions, {} events",
        out.launched,
        out.failed,
        out.supervisors_killed,
        out.actions.len(),
        out.events
    );
    println!(
        "  driver RSS: {:.1} MiB after warm-up, {:.1} MiB at the end ({:.2}x), peak {:.1} MiB",
        mib(rss_warm),
        mib(rss_end),
        rss_end as f64 / rss_warm.max(1) as f64,
        mib(peak)
    );
    println!("  driver descriptors: {fds_warm} after warm-up, {fds_end} at the end");
    println!(
        "  slowest operator command: {} ms",
        out.slowest_action.as_millis()
    );
    let db_bytes = std::fs::metadata(dir.path().join(".reagent/reagent.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "  workspace database: {:.1} MiB ({:.1} KiB a trial)",
        db_bytes as f64 / 1048576.0,
        db_bytes as f64 / 1024.0 / trials.max(1) as f64
    );
    println!("  nothing lost: chain verified, every job ran once, ledger exact");
    let json = serde_json::json!({
        "trials": trials,
        "seed": seed,
        "wall_s": out.wall.as_secs_f64(),
        "launched": out.launched,
        "failed": out.failed,
        "supervisors_killed": out.supervisors_killed,
        "actions": out.actions.len(),
        "slowest_action_ms": out.slowest_action.as_millis() as u64,
        "events": out.events,
        "database_bytes": db_bytes,
        "rss_kib_warm": rss_warm,
        "rss_kib_end": rss_end,
        "rss_kib_peak": peak,
        "fds_warm": fds_warm,
        "fds_end": fds_end,
        "samples": out.samples.iter().map(|x| [x.launched, x.rss_kib, x.fds]).collect::<Vec<_>>(),
    });
    let out_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(
        out_dir.join("soak.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
}
