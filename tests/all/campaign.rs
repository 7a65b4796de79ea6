//! Campaigns end to end, with the real `reagent` binary, the local backend
//! and a scripted job (tests/jobs/toy.sh).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// A temp project with the toy job, its campaign file (with `edit`
    /// applied to the TOML) and an initialised workspace.
    pub fn new(edit: impl Fn(String) -> String) -> Project {
        Project::new_in(&std::env::temp_dir(), edit)
    }

    /// [`Project::new`] in a folder under `parent` (e.g. a small mount).
    pub fn new_in(parent: &Path, edit: impl Fn(String) -> String) -> Project {
        let dir = tempfile::tempdir_in(parent).unwrap();
        let jobs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/jobs");
        std::fs::copy(jobs.join("toy.sh"), dir.path().join("toy.sh")).unwrap();
        let toml = std::fs::read_to_string(jobs.join("toy.toml")).unwrap();
        std::fs::write(dir.path().join("toy.toml"), edit(toml)).unwrap();
        let p = Project { dir };
        let o = p.reagent(&["init"]);
        assert!(o.status.success(), "{}", text(&o));
        p
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_reagent"));
        c.args(args)
            .arg("--workspace")
            .arg(self.dir.path())
            .current_dir(self.dir.path())
            .env("REAGENT_CACHE_DIR", crate::support::cache_dir())
            .env_remove("REAGENT_CRASH_AFTER_COMMITS");
        c
    }

    pub fn reagent(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let o = self.reagent(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&o)))
    }

    pub fn wait_finished(&self, id: &str, limit: Duration) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let s = self.json(&["status", id, "--json"]);
            let state = s["state"].as_str().unwrap().to_string();
            if matches!(state.as_str(), "finished" | "halted" | "cancelled") {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "campaign {id} still {state} after {limit:?}: {s}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_campaign_runs_to_a_proposal_that_beats_the_baseline() {
    let p = Project::new(|t| t);
    let o = p.reagent(&["run", "toy.toml", "--yes"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("== validate =="), "{out}");
    assert!(out.contains("== exploit =="), "{out}");
    // Progress lines number trials tN and hypotheses hN; the closing line
    // is computed once the campaign is finished (it once said "interim").
    assert!(
        out.lines()
            .any(|l| l.contains("launch  t4 ") && l.contains(" h1 ")),
        "{out}"
    );
    assert!(out.contains("] finished: Adopt hypothesis "), "{out}");
    assert!(!out.contains("interim"), "{out}");

    let r = p.json(&["report", "1", "--format", "json"]);
    assert_eq!(r["state"], "finished", "{r}");
    assert_eq!(r["objective"]["metric"], "valid_loss");
    assert_eq!(r["baseline"]["n"], 2, "the confirmation baseline: {r}");
    let effect = r["effect"]["estimate"].as_f64().unwrap();
    assert!(
        effect > 0.01,
        "the toy optimum is far better than baseline: {r}"
    );
    assert!(r["effect"]["ci95_low"].as_f64().unwrap() > 0.0, "{r}");
    // The verdict names the change from the baseline, whatever the
    // strategy's title says (exploit titles name a parent).
    let verdict = r["verdict"].as_str().unwrap();
    let named = format!("Adopt hypothesis {} (", r["best"]["hypothesis"]);
    assert!(verdict.starts_with(&named), "{verdict}");
    for line in r["best"]["diff"].as_array().unwrap() {
        let line = line.as_str().unwrap().replacen(": ", " ", 1);
        assert!(verdict.contains(&line), "{line} in {verdict}");
    }
    assert_eq!(r["confirmed"], true, "{r}");
    assert!(
        !r["best"]["assignments"].as_object().unwrap().is_empty(),
        "{r}"
    );
    assert_eq!(r["holdout"]["metric"], "test_loss");
    assert!(
        r["holdout"]["best_mean"].as_f64().unwrap()
            < r["holdout"]["baseline_mean"].as_f64().unwrap()
    );
    let total = r["trials"]["total"].as_u64().unwrap();
    assert!(total <= 24, "max_trials respected: {total}");
    assert!(
        r["spent"]["cpu_hours"].as_f64().unwrap() <= r["budget"]["cpu_hours"].as_f64().unwrap()
    );

    // The contract for scripts.
    let s = p.json(&["status", "1", "--json"]);
    assert_eq!(
        (s["id"].as_u64(), s["state"].as_str()),
        (Some(1), Some("finished"))
    );
    let trials = p.json(&["trials", "1", "--json"]);
    let first = &trials.as_array().unwrap()[0];
    for key in ["id", "status", "phase", "assignments", "metrics", "seed"] {
        assert!(
            first.get(key).is_some(),
            "trials --json lacks {key}: {first}"
        );
    }
    assert_eq!(first["assignments"]["optimizer"], "sgd");
    assert_eq!(first["assignments"]["layers"], 0, "typed values: {first}");
    let md = text(&p.reagent(&["report", "1"]));
    assert!(md.contains("# Improvement proposal: toy"), "{md}");
    assert!(md.contains("## Config change vs baseline"), "{md}");
}

#[test]
fn failures_go_through_the_debugger_to_the_right_action() {
    // Trials 4.. are the first validate hypotheses (1–3 are the baseline).
    let p = Project::new(|t| {
        t.replace("time_limit = \"20s\"", "time_limit = \"3s\"")
            .replace(
                "resources = { cpus = 1 }",
                "resources = { cpus = 1 }\nenv = { FAIL_T4 = \"oom\", FAIL_T5 = \"nan\", FAIL_T6 = \"timeout\", FAIL_T7 = \"crash\", FAIL_T8 = \"nometric\", FAIL_T9 = \"garbage\" }",
            )
            .replace("max_trials = 24", "max_trials = 14")
            + "\n[policy]\napproval_expiry = \"2s\"\n"
    });
    let o = p.reagent(&["run", "toy.toml", "--yes"]);
    let out = text(&o);
    assert!(out.contains("debug   t4"), "{out}");
    // The escalation became an approval request; nobody answered, so it
    // expired (denied) and the campaign went on without that branch.
    let requests = p.json(&["approvals", "--all", "--json"]);
    let escalation = requests
        .as_array()
        .unwrap()
        .iter()
        // Trial 8's (no metric) is the one the runbook escalates; which
        // request comes first depends on the order failures settle in.
        .find(|a| a["kind"] == "escalation" && a["payload"]["trial"] == 8)
        .unwrap_or_else(|| panic!("no escalation request for trial 8: {requests}"));
    assert_eq!(escalation["state"], "expired", "{escalation}");
    let trials = p.json(&["trials", "1", "--json"]);
    let by_id = |id: u64| {
        trials
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap_or_else(|| panic!("no trial {id}: {trials}"))
            .clone()
    };
    let t4 = by_id(4);
    assert_eq!(t4["failure"], "out-of-memory", "{t4}");
    assert!(
        t4["action"]
            .as_str()
            .unwrap()
            .contains("retry with batch_size="),
        "{t4}"
    );
    let t5 = by_id(5);
    assert_eq!(t5["failure"], "divergence", "{t5}");
    assert!(
        t5["action"].as_str().unwrap().contains("retry with lr="),
        "{t5}"
    );
    let t6 = by_id(6);
    assert_eq!(t6["failure"], "time-limit", "{t6}");
    let t7 = by_id(7);
    assert_eq!(t7["failure"], "program-error", "{t7}");
    assert_eq!(t7["action"], "excluded", "{t7}");
    let t8 = by_id(8);
    assert_eq!(t8["failure"], "missing-metrics", "{t8}");
    assert!(t8["action"].as_str().unwrap().contains("escalated"), "{t8}");
    // Garbage in the metrics file: the trial fails for missing metrics.
    let t9 = by_id(9);
    assert_eq!(t9["status"], "failed", "{t9}");
    assert_eq!(t9["failure"], "missing-metrics", "{t9}");
    // The retries ran and the campaign still reached a proposal.
    let r = p.json(&["report", "1", "--format", "json"]);
    assert_eq!(r["state"], "finished", "{r}");
    assert!(r["failures"].as_array().unwrap().len() >= 5, "{r}");
    let retried = trials
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["attempt"].as_u64() == Some(2))
        .count();
    assert!(retried >= 2, "oom and nan were retried: {trials}");
    status_matches_trials(&p);
}

