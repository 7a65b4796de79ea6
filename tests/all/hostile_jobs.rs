//! Hostile jobs: whole campaigns through the real binary whose job scripts
//! (tests/jobs/*.sh) attack the host that launched them — forging their
//! records, pre-creating another trial's folder, escaping the supervisor,
//! writing the workspace, reading secrets from the environment, leaking
//! host paths to strategies. Each test shows the attack contained.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reagent::records::campaign::{EventBody, TrialStatus};
use reagent::store::Store;

use crate::campaign::{Project, text};

/// The toy project with `script` (from tests/jobs) as the job's command,
/// then `edit` applied to the campaign file.
fn project(script: &str, edit: impl Fn(String) -> String) -> Project {
    let p = Project::new(|t| {
        edit(t.replace(
            "command = [\"sh\", \"toy.sh\",",
            &format!("command = [\"sh\", \"{script}\","),
        ))
    });
    let jobs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/jobs");
    std::fs::copy(jobs.join(script), p.path(script)).unwrap();
    p
}

/// The job folder of trial `n` of campaign `c`: `c<c>-t<n>-<nonce>`, or
/// (the old code's name) `c<c>-t<n>`.
fn job_folder(p: &Project, c: u64, n: u64) -> Option<PathBuf> {
    let exact = format!("c{c}-t{n}");
    let prefix = format!("c{c}-t{n}-");
    let names: Vec<String> = std::fs::read_dir(p.path(".reagent/jobs"))
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names
        .iter()
        .find(|name| {
            name.strip_prefix(&prefix)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('-'))
        })
        .or_else(|| names.iter().find(|name| **name == exact))
        .map(|name| p.path(".reagent/jobs").join(name))
}

/// Where trial `n` of campaign `c` wrote its own files (`$REAGENT_JOB_DIR`).
fn job_output(p: &Project, c: u64, n: u64) -> PathBuf {
    let folder = job_folder(p, c, n).unwrap_or_else(|| panic!("no job folder for trial {n}"));
    let out = folder.join("out");
    if out.is_dir() { out } else { folder }
}

