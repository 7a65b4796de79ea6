//! The soak: one long campaign of quick jobs that fail at random (non-zero
//! exits, NaN, time-outs, OOM kills), a supervisor SIGKILLed every few
//! hundred trials, and an operator acting at random (pause then resume,
//! approve what waits, amend the budget). Shared by the bench
//! (host/benches/soak.rs, 10,000 trials) and its short version in the test
//! suite (tests/all/soak.rs).
//!
//! Measured on the foreground `reagent run` process: resident memory and
//! open descriptors, sampled as trials accumulate. Checked at the end:
//! nothing lost (the audit chain verifies, every launched job ran exactly
//! once), the ledger exact, the campaign finished.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The job: a hash of the trial number picks its fate, per mille.
const JOB: &str = r#"#!/bin/sh
echo "$REAGENT_JOB_DIR" >> runs.log
r=$(( (REAGENT_TRIAL * 2654435761 + SOAK_SEED) % 1000 ))
if [ "$r" -lt 20 ]; then
  printf 'Traceback (most recent call last):\nValueError: shapes (3,) and (4,) not aligned\n' >&2; exit 1
elif [ "$r" -lt 30 ]; then
  echo '{"loss": NaN}' > "$REAGENT_METRICS"; exit 0
elif [ "$r" -lt 35 ]; then
  sleep 30
elif [ "$r" -lt 45 ]; then
  echo "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB" >&2; kill -9 $$
fi
echo "{\"loss\": $REAGENT_KNOB_X}" > "$REAGENT_METRICS"
"#;

pub struct Soak {
    pub trials: u64,
    pub seed: u64,
    pub parallel: u32,
    /// A supervisor is SIGKILLed every this many launched trials.
    pub kill_every: u64,
    /// The operator acts about this often.
    pub act_every: Duration,
}

/// One sample of the driver process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub launched: u64,
    pub rss_kib: u64,
    pub fds: u64,
}

#[derive(Debug)]
pub struct Outcome {
    pub samples: Vec<Sample>,
    pub wall: Duration,
    pub launched: u64,
    pub supervisors_killed: u64,
    pub actions: Vec<String>,
    /// The longest an operator's command took (they wait for the store).
    pub slowest_action: Duration,
    pub events: u64,
    pub failed: u64,
}

fn reagent(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_reagent"));
    c.current_dir(dir).arg("--workspace").arg(dir);
    c
}

fn output(dir: &Path, args: &[&str]) -> Output {
    let mut c = reagent(dir);
    c.args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn campaign_toml(trials: u64, parallel: u32, cpu_hours: f64) -> String {
    format!(
        r#"[campaign]
name = "soak"
[objective]
metric = "loss"
direction = "minimize"
[job]
command = ["sh", "job.sh"]
time_limit = "3s"
pass_env = ["SOAK_SEED"]
[knobs]
x = {{ kind = "float", low = 0.0, high = 1.0, baseline = 0.5 }}
y = {{ kind = "int", low = 0, high = 9, baseline = 5 }}
[budget]
cpu_hours = {cpu_hours:.1}
max_trials = {trials}
max_parallel = {parallel}
baseline_replicates = 3
confirm_replicates = 2
"#
    )
}

/// Splitmix64: the operator's dice.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn sample(pid: u32, launched: u64) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample {
        launched,
        rss_kib,
        fds,
    })
}

