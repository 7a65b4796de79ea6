//! Kill points everywhere a commit happens (issue 18): the foreground
//! driver of a campaign with parallel jobs, failures and retries; the
//! supervisors' `wake`s that drive a detached campaign; `approve`,
//! `pause`, `resume` and `cancel` racing a pass; the submit path between a
//! job's submission and its journal entry; and SIGKILLs of the driver at
//! random instants. After each: the chain is intact, the campaign ends,
//! the ledger is exact, every job ran once, no approval is lost or applied
//! twice. The test prints how many distinct kill points it exercised.
//!
//! `REAGENT_CHAOS_SEED=S` (and `REAGENT_CHAOS_KILLS=K`) runs the random
//! SIGKILLs with another seed and more kills, for long runs.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::campaign::{Project, text};
use crate::crash::{check_ended, runs_log};

/// At most this many trials per campaign.
const TRIALS: usize = 20;

/// A campaign of 20 trials, 3 at once, with an out-of-memory failure
/// (retried with a change) and a crash (excluded).
fn busy(t: String) -> String {
    t.replace("max_trials = 24", "max_trials = 20")
        .replace("max_parallel = 2", "max_parallel = 3")
        .replace("confirm_replicates = 2", "confirm_replicates = 1")
        .replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { TOY_RUNS = \"runs.log\", FAIL_T4 = \"oom\", FAIL_T6 = \"crash\" }",
        )
}

fn project() -> Project {
    let p = Project::new(busy);
    runs_log(&p);
    p
}

