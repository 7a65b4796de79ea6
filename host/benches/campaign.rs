//! The campaign engine's own costs, with no-op jobs, measured in one run:
//! host CPU per trial (the `reagent run` process, and everything Reagent
//! starts: supervisors and wake clients), wake latency (a job's exit → the
//! next trial launched), and host CPU while the foreground driver waits.
//!
//! Run: `cargo bench -p reagent --bench campaign` (results also written to
//! target/bench/campaign.json).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

mod common;

use common::{NOOP, REAGENT};

fn campaign(dir: &Path, trials: u32, parallel: u32, command: &str, time_limit: &str) {
    common::noop_campaign(dir, u64::from(trials), parallel, command, time_limit);
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let trials = 200u32;
    // 1. Host CPU per trial.
    let dir = tempfile::tempdir().unwrap();
    campaign(dir.path(), trials, 4, NOOP, "60s");
    let (o, wall, everything) = common::run_campaign(dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("reagent-rusage:"))
        .expect("rusage line");
    let nums: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let host = nums[0] + nums[1];
    let jobs_dir = dir.path().join(".reagent/jobs");
    let launched = std::fs::read_dir(&jobs_dir).unwrap().count();

    // The jobs alone, run directly, to subtract their own cost.
    let jobs_alone = common::noop_jobs_cpu(launched as u64);
    let helpers = (everything - host - jobs_alone).max(0.0);

    // 2. Wake latency: status.json written (job exit) → next spec.json.
    let mut ends = Vec::new();
    let mut starts = Vec::new();
    for e in std::fs::read_dir(&jobs_dir).unwrap().flatten() {
        if let Some(t) = mtime(&e.path().join("status.json")) {
            ends.push(t);
        }
        if let Some(t) = mtime(&e.path().join("spec.json")) {
            starts.push(t);
        }
    }
    starts.sort();
    let mut latencies: Vec<f64> = ends
        .iter()
        .filter_map(|end| {
            starts
                .iter()
                .find(|s| *s > end)
                .and_then(|s| s.duration_since(*end).ok())
        })
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    let (p50, p95) = (
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.95),
    );

    // 3. CPU of the foreground driver while it waits on a sleeping job.
    let dir2 = tempfile::tempdir().unwrap();
    campaign(
        dir2.path(),
        4,
        1,
        "sleep 4; echo \"{\\\"loss\\\": 1}\" > \"$REAGENT_METRICS\"",
        "60s",
    );
    let mut child = Command::new(REAGENT)
        .args(["run", "campaign.toml", "--yes"])
        .current_dir(dir2.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let ticks = |pid: u32| -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        // utime and stime are fields 14 and 15 (1-based) of the whole line.
        let u: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let s: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        u + s
    };
    let t0 = ticks(child.id());
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_millis(2000));
    let t1 = ticks(child.id());
    let waited = w0.elapsed().as_secs_f64();
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let idle_cpu_ms_per_s = (t1 - t0) / hz * 1e3 / waited;
    let _ = child.kill();
    let _ = child.wait();

    let per_trial_host = host / launched as f64 * 1e3;
    let per_trial_all = (host + helpers) / launched as f64 * 1e3;
    println!("campaign engine benchmark (one run)");
    println!();
    println!(
        "{launched} no-op trials, 4 in parallel, wall {:.2} s ({:.1} trials/s)",
        wall.as_secs_f64(),
        launched as f64 / wall.as_secs_f64()
    );
    println!(
        "  host CPU per trial (the `reagent run` process)          {per_trial_host:>7.2} ms   target < 5 ms: {:.2}x of target",
        per_trial_host / 5.0
    );
    println!(
        "  + supervisors and wake clients per trial                {:>7.2} ms",
        helpers / launched as f64 * 1e3
    );
    println!("  = all of Reagent per trial                              {per_trial_all:>7.2} ms");
    println!(
        "  the no-op job itself per trial (sh, run directly)       {:>7.2} ms",
        jobs_alone / launched as f64 * 1e3
    );
    println!();
    println!(
        "wake latency, job exit → next trial launched ({} samples)",
        latencies.len()
    );
    println!(
        "  p50 {p50:.1} ms, p95 {p95:.1} ms   target < 200 ms: p50 is {:.2}x of target",
        p50 / 200.0
    );
    println!();
    println!("host CPU while the foreground driver waits on a sleeping job");
    println!(
        "  {idle_cpu_ms_per_s:.2} ms of CPU per second waited (clock tick {:.0} ms)",
        1e3 / hz
    );

    let results = serde_json::json!({
        "trials": launched,
        "wall_s": wall.as_secs_f64(),
        "host_cpu_ms_per_trial": per_trial_host,
        "helpers_cpu_ms_per_trial": helpers / launched as f64 * 1e3,
        "all_cpu_ms_per_trial": per_trial_all,
        "job_cpu_ms_per_trial": jobs_alone / launched as f64 * 1e3,
        "wake_latency_ms": {"p50": p50, "p95": p95, "samples": latencies.len()},
        "idle_cpu_ms_per_s": idle_cpu_ms_per_s,
    });
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("campaign.json"),
        serde_json::to_string_pretty(&results).unwrap(),
    )
    .unwrap();
}
