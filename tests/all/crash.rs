//! Crash safety: what must hold after any kill (`check_ended`), and killed
//! supervisors and jobs. The kill points themselves are in kill_points.rs.

use std::collections::BTreeMap;
use std::time::Duration;

use reagent::records::campaign::TrialStatus;
use reagent::store::Store;

use crate::campaign::Project;

pub fn small(t: String) -> String {
    t.replace("max_trials = 24", "max_trials = 8")
        .replace("confirm_replicates = 2", "confirm_replicates = 1")
        .replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { TOY_RUNS = \"runs.log\" }",
        )
}

/// Creates the runs log the jobs append to: a job cannot create new
/// top-level files in a working directory that holds the workspace.
pub fn runs_log(p: &Project) {
    std::fs::write(p.path("runs.log"), "").unwrap();
}

/// Checks a workspace whose campaign 1 ended in `state` after crashes:
/// the chain intact, the ledger exact, at most `max_trials` launched, every
/// launched job ran once. Returns the number of events.
pub fn check_ended(p: &Project, label: &str, state: &str, max_trials: usize) -> u64 {
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
    assert_eq!(c.state.name(), state, "{label}: {:?}", c.note);
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
    assert!(launched <= max_trials, "{label}: max_trials");
    // No job ran twice: every job folder appears once in the runs log.
    let runs = std::fs::read_to_string(p.path("runs.log")).unwrap_or_default();
    let mut seen = BTreeMap::new();
    for line in runs.lines() {
        *seen.entry(line.to_string()).or_insert(0) += 1;
    }
    for (job, n) in &seen {
        assert_eq!(*n, 1, "{label}: {job} ran {n} times");
    }
    if state == "cancelled" {
        // A job cancelled before it started never wrote its line.
        assert!(seen.len() <= launched, "{label}: no job ran twice");
    } else {
        assert_eq!(
            seen.len(),
            launched,
            "{label}: every launched trial ran once"
        );
    }
    events.len() as u64
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