fn crash_log(p: &Project) -> Vec<String> {
    std::fs::read_to_string(p.path("crash.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The audit log, one JSON object per event.
fn audit(p: &Project) -> Vec<serde_json::Value> {
    let o = p.reagent(&["audit", "show", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn events(p: &Project) -> u64 {
    audit(p).len() as u64
}

/// Drives campaign 1 to its end from whatever state a crash left.
fn resume(p: &Project, label: &str) {
    let o = p.reagent(&["run", "1"]);
    assert!(o.status.code().is_some(), "{label}: {}", text(&o));
    let s = p.wait_finished("1", Duration::from_secs(90));
    assert!(
        matches!(s["state"].as_str(), Some("finished" | "cancelled")),
        "{label}: {s}"
    );
}

/// Each commit of a foreground driver, by its commit number.
fn driver(points: &mut BTreeSet<String>) {
    let clean = project();
    let o = clean.reagent(&["run", "toy.toml", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    check_ended(&clean, "driver, clean", "finished", TRIALS);
    let commits = events(&clean);
    let mut misses = 0;
    for n in 1..=commits {
        // Past the driver's last commit nothing is killed any more.
        if misses >= 3 {
            break;
        }
        let p = project();
        let o = p
            .command(&["run", "toy.toml", "--yes"])
            .env("REAGENT_CRASH_AFTER_COMMITS", n.to_string())
            .env("REAGENT_CRASH_LOG", p.path("crash.log"))
            .output()
            .unwrap();
        let label = format!("driver, commit {n}");
        if o.status.success() {
            check_ended(&p, &label, "finished", TRIALS);
            misses += 1;
            continue;
        }
        misses = 0;
        assert_eq!(crash_log(&p).len(), 1, "{label}: {}", text(&o));
        resume(&p, &label);
        check_ended(&p, &label, "finished", TRIALS);
        points.insert(label);
    }
}

/// Each commit of the driver of a smaller campaign (8 trials, 2 at once,
/// no failures): other commits, at other moments of the stage machine.
fn small_driver(points: &mut BTreeSet<String>) {
    let clean = Project::new(crate::crash::small);
    runs_log(&clean);
    let o = clean.reagent(&["run", "toy.toml", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let total = check_ended(&clean, "small, clean", "finished", 8);
    let mut misses = 0;
    for n in 1..=total {
        if misses >= 3 {
            break;
        }
        let p = Project::new(crate::crash::small);
        runs_log(&p);
        let o = p
            .command(&["run", "toy.toml", "--yes"])
            .env("REAGENT_CRASH_AFTER_COMMITS", n.to_string())
            .output()
            .unwrap();
        let label = format!("small driver, commit {n}");
        if o.status.success() {
            check_ended(&p, &label, "finished", 8);
            misses += 1;
            continue;
        }
        misses = 0;
        resume(&p, &label);
        check_ended(&p, &label, "finished", 8);
        points.insert(label);
    }
}

/// Each commit of a detached campaign, whoever makes it (`run --detach`
/// or a supervisor's `wake`), by the audit log's event number.
fn detached(points: &mut BTreeSet<String>) {
    let clean = project();
    let o = clean.reagent(&["run", "toy.toml", "--yes", "--detach"]);
    assert!(o.status.success(), "{}", text(&o));
    clean.wait_finished("1", Duration::from_secs(90));
    let total = check_ended(&clean, "detached, clean", "finished", TRIALS);
    // A killed run can make more events than the clean one (its wakes fall
    // at other moments): go on until three runs in a row end unkilled.
    let mut misses = 0;
    for n in 1..=2 * total {
        if misses >= 3 && n > total {
            break;
        }
        let p = project();
        let _ = p
            .command(&["run", "toy.toml", "--yes", "--detach"])
            .env("REAGENT_CRASH_AT_EVENT", n.to_string())
            .env("REAGENT_CRASH_LOG", p.path("crash.log"))
            .output()
            .unwrap();
        // Until the crash (in this process or a wake) or the end.
        let start = Instant::now();
        let crashed = loop {
            let log = crash_log(&p);
            if let Some(line) = log.first() {
                break Some(line.clone());
            }
            let s = p.json(&["status", "1", "--json"]);
            if s["state"] == "finished" {
                break None;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "event {n}: neither crashed nor finished: {s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let label = match &crashed {
            Some(line) => format!("detached, {line}"),
            None => format!("detached, event {n}: no kill"),
        };
        resume(&p, &label);
        check_ended(&p, &label, "finished", TRIALS);
        if crashed.is_some() {
            misses = 0;
            points.insert(label);
        } else {
            misses += 1;
        }
    }
}

/// The decision events of approval request `id`.
fn decisions(p: &Project, id: u64) -> usize {
    audit(p)
        .iter()
        .filter(|e| e["type"] == "approval-decided" && e["body"]["id"] == id)
        .count()
}

/// An operator's command killed at each of its commits, then given again.
fn operator(points: &mut BTreeSet<String>) {
    // approve or reject: the plan's request decided once, whatever the
    // kill.
    for (cmd, k) in [
        ("approve", 1),
        ("approve", 2),
        ("approve", 3),
        ("reject", 1),
        ("reject", 2),
    ] {
        let p = project();
        assert!(p.reagent(&["plan", "toy.toml"]).status.success());
        let at = events(&p) + k;
        let args: &[&str] = if cmd == "approve" {
            &["approve", "1"]
        } else {
            &["reject", "1", "--reason", "not now"]
        };
        let o = p
            .command(args)
            .env("REAGENT_CRASH_AT_EVENT", at.to_string())
            .env("REAGENT_CRASH_LOG", p.path("crash.log"))
            .output()
            .unwrap();
        let label = format!("{cmd}, event {at}");
        if crash_log(&p).is_empty() {
            assert!(o.status.success(), "{label}: {}", text(&o));
        } else {
            points.insert(format!("{cmd}, {}", crash_log(&p)[0]));
            // Again: decided now, or already decided — never twice.
            let _ = p.reagent(args);
        }
        assert_eq!(decisions(&p, 1), 1, "{label}");
        if cmd == "approve" {
            resume(&p, &label);
            check_ended(&p, &label, "finished", TRIALS);
        } else {
            check_ended(&p, &label, "cancelled", TRIALS);
        }
    }
    // pause, resume and cancel while a detached campaign's jobs run.
    for (cmds, end) in [
        (&["pause", "resume"][..], "finished"),
        (&["cancel"][..], "cancelled"),
    ] {
        for cmd in cmds {
            let p =
                Project::new(|t| busy(t).replace("TOY_RUNS = ", "TOY_SLEEP = \"1\", TOY_RUNS = "));
            runs_log(&p);
            let o = p.reagent(&["run", "toy.toml", "--yes", "--detach"]);
            assert!(o.status.success(), "{}", text(&o));
            if *cmd == "resume" {
                assert!(p.reagent(&["pause", "1"]).status.success());
            }
            let at = events(&p) + 1;
            let _ = p
                .command(&[cmd, "1"])
                .env("REAGENT_CRASH_AT_EVENT", at.to_string())
                .env("REAGENT_CRASH_LOG", p.path("crash.log"))
                .output()
                .unwrap();
            let label = format!("{cmd}, event {at}");
            if let Some(line) = crash_log(&p).first() {
                points.insert(format!("{cmd}, {line}"));
            }
            // The operator gives the command again.
            let o = p.reagent(&[cmd, "1"]);
            assert!(o.status.code().is_some(), "{label}: {}", text(&o));
            if *cmd == "pause" {
                assert!(p.reagent(&["resume", "1"]).status.success(), "{label}");
            }
            resume(&p, &label);
            check_ended(&p, &label, end, TRIALS);
        }
    }
}

/// `amend --yes` raising the budget while a detached campaign's jobs run,
/// killed at each of its commits (the request and its approval, the wake
/// that applies it) and given again: the budget grows once, by exactly
/// the amendment.
fn amend(points: &mut BTreeSet<String>) {
    for k in 1..=3 {
        let p = Project::new(|t| busy(t).replace("TOY_RUNS = ", "TOY_SLEEP = \"1\", TOY_RUNS = "));
        runs_log(&p);
        let amended = std::fs::read_to_string(p.path("toy.toml"))
            .unwrap()
            .replace("cpu_hours = 1.0", "cpu_hours = 1.5");
        std::fs::write(p.path("amended.toml"), amended).unwrap();
        let o = p.reagent(&["run", "toy.toml", "--yes", "--detach"]);
        assert!(o.status.success(), "{}", text(&o));
        let at = events(&p) + k;
        let _ = p
            .command(&["amend", "1", "amended.toml", "--yes"])
            .env("REAGENT_CRASH_AT_EVENT", at.to_string())
            .env("REAGENT_CRASH_LOG", p.path("crash.log"))
            .output()
            .unwrap();
        let label = format!("amend, event {at}");
        if let Some(line) = crash_log(&p).first() {
            points.insert(format!("amend, {line}"));
        }
        // The operator gives the command again.
        let o = p.reagent(&["amend", "1", "amended.toml", "--yes"]);
        assert!(o.status.success(), "{label}: {}", text(&o));
        resume(&p, &label);
        check_ended(&p, &label, "finished", TRIALS);
        // Before, the second amend asked for the +0.5 again and the
        // budget ended at 2.0.
        let s = p.json(&["status", "1", "--json"]);
        assert_eq!(s["budget"]["cpu_hours"], 1.5, "{label}: grew once: {s}");
    }
}

/// Killed after each job submission returned, before the journal has it:
/// the next driver finds the job by its key, never submits it again.
fn submits(points: &mut BTreeSet<String>) {
    for n in 1..=12 {
        let p = project();
        let o = p
            .command(&["run", "toy.toml", "--yes"])
            .env("REAGENT_CRASH_AFTER_SUBMITS", n.to_string())
            .env("REAGENT_CRASH_LOG", p.path("crash.log"))
            .output()
            .unwrap();
        let label = format!("submit {n}");
        if o.status.success() {
            check_ended(&p, &label, "finished", TRIALS);
            continue;
        }
        resume(&p, &label);
        check_ended(&p, &label, "finished", TRIALS);
        points.insert(label);
    }
}

/// A tiny seeded generator (splitmix64), for the chaos instants.
pub(crate) fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// SIGKILLs of the foreground driver at random instants (not only after
/// commits), each followed by a new driver, until the campaign ends.
fn chaos(points: &mut BTreeSet<String>) {
    let seed: u64 = std::env::var("REAGENT_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let kills: usize = std::env::var("REAGENT_CHAOS_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut rng = seed;
    // Slow enough jobs that the campaign outlasts the kills.
    let p = Project::new(|t| busy(t).replace("TOY_RUNS = ", "TOY_SLEEP = \"1.0\", TOY_RUNS = "));
    runs_log(&p);
    assert!(p.reagent(&["plan", "toy.toml", "--yes"]).status.success());
    let mut killed = 0;
    while killed < kills {
        let mut driver = p
            .command(&["run", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let wait = Duration::from_millis(50 + next(&mut rng) % 400);
        std::thread::sleep(wait);
        if driver.try_wait().unwrap().is_some() {
            break; // it finished first
        }
        driver.kill().unwrap(); // SIGKILL
        driver.wait().unwrap();
        killed += 1;
        points.insert(format!("chaos seed {seed}: kill {killed} after {wait:?}"));
    }
    resume(&p, "chaos");
    check_ended(&p, &format!("chaos seed {seed}"), "finished", TRIALS);
    eprintln!("chaos (REAGENT_CHAOS_SEED={seed}): {killed} SIGKILLs of the driver");
}

#[test]
fn every_commit_is_a_kill_point_and_nothing_is_lost() {
    let mut points = BTreeSet::new();
    let mut by_scenario = Vec::new();
    let only = std::env::var("REAGENT_KILL_ONLY").ok();
    for (name, scenario) in [
        ("driver", driver as fn(&mut BTreeSet<String>)),
        ("small driver", small_driver),
        ("detached wakes", detached),
        ("operator commands", operator),
        ("amend", amend),
        ("submit path", submits),
        ("random SIGKILLs", chaos),
    ] {
        // REAGENT_KILL_ONLY="amend" runs only the scenarios named (then
        // the count below is not checked).
        if only
            .as_ref()
            .is_some_and(|o| !o.split(',').any(|n| n.trim() == name))
        {
            continue;
        }
        let before = points.len();
        let t0 = Instant::now();
        scenario(&mut points);
        by_scenario.push(format!(
            "{name}: {} in {:.0?}",
            points.len() - before,
            t0.elapsed()
        ));
    }
    eprintln!(
        "kill points: {} distinct ({})",
        points.len(),
        by_scenario.join("; ")
    );
    assert!(
        only.is_some() || points.len() >= 200,
        "{} kill points: {by_scenario:?}",
        points.len()
    );
}
