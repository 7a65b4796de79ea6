//! Crash safety: kill the host right after its Nth commit, for every N of a
//! whole campaign; then resume. Nothing acknowledged is lost, no job runs
//! twice, the ledger is exact and the campaign finishes.

use std::collections::BTreeMap;
use std::time::Duration;

use reagent::records::campaign::TrialStatus;
use reagent::store::Store;

use crate::campaign::{Project, text};

fn small(t: String) -> String {
    t.replace("max_trials = 24", "max_trials = 8")
        .replace("confirm_replicates = 2", "confirm_replicates = 1")
        .replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { TOY_RUNS = \"runs.log\" }",
        )
}

/// Creates the runs log the jobs append to: a job cannot create new
/// top-level files in a working directory that holds the workspace.
fn runs_log(p: &Project) {
    std::fs::write(p.path("runs.log"), "").unwrap();
}

/// Checks a finished workspace against what must hold after any crash.
fn check(p: &Project, label: &str) -> u64 {
    // A job's supervisor may still be running its `reagent wake` briefly.
    let start = std::time::Instant::now();
    let store = loop {
        match Store::open(&p.path(".reagent/reagent.redb")) {
            Ok(s) => break s,
            Err(e) if start.elapsed() > Duration::from_secs(30) => panic!("{label}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    // The hash chain is intact: nothing acknowledged was lost or altered.
    let events = store.events(0).unwrap();
    assert_eq!(
        store.verify_chain().unwrap(),
        Ok(events.len() as u64),
        "{label}"
    );
    let c = store.campaign(1).unwrap().unwrap();
    assert_eq!(c.state.name(), "finished", "{label}: {:?}", c.note);
    let trials = store.trials(1).unwrap();
    // The ledger is exact: nothing reserved at the end, spent = Σ trials.
    assert!(
        c.ledger.reserved_cpu.abs() < 1e-9,
        "{label}: reserved {}",
        c.ledger.reserved_cpu
    );
    let spent: f64 = trials.iter().map(|t| t.spent_cpu).sum();
    assert!(
        (c.ledger.spent_cpu - spent).abs() < 1e-9,
        "{label}: ledger {} vs trials {spent}",
        c.ledger.spent_cpu
    );
    let launched = trials
        .iter()
        .filter(|t| !matches!(t.status, TrialStatus::Queued | TrialStatus::Dropped))
        .count();
    assert_eq!(c.ledger.launched as usize, launched, "{label}");
    assert!(launched <= 8, "{label}: max_trials");
    // No job ran twice: every job folder appears once in the runs log.
    let runs = std::fs::read_to_string(p.path("runs.log")).unwrap_or_default();
    let mut seen = BTreeMap::new();
    for line in runs.lines() {
        *seen.entry(line.to_string()).or_insert(0) += 1;
    }
    for (job, n) in &seen {
        assert_eq!(*n, 1, "{label}: {job} ran {n} times");
    }
    assert_eq!(
        seen.len(),
        launched,
        "{label}: every launched trial ran once"
    );
    events.len() as u64
}

#[test]
fn killing_the_host_after_any_commit_loses_nothing_and_runs_nothing_twice() {
    // A clean run first, to know how many commits a whole campaign makes.
    let clean = Project::new(small);
    runs_log(&clean);
    let o = clean.reagent(&["run", "toy.toml", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let total = check(&clean, "clean run");

    let mut kill_points = 0;
    for n in 1..=total {
        let p = Project::new(small);
        runs_log(&p);
        let o = p
            .command(&["run", "toy.toml", "--yes"])
            .env("REAGENT_CRASH_AFTER_COMMITS", n.to_string())
            .output()
            .unwrap();
        if o.status.success() {
            // The campaign ended in fewer commits than N (the kill point
            // fell in a supervisor's wake, which does not inherit it).
            check(&p, &format!("N = {n}, no kill"));
            continue;
        }
        kill_points += 1;
        let t0 = std::time::Instant::now();
        let resumed = p.reagent(&["run", "1"]);
        eprintln!("N = {n}: killed; resumed in {:?}", t0.elapsed());
        assert!(
            resumed.status.success(),
            "N = {n}: resume failed: {}",
            text(&resumed)
        );
        let s = p.wait_finished("1", Duration::from_secs(60));
        assert_eq!(s["state"], "finished");
        check(&p, &format!("N = {n}"));
    }
    eprintln!("crash test: {kill_points} kill points of {total} commits");
    assert!(
        kill_points >= total / 2,
        "most kill points were exercised ({kill_points} of {total})"
    );
}

/// The job folder of campaign 1's trial `n`: `c1-t<n>-<launch nonce>`.
pub fn job_folder(jobs: &std::path::Path, n: u64) -> Option<std::path::PathBuf> {
    let prefix = format!("c1-t{n}-");
    std::fs::read_dir(jobs)
        .ok()?
        .flatten()
        .find(|e| {
            e.file_name()
                .to_str()
                .and_then(|name| name.strip_prefix(&prefix))
                .is_some_and(|nonce| !nonce.is_empty() && !nonce.contains('-'))
        })
        .map(|e| e.path())
}

fn read_pid(path: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn killed_supervisors_and_jobs_are_diagnosed_and_the_campaign_goes_on() {
    let p = Project::new(|t| {
        t.replace("max_trials = 24", "max_trials = 14").replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { TOY_SLEEP = \"1\" }",
        )
    });
    let mut run = p
        .command(&["run", "toy.toml", "--yes"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let jobs = p.path(".reagent/jobs");
    // Wait for the first two baseline jobs to be running.
    let start = std::time::Instant::now();
    let (a, b) = loop {
        if let (Some(a), Some(b)) = (job_folder(&jobs, 1), job_folder(&jobs, 2))
            && read_pid(&a.join("job.pid")).is_some()
            && read_pid(&b.join("job.pid")).is_some()
        {
            break (a, b);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "jobs did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // SIGKILL the supervisor of one job, and the other job's process group.
    let supervisor = read_pid(&a.join("supervisor.pid")).unwrap();
    let job = read_pid(&b.join("job.pid")).unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(supervisor, libc::SIGKILL);
        libc::kill(-job, libc::SIGKILL);
    }
    let status = run.wait().unwrap();
    assert!(status.success(), "the campaign still finishes");
    let trials = p.json(&["trials", "1", "--json"]);
    let find = |id: u64| {
        trials
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .cloned()
            .unwrap()
    };
    let lost = find(1);
    assert_eq!(lost["status"], "failed", "{lost}");
    assert!(
        lost["action"].as_str().unwrap().starts_with("retry"),
        "{lost}"
    );
    let killed = find(2);
    assert_eq!(killed["status"], "failed", "{killed}");
    assert_eq!(killed["failure"], "killed", "{killed}");
    assert!(
        killed["action"].as_str().unwrap().starts_with("retry"),
        "{killed}"
    );
    let s = p.json(&["status", "1", "--json"]);
    assert_eq!(s["state"], "finished", "{s}");
}