/// The store, once the supervisors' wakes have let go of it.
fn store(p: &Project) -> Store {
    let start = Instant::now();
    loop {
        match Store::open(&p.path(".reagent/reagent.redb")) {
            Ok(s) => return s,
            Err(e) if start.elapsed() > Duration::from_secs(30) => panic!("{e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn launched(status: TrialStatus) -> bool {
    !matches!(status, TrialStatus::Queued | TrialStatus::Dropped)
}

#[test]
fn a_job_forging_its_exit_record_cannot_make_the_ledger_negative_or_overrun_the_budget() {
    // 0.006 CPU-hours = 21.6 s; each trial reserves 5 s and really works
    // for at least 3 s, so at most 7 trials can honestly run.
    let p = project("forge_status.sh", |t| {
        // A failure's escalation must not hold the campaign for a day.
        t.replace("time_limit = \"20s\"", "time_limit = \"5s\"")
            .replace("cpu_hours = 1.0", "cpu_hours = 0.006")
            + "\n[policy]\napproval_expiry = \"2s\"\n"
    });
    let o = p.reagent(&["run", "toy.toml", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    // Let any forger still alive (there should be none) have its go.
    std::thread::sleep(Duration::from_millis(500));
    let store = store(&p);
    let c = store.campaign(1).unwrap().unwrap();
    let trials = store.trials(1).unwrap();
    for t in &trials {
        assert!(
            t.spent_cpu >= 0.0 && t.spent_cpu.is_finite(),
            "trial {} spent {}",
            t.id,
            t.spent_cpu
        );
        if let Some(o) = &t.outcome {
            assert!(o.wall_secs >= 0.0, "trial {}: {o:?}", t.id);
        }
    }
    assert!(c.ledger.spent_cpu >= 0.0, "ledger {:?}", c.ledger);
    assert!(
        c.ledger.spent_cpu <= 0.006 + 1e-9,
        "never past the budget: {:?}",
        c.ledger
    );
    let ran = trials.iter().filter(|t| launched(t.status)).count();
    assert!(
        ran as f64 * 3.0 <= 0.006 * 3600.0 + 1e-6,
        "{ran} trials of ≥ 3 s each ran on a budget of 21.6 s: {:?}",
        c.ledger
    );
    // Every settled trial was charged at least its genuine 3 s of work.
    for t in trials.iter().filter(|t| t.status == TrialStatus::Succeeded) {
        assert!(
            t.spent_cpu >= 3.0 / 3600.0,
            "trial {}: {}",
            t.id,
            t.spent_cpu
        );
    }
}

/// Runs the campaign; trial 3 must really run (or be reported), never be
/// the forgery some job or process put in `c1-t3/`.
fn preempted_trial_runs_for_real(p: &Project) {
    let o = p.reagent(&["run", "toy.toml", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let store = store(p);
    let trials = store.trials(1).unwrap();
    let t3 = trials.iter().find(|t| t.id == 3).expect("trial 3");
    assert_ne!(
        t3.objective,
        Some(0.0001),
        "trial 3 adopted the forgery: {t3:?}"
    );
    match t3.status {
        // It really ran: the toy's loss at the baseline is about 0.55.
        TrialStatus::Succeeded => {
            let v = t3.objective.unwrap();
            assert!(v > 0.1, "trial 3: {v}");
            let outcome = t3.outcome.as_ref().unwrap();
            assert!(outcome.wall_secs > 0.0, "{outcome:?}");
        }
        // Or it was reported, never adopted.
        TrialStatus::Failed => {
            let tail = &t3.outcome.as_ref().unwrap().log_tail;
            assert!(tail.contains("lost") || tail.contains("not ours"), "{tail}");
        }
        other => panic!("trial 3 is {other:?}"),
    }
    drop(store);
    let r = p.json(&["report", "1", "--format", "json"]);
    assert_ne!(r["best"]["objective"], serde_json::json!(0.0001), "{r}");
    for t in &trials {
        assert_ne!(t.objective, Some(0.0001), "trial {} adopted it", t.id);
    }
}

#[test]
fn a_trial_folder_pre_created_by_another_job_is_never_adopted() {
    let p = project("preempt_trial.sh", |t| {
        t.replace("max_trials = 24", "max_trials = 8")
    });
    preempted_trial_runs_for_real(&p);
    let jobs = p.path(".reagent/jobs");
    assert!(
        !jobs.join("c1-t3").exists(),
        "the job wrote the jobs folder"
    );
}

#[test]
fn a_trial_folder_pre_created_outside_the_sandbox_is_never_adopted() {
    // What an unconfined job (or any other process of the user) can do:
    // pre-create trial 3's folder under its old, predictable name. The
    // launch's nonce makes it not trial 3's folder.
    let p = Project::new(|t| t.replace("max_trials = 24", "max_trials = 8"));
    let t3 = p.path(".reagent/jobs/c1-t3");
    std::fs::create_dir_all(t3.join("out")).unwrap();
    let record = r#"{"exit_code":0,"signal":null,"wall_secs":0.1,"cpu_secs":0.0}"#;
    let line = r#"{"step":2,"valid_loss":0.0001,"valid_loss_stderr":0.00001,"test_loss":0.0001}"#;
    std::fs::write(t3.join("status.json"), record).unwrap();
    std::fs::write(t3.join("metrics.jsonl"), line).unwrap();
    std::fs::write(t3.join("out/metrics.jsonl"), line).unwrap();
    preempted_trial_runs_for_real(&p);
    let real = job_folder(&p, 1, 3).unwrap();
    assert_ne!(real, t3, "trial 3 ran in a folder of its own");
}

/// Whether `pid` is alive (a zombie counts as dead).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn a_setsid_descendant_dies_with_its_trial() {
    let p = project("escape.sh", |t| {
        t.replace("max_trials = 24", "max_trials = 6")
    });
    let o = p.reagent(&["run", "toy.toml", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = job_output(&p, 1, 1);
    let pid: i32 = std::fs::read_to_string(out.join("escaped.pid"))
        .expect("the job recorded its writer")
        .trim()
        .parse()
        .unwrap();
    let log = out.join("escaped.log");
    let size = || std::fs::metadata(&log).map_or(0, |m| m.len());
    let before = size();
    std::thread::sleep(Duration::from_millis(600));
    let after = size();
    let still_alive = alive(pid);
    if still_alive {
        // Do not leave it running past the test.
        // SAFETY: kill has no memory-safety preconditions.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    assert!(!still_alive, "the escaped writer {pid} outlived its trial");
    assert_eq!(before, after, "the escaped writer kept writing");
}

#[test]
fn a_job_cannot_write_the_workspace_or_approve_a_plan() {
    let p = project("workspace_write.sh", |t| {
        t.replace("max_trials = 24", "max_trials = 6")
    });
    // Request 1: another campaign's plan, waiting for the operator.
    std::fs::copy(p.path("toy.toml"), p.path("other.toml")).unwrap();
    let o = p.reagent(&["plan", "other.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    let pending = p.json(&["approvals", "--json"]);
    assert_eq!(pending[0]["id"], 1, "{pending}");
    assert_eq!(pending[0]["state"], "pending", "{pending}");
    let toml = std::fs::read_to_string(p.path("toy.toml")).unwrap().replace(
        "resources = { cpus = 1 }",
        &format!(
            "resources = {{ cpus = 1 }}\nenv = {{ HOSTILE_REAGENT = \"{}\", HOSTILE_APPROVE = \"1\" }}",
            env!("CARGO_BIN_EXE_reagent")
        ),
    );
    std::fs::write(p.path("hostile.toml"), toml).unwrap();
    let o = p.reagent(&["run", "hostile.toml", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));

    // The hostile campaign is campaign 2.
    let out = job_output(&p, 2, 1);
    let attempts = std::fs::read_to_string(out.join("attempts")).unwrap();
    let attempts = format!(
        "{attempts}\napprove said: {}",
        std::fs::read_to_string(out.join("approve.out")).unwrap_or_default()
    );
    assert!(attempts.contains("touch:denied"), "{attempts}");
    assert!(attempts.contains("db:denied"), "{attempts}");
    assert!(attempts.contains("approve:failed"), "{attempts}");
    assert!(!p.path(".reagent/planted").exists());
    let all = p.json(&["approvals", "--all", "--json"]);
    let first = all
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == 1)
        .unwrap();
    assert_eq!(first["state"], "pending", "the job approved it: {first}");
    // The hostile campaign itself ran to the end.
    let s = p.json(&["status", "2", "--json"]);
    assert_eq!(s["state"], "finished", "{s}");
}

const LLM: &str = "\n[llm]\nurl = \"http://127.0.0.1:9/v1/chat/completions\"\nmodel = \"m\"\napi_key_env = \"HOSTILE_LLM_KEY\"\n";

#[test]
fn the_job_environment_holds_only_what_is_listed() {
    let p = project("dump_env.sh", |t| {
        t.replace("max_trials = 24", "max_trials = 6")
            .replace(
                "pass_env = [",
                "pass_env = [\"HOSTILE_LISTED_*\", \"HOSTILE_ONE\", ",
            )
            .replace(
                "resources = { cpus = 1 }",
                "resources = { cpus = 1 }\nenv = { HOSTILE_SET = \"set\" }",
            )
            + LLM
    });
    let o = p
        .command(&["run", "toy.toml", "--yes"])
        .env("HOSTILE_LLM_KEY", "sekrit-key-4711")
        .env("HOSTILE_UNLISTED", "unlisted-value")
        .env("HOSTILE_LISTED_A", "a-value")
        .env("HOSTILE_ONE", "one-value")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let env = std::fs::read_to_string(job_output(&p, 1, 1).join("env.txt")).unwrap();
    assert!(
        !env.contains("sekrit-key-4711"),
        "the key reached the job:\n{env}"
    );
    assert!(!env.contains("HOSTILE_LLM_KEY"), "{env}");
    assert!(!env.contains("HOSTILE_UNLISTED"), "{env}");
    assert!(!env.contains("REAGENT_CACHE_DIR"), "{env}");
    for line in [
        "HOSTILE_LISTED_A=a-value",
        "HOSTILE_ONE=one-value",
        "HOSTILE_SET=set",
        "REAGENT_TRIAL=1",
    ] {
        assert!(env.lines().any(|l| l == line), "no {line}:\n{env}");
    }
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    let tmp = env
        .lines()
        .find_map(|l| l.strip_prefix("TMPDIR="))
        .unwrap_or_else(|| panic!("no TMPDIR:\n{env}"));
    assert!(
        tmp.contains("/.reagent/jobs/"),
        "a private tmp in the job folder: {tmp}"
    );
}

#[test]
fn a_pass_env_pattern_matching_the_llm_key_is_a_located_error() {
    let p =
        Project::new(|t| t.replace("pass_env = [", "pass_env = [\"PATH\", \"HOSTILE_*\", ") + LLM);
    let o = p.reagent(&["plan", "toy.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("toy.toml:16:"), "{out}");
    assert!(out.contains("HOSTILE_LLM_KEY"), "{out}");
    assert!(p.json(&["approvals", "--all", "--json"]) == serde_json::json!([]));
}

#[test]
fn strategies_never_see_a_host_path() {
    let p = project("leak_paths.sh", |t| {
        t.replace("max_trials = 24", "max_trials = 8")
            .replace("max_parallel = 2", "max_parallel = 1")
    });
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut run = p
        .command(&["run", "toy.toml", "--yes"])
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    // Trial 5 sleeps 4 s: swap its folder for a symlink to it.
    let start = Instant::now();
    let folder = loop {
        if let Some(f) = job_folder(&p, 1, 5)
            && f.join("job.pid").exists()
        {
            break f;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "trial 5 never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let moved = p.path("moved-away");
    std::fs::rename(&folder, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &folder).unwrap();
    let ok = run.wait().unwrap().success();
    assert!(ok, "{}", std::fs::read_to_string(log.path()).unwrap());

    let store = store(&p);
    let trials = store.trials(1).unwrap();
    let t5 = trials.iter().find(|t| t.id == 5).unwrap();
    let tail5 = &t5.outcome.as_ref().unwrap().log_tail;
    assert!(tail5.contains("job folder is a symlink"), "{tail5}");
    let t4 = trials.iter().find(|t| t.id == 4).unwrap();
    assert_eq!(t4.status, TrialStatus::Failed, "{t4:?}");

    let root = p.dir.path().to_string_lossy().into_owned();
    let canonical = p.dir.path().canonicalize().unwrap();
    let canonical = canonical.to_string_lossy().into_owned();
    let mut debugger_calls = 0;
    for e in store.events(0).unwrap() {
        let EventBody::StrategyCalled { role, record, .. } = &e.body else {
            continue;
        };
        if !record {
            continue;
        }
        let call = store.call(e.seq).unwrap().unwrap();
        let seen = serde_json::to_string(&(&call.input, &call.host_calls)).unwrap();
        for path in [&root, &canonical] {
            assert!(!seen.contains(path.as_str()), "{role} saw {path}: {seen}");
        }
        assert!(!seen.contains("/.reagent/"), "{role}: {seen}");
        if role == "debugger" {
            debugger_calls += 1;
        }
    }
    assert!(debugger_calls >= 2, "the failures went to the debugger");
}