/// `status` reads the tally the engine keeps on the campaign's row: its
/// counts must be the trials' own.
fn status_matches_trials(p: &Project) {
    let s = p.json(&["status", "1", "--json"]);
    let trials = p.json(&["trials", "1", "--json"]);
    let count = |status: &str| {
        trials
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["status"] == status)
            .count() as u64
    };
    for (field, statuses) in [
        ("queued", &["queued"][..]),
        ("running", &["launching", "running"][..]),
        ("succeeded", &["succeeded"][..]),
        ("failed", &["failed"][..]),
        ("stopped", &["stopped"][..]),
    ] {
        let want: u64 = statuses.iter().map(|st| count(st)).sum();
        assert_eq!(s["trials"][field], want, "{field}: {s}\n{trials}");
    }
    let baseline_runs = trials
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["hypothesis"] == 0 && t["phase"] != "confirm" && t["status"] == "succeeded")
        .count() as u64;
    if baseline_runs == 0 {
        assert!(s["baseline"].is_null(), "{s}");
    } else {
        assert_eq!(s["baseline"]["n"], baseline_runs, "{s}");
    }
}

#[test]
fn status_counts_stay_true_through_a_cancel() {
    let p = Project::new(|t| {
        t.replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { TOY_SLEEP = \"5\" }",
        )
    });
    let o = p.reagent(&["run", "toy.toml", "--yes", "--detach"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = p.json(&["status", "1", "--json"]);
    assert_eq!(s["trials"]["running"], 2, "{s}");
    status_matches_trials(&p);
    let o = p.reagent(&["cancel", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = p.json(&["status", "1", "--json"]);
    assert_eq!(s["state"], "cancelled", "{s}");
    assert_eq!(s["trials"]["running"], 0, "{s}");
    status_matches_trials(&p);
}

#[test]
fn budget_exhaustion_ends_in_a_report_within_budget() {
    // Each trial takes ~1 s on "36 cpus": it spends 0.01 CPU-hours and
    // reserves 0.02 (2 s limit); 0.06 CPU-hours cannot cover them all.
    let p = Project::new(|t| {
        t.replace("time_limit = \"20s\"", "time_limit = \"2s\"")
            .replace(
                "resources = { cpus = 1 }",
                "resources = { cpus = 36 }\nenv = { TOY_SLEEP = \"1\" }",
            )
            .replace("cpu_hours = 1.0", "cpu_hours = 0.06")
    });
    let o = p.reagent(&["run", "toy.toml", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let r = p.json(&["report", "1", "--format", "json"]);
    assert_eq!(r["state"], "finished", "{r}");
    let s = p.json(&["status", "1", "--json"]);
    let spent = s["spent"]["cpu_hours"].as_f64().unwrap();
    assert!(spent <= 0.06 + 1e-9, "never past the budget: {s}");
    assert!(spent > 0.03, "the budget was actually used: {s}");
    assert_eq!(s["reserved"]["cpu_hours"].as_f64().unwrap(), 0.0, "{s}");
    assert!(
        r["trials"]["total"].as_u64().unwrap() < 24,
        "stopped by budget, not by max_trials: {r}"
    );
    assert!(r["verdict"].as_str().is_some());
}

#[test]
fn detach_hibernates_and_the_supervisors_wake_the_host_to_the_end() {
    let p = Project::new(|t| t.replace("max_trials = 24", "max_trials = 12"));
    let o = p.reagent(&["run", "toy.toml", "--yes", "--detach"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("no reagent process stays behind"),
        "{}",
        text(&o)
    );
    let s = p.wait_finished("1", Duration::from_secs(120));
    assert_eq!(s["state"], "finished", "{s}");
    let r = p.json(&["report", "1", "--format", "json"]);
    assert!(r["trials"]["total"].as_u64().unwrap() >= 8, "{r}");
}

#[test]
fn ctrl_c_stops_a_foreground_run_between_passes_and_the_jobs_finish_it() {
    use std::io::{BufRead as _, BufReader};
    // Trials of ~2 s, so the driver is waiting on running jobs when the
    // signal comes. Before, a foreground run had no handler: Ctrl-C killed
    // it mid-wait and left the campaign "running" with nobody driving.
    let p = Project::new(|t| {
        t.replace("max_trials = 24", "max_trials = 8").replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { TOY_SLEEP = \"2\" }",
        )
    });
    assert!(p.reagent(&["plan", "toy.toml", "--yes"]).status.success());
    let mut driver = p
        .command(&["run", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(driver.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("launch") {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "{seen}");
        seen.push_str(&line);
    }
    let signalled = Instant::now();
    // SAFETY: kill only sends a signal to the child we spawned.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(driver.id() as i32, libc::SIGINT);
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = driver.wait().unwrap();
    let stopped_in = signalled.elapsed();
    seen.push_str(&rest);
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(
        seen.contains("interrupted: campaign 1 is hibernating with"),
        "{seen}"
    );
    // It did not wait for the running trials to end.
    assert!(
        stopped_in < Duration::from_secs(10),
        "{stopped_in:?}: {seen}"
    );
    // Nobody drives it now; the jobs' supervisors wake it, and it ends.
    let s = p.wait_finished("1", Duration::from_secs(180));
    assert_eq!(s["state"], "finished", "{s}");
    let o = p.reagent(&["audit", "verify"]);
    assert!(o.status.success(), "{}", text(&o));
}

/// Starts a foreground driver of 8 trials of ~2 s and waits for a launch.
fn driving(
    p: &Project,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
) {
    use std::io::{BufRead as _, BufReader};
    assert!(p.reagent(&["plan", "toy.toml", "--yes"]).status.success());
    let mut driver = p
        .command(&["run", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(driver.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("launch") {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "{seen}");
        seen.push_str(&line);
    }
    (driver, out)
}

fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: kill only sends a signal to the child we spawned.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

#[test]
fn sigterm_sighup_and_a_second_signal_leave_a_campaign_the_jobs_finish() {
    use std::os::unix::process::ExitStatusExt as _;
    let slow = |t: String| {
        t.replace("max_trials = 24", "max_trials = 8").replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { TOY_SLEEP = \"2\" }",
        )
    };
    // SIGTERM (a service manager) and SIGHUP (the terminal closing): the
    // same as Ctrl-C — stop between passes, say so, hibernate.
    for sig in [libc::SIGTERM, libc::SIGHUP] {
        let p = Project::new(slow);
        let (mut driver, mut out) = driving(&p);
        signal(&driver, sig);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        let status = driver.wait().unwrap();
        assert_eq!(status.code(), Some(130), "signal {sig}: {rest}");
        assert!(
            rest.contains("interrupted: campaign 1 is hibernating with"),
            "signal {sig}: {rest}"
        );
        let s = p.wait_finished("1", Duration::from_secs(180));
        assert_eq!(s["state"], "finished", "signal {sig}: {s}");
        let o = p.reagent(&["audit", "verify"]);
        assert!(o.status.success(), "signal {sig}: {}", text(&o));
    }
    // A second signal ends the driver at once, wherever it is; the
    // campaign is still consistent and the jobs' supervisors finish it.
    let p = Project::new(slow);
    let (mut driver, _out) = driving(&p);
    signal(&driver, libc::SIGINT);
    signal(&driver, libc::SIGINT);
    let status = driver.wait().unwrap();
    assert!(
        status.signal() == Some(libc::SIGINT) || status.code() == Some(130),
        "{status:?}"
    );
    let s = p.wait_finished("1", Duration::from_secs(180));
    assert_eq!(s["state"], "finished", "{s}");
    let o = p.reagent(&["audit", "verify"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn bad_campaign_files_are_located_and_register_nothing() {
    let p = Project::new(|t| t.replace("{optimizer}", "{optimiser}"));
    let o = p.reagent(&["plan", "toy.toml"]);
    assert_eq!(o.status.code(), Some(2));
    let out = text(&o);
    assert!(out.contains("toy.toml:12:"), "{out}");
    assert!(out.contains("unknown knob `{optimiser}`"), "{out}");
    let s = p.json(&["status", "--json"]);
    assert_eq!(s.as_array().unwrap().len(), 0, "nothing registered");

    let p = Project::new(|t| t.replace("command = [\"sh\"", "command = [\"no-such-trainer\""));
    let o = p.reagent(&["plan", "toy.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("`no-such-trainer` was not found"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_plan_without_approval_launches_nothing() {
    let p = Project::new(|t| t);
    let v = p.json(&["plan", "toy.toml", "--json"]);
    assert_eq!(v["state"], "awaiting-approval");
    assert!(v["slate"].as_array().unwrap().len() >= 3, "{v}");
    let o = p.reagent(&["run", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("awaits approval"), "{}", text(&o));
    let trials = p.json(&["trials", "1", "--json"]);
    assert_eq!(trials.as_array().unwrap().len(), 0);
    assert!(
        !p.path(".reagent/jobs").read_dir().unwrap().any(|_| true),
        "no job folder"
    );
}

#[test]
fn approving_by_id_and_running_from_another_directory() {
    let p = Project::new(|t| t.replace("max_trials = 24", "max_trials = 9"));
    let v = p.json(&["plan", "toy.toml", "--json"]);
    assert_eq!(v["state"], "awaiting-approval");
    // From `/`, as cron or a supervisor would: paths come from the campaign
    // file's folder, not the current directory.
    let o = p
        .command(&["run", "1", "--yes"])
        .current_dir("/")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("plan approved by"), "{}", text(&o));
    let r = p.json(&["report", "1", "--format", "json"]);
    assert_eq!(r["state"], "finished");
    assert_eq!(r["trials"]["failed"], 0, "{r}");
}

#[test]
fn pause_stops_launches_but_keeps_recording_results() {
    // Jobs slow enough that the campaign cannot end before `pause` (quick
    // ones sometimes finished all 12 trials first).
    let p = Project::new(|t| {
        t.replace("max_trials = 24", "max_trials = 12").replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { TOY_SLEEP = \"0.5\" }",
        )
    });
    let o = p.reagent(&["run", "toy.toml", "--yes", "--detach"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = p.reagent(&["pause", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    // The jobs in flight finish and are recorded; nothing new launches.
    let start = Instant::now();
    loop {
        let s = p.json(&["status", "1", "--json"]);
        if s["trials"]["running"] == 0 {
            assert!(s["trials"]["succeeded"].as_u64().unwrap() >= 1, "{s}");
            assert_eq!(s["paused"], true);
            assert_ne!(s["state"], "finished");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = p
        .json(&["trials", "1", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] != "queued")
        .count();
    p.reagent(&["wake"]);
    let after = p
        .json(&["trials", "1", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] != "queued")
        .count();
    assert_eq!(before, after, "a wake launches nothing while paused");
    let o = p.reagent(&["resume", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = p.wait_finished("1", Duration::from_secs(60));
    assert_eq!(s["state"], "finished");
}

#[test]
fn a_corrupted_database_is_a_clear_error_and_is_left_alone() {
    let p = Project::new(|t| t);
    let db = p.path(".reagent/reagent.redb");
    std::fs::write(&db, vec![0x5a; 16 << 10]).unwrap();
    let o = p.reagent(&["status"]);
    assert_eq!(o.status.code(), Some(2));
    let out = text(&o);
    assert!(
        out.contains("is damaged or not a reagent database"),
        "{out}"
    );
    assert!(out.contains("Nothing was changed"), "{out}");
    assert_eq!(std::fs::read(&db).unwrap(), vec![0x5a; 16 << 10]);
}

#[test]
fn the_best_candidates_are_raced_with_a_second_seed_before_the_winner_is_chosen() {
    // 40 trials: 3 baseline, 4 confirmation, 3 for the race, 30 exploring.
    let p = Project::new(|t| t.replace("max_trials = 24", "max_trials = 40"));
    let plan = p.json(&["plan", "toy.toml", "--json"]);
    assert_eq!(plan["allotment"]["race"], 3, "{plan:#}");
    let o = p.reagent(&["run", "1", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("racing the best candidates"),
        "{}",
        text(&o)
    );
    let trials = p.json(&["trials", "1", "--json"]);
    let trials = trials.as_array().unwrap();
    // Race runs: a non-baseline hypothesis's second exploration seed.
    let raced: Vec<u64> = trials
        .iter()
        .filter(|t| t["hypothesis"] != 0 && t["phase"] != "confirm" && t["seed"] == 2)
        .map(|t| t["hypothesis"].as_u64().unwrap())
        .collect();
    assert!(!raced.is_empty() && raced.len() <= 3, "{trials:#?}");
    // The winner is chosen after the race, among the raced candidates when
    // one of them is still best on two runs; it has two exploration runs.
    let report = p.json(&["report", "1", "--format", "json"]);
    let winner = report["best"]["hypothesis"].as_u64().unwrap();
    let runs = trials
        .iter()
        .filter(|t| t["hypothesis"] == winner && t["phase"] != "confirm")
        .count();
    assert!(
        raced.contains(&winner) && runs == 2,
        "winner {winner}, raced {raced:?}: {trials:#?}"
    );
}