fn job_folders(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join(".reagent/jobs"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// SIGKILLs the supervisor of one running job, if one is running.
fn kill_a_supervisor(dir: &Path, rng: &mut u64) -> bool {
    let mut running: Vec<i32> = job_folders(dir)
        .iter()
        .filter(|f| !f.join("status.json").exists())
        .filter_map(|f| std::fs::read_to_string(f.join("supervisor.pid")).ok())
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    running.sort_unstable();
    if running.is_empty() {
        return false;
    }
    let pid = running[(next(rng) % running.len() as u64) as usize];
    // SAFETY: kill sends a signal; the pid is a supervisor of this test's
    // workspace that had not finished a moment ago.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGKILL) == 0
    }
}

/// One operator action, chosen by the dice; returns what was done.
fn act(dir: &Path, rng: &mut u64, cpu_hours: &mut f64, s: &Soak) -> String {
    match next(rng) % 4 {
        0 => {
            let o = output(dir, &["pause", "1"]);
            std::thread::sleep(Duration::from_millis(200));
            let r = output(dir, &["resume", "1"]);
            assert!(
                r.status.success() || text(&r).contains("is finished"),
                "resume: {}",
                text(&r)
            );
            format!("pause ({}) + resume", o.status)
        }
        1 => {
            let o = output(dir, &["approvals", "--campaign", "1", "--json"]);
            let pending: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            let ids: Vec<String> = pending
                .as_array()
                .map(|a| a.iter().map(|r| r["id"].to_string()).collect())
                .unwrap_or_default();
            for id in &ids {
                let _ = output(dir, &["approve", id]);
            }
            format!("approve {} pending", ids.len())
        }
        2 => {
            *cpu_hours += 1.0;
            let file = dir.join("amended.toml");
            std::fs::write(&file, campaign_toml(s.trials, s.parallel, *cpu_hours)).unwrap();
            let o = output(dir, &["amend", "1", "amended.toml", "--yes"]);
            format!("amend cpu_hours to {cpu_hours} ({})", o.status)
        }
        _ => {
            let o = output(dir, &["status", "1", "--json"]);
            format!("status ({})", o.status)
        }
    }
}

fn spawn_driver(dir: &Path) -> Child {
    let mut c = reagent(dir);
    c.args(["run", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs the soak in `dir` (a fresh folder) to the end.
pub fn run(dir: &Path, s: &Soak) -> Outcome {
    std::fs::write(dir.join("job.sh"), JOB).unwrap();
    std::fs::write(dir.join("runs.log"), "").unwrap();
    let mut cpu_hours = 100_000.0;
    std::fs::write(
        dir.join("campaign.toml"),
        campaign_toml(s.trials, s.parallel, cpu_hours),
    )
    .unwrap();
    let o = output(dir, &["init"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = output(dir, &["plan", "campaign.toml", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));

    let mut rng = s.seed;
    let start = Instant::now();
    let mut driver = reagent(dir);
    driver
        .args(["run", "1"])
        .env("SOAK_SEED", s.seed.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut driver = driver.spawn().unwrap();
    let mut samples = Vec::new();
    let mut actions = Vec::new();
    let mut killed = 0;
    let mut slowest = Duration::ZERO;
    let mut next_kill = s.kill_every;
    let mut next_act = Instant::now() + s.act_every;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let launched = job_folders(dir).len() as u64;
        if let Some(x) = sample(driver.id(), launched) {
            samples.push(x);
        }
        // Quick jobs leave few supervisors running at any instant: try at
        // every look until one is killed.
        if launched >= next_kill && kill_a_supervisor(dir, &mut rng) {
            killed += 1;
            next_kill += s.kill_every;
        }
        if Instant::now() >= next_act {
            let began = Instant::now();
            let what = act(dir, &mut rng, &mut cpu_hours, s);
            slowest = slowest.max(began.elapsed());
            actions.push(format!("{what} in {} ms", began.elapsed().as_millis()));
            next_act = Instant::now() + s.act_every;
        }
        if let Some(status) = driver.try_wait().unwrap() {
            let state = serde_json::from_slice::<serde_json::Value>(
                &output(dir, &["status", "1", "--json"]).stdout,
            )
            .unwrap_or_default()["state"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if state == "finished" {
                break;
            }
            assert!(
                !matches!(state.as_str(), "halted" | "cancelled"),
                "the soak campaign ended {state}: {:?}",
                output(dir, &["status", "1"])
            );
            // Paused at the instant it looked, or waiting for an approval:
            // the operator decides what waits and runs it again.
            actions.push(format!(
                "driver exited ({status}) in state {state}: run again"
            ));
            act_approve_all(dir);
            let _ = output(dir, &["resume", "1"]);
            driver = spawn_driver(dir);
        }
        assert!(
            start.elapsed() < Duration::from_secs(4 * 3600),
            "the soak did not end"
        );
    }
    let wall = start.elapsed();
    println!("{}", text(&output(dir, &["status", "1"])));
    let (events, failed) = check(dir);
    Outcome {
        samples,
        wall,
        launched: job_folders(dir).len() as u64,
        supervisors_killed: killed,
        actions,
        slowest_action: slowest,
        events,
        failed,
    }
}

fn act_approve_all(dir: &Path) {
    let o = output(dir, &["approvals", "--campaign", "1", "--json"]);
    let pending: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    for r in pending.as_array().into_iter().flatten() {
        let _ = output(dir, &["approve", &r["id"].to_string()]);
    }
}

/// Nothing lost: the chain verifies, every launched job ran exactly once,
/// the ledger is exact. Returns (events, failed trials).
fn check(dir: &Path) -> (u64, u64) {
    // The last supervisors may still be running their wake.
    let start = Instant::now();
    let store = loop {
        match reagent::store::Store::open(&dir.join(".reagent/reagent.redb")) {
            Ok(s) => break s,
            Err(e) if start.elapsed() > Duration::from_secs(60) => panic!("{e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let events = store.events(0).unwrap();
    assert_eq!(store.verify_chain().unwrap(), Ok(events.len() as u64));
    let c = store.campaign(1).unwrap().unwrap();
    assert_eq!(c.state.name(), "finished", "{:?}", c.note);
    assert!(
        c.ledger.reserved_cpu.abs() < 1e-9,
        "reserved {}",
        c.ledger.reserved_cpu
    );
    let trials = store.trials(1).unwrap();
    let spent: f64 = trials.iter().map(|t| t.spent_cpu).sum();
    assert!(
        (c.ledger.spent_cpu - spent).abs() < 1e-6,
        "ledger {} vs {spent}",
        c.ledger.spent_cpu
    );
    let runs = std::fs::read_to_string(dir.join("runs.log")).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for line in runs.lines() {
        *seen.entry(line).or_insert(0u32) += 1;
    }
    for (job, n) in &seen {
        assert_eq!(*n, 1, "{job} ran {n} times");
    }
    let failed = trials
        .iter()
        .filter(|t| t.status.name() == "failed")
        .count() as u64;
    (events.len() as u64, failed)
}

/// Memory and descriptors after warm-up (the first fifth of the trials)
/// against the last sample: (rss warm, rss end, fds warm, fds end).
pub fn drift(samples: &[Sample], trials: u64) -> Option<(u64, u64, u64, u64)> {
    let warm = samples.iter().find(|x| x.launched >= trials / 5)?;
    let end = samples.last()?;
    // The fewest descriptors seen near the end: a pass may hold a few
    // transiently (a job's pipes); a leak raises the floor.
    let tail = &samples[samples.len() - samples.len().min(8)..];
    let fds_end = tail.iter().map(|x| x.fds).min()?;
    let fds_warm = samples
        .iter()
        .filter(|x| x.launched >= trials / 5)
        .take(8)
        .map(|x| x.fds)
        .min()?;
    Some((warm.rss_kib, end.rss_kib, fds_warm, fds_end))
}
