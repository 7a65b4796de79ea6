//! The Slurm backend against a real single-node Slurm (scripts/slurm-setup.sh,
//! which CI's .ci/run starts; its commands are named by REAGENT_SLURM_BIN).
//! Without a cluster these tests say so and pass, unless
//! REAGENT_REQUIRE_SLURM=1 (CI sets it), when a missing cluster fails them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::campaign::{Project, text};

/// The Slurm commands' folder, if a cluster answers.
fn cluster() -> Option<PathBuf> {
    let bin = std::env::var_os("REAGENT_SLURM_BIN").map(PathBuf::from);
    let sinfo = bin
        .as_ref()
        .map_or_else(|| PathBuf::from("sinfo"), |b| b.join("sinfo"));
    let ok = Command::new(&sinfo)
        .arg("-h")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("REAGENT_REQUIRE_SLURM").is_none(),
            "REAGENT_REQUIRE_SLURM is set but no Slurm cluster answers (run scripts/slurm-setup.sh)"
        );
        eprintln!("no Slurm cluster here (scripts/slurm-setup.sh starts one): skipped");
        return None;
    }
    Some(bin.unwrap_or_default())
}

fn slurm_project(edit: impl Fn(String) -> String) -> Project {
    Project::new(|t| {
        edit(
            t.replace(
                "resources = { cpus = 1 }",
                "resources = { cpus = 1 }\nbackend = \"slurm\"\nslurm = { partition = \"debug\", time_margin = \"30s\" }",
            )
            .replace("max_trials = 24", "max_trials = 9")
            .replace("confirm_replicates = 2", "confirm_replicates = 1"),
        )
    })
}

/// Waits for `path` to exist.
fn wait_for(path: &Path, what: &str) {
    let start = std::time::Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A foreground driver for the project's campaign, as a child process.
fn drive(p: &Project) -> std::process::Child {
    p.command(&["run", "toy.toml", "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Each trial's job folder started its batch job exactly once.
/// The job folder of campaign 1's trial `n` (named with its launch's
/// nonce), once it exists.
fn folder(p: &Project, n: u64) -> std::path::PathBuf {
    let start = std::time::Instant::now();
    loop {
        if let Some(f) = crate::crash::job_folder(&p.path(".reagent/jobs"), n) {
            return f;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "trial {n} never launched"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn assert_each_job_started_once(p: &Project) {
    let trials = p.json(&["trials", "1", "--json"]);
    let mut launched = 0;
    for t in trials.as_array().unwrap() {
        if matches!(t["status"].as_str(), Some("queued" | "dropped")) {
            continue;
        }
        launched += 1;
        let dir = folder(p, t["id"].as_u64().unwrap());
        assert!(dir.join("job.sbatch").exists(), "{}", dir.display());
        let starts = std::fs::read_to_string(dir.join("slurm-jobs")).unwrap_or_default();
        let ids: Vec<&str> = starts.lines().collect();
        assert_eq!(ids.len(), 1, "trial {} started {:?}", t["id"], ids);
        let recorded = std::fs::read_to_string(dir.join("slurm.jobid")).unwrap();
        assert_eq!(recorded.trim(), ids[0], "trial {}", t["id"]);
    }
    assert!(launched > 0);
}

fn slurm(bin: &Path, name: &str, args: &[&str]) -> String {
    let o = Command::new(if bin.as_os_str().is_empty() {
        PathBuf::from(name)
    } else {
        bin.join(name)
    })
    .args(args)
    .output()
    .unwrap();
    assert!(o.status.success(), "{name} {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_campaign_runs_to_the_end_on_slurm() {
    let Some(_) = cluster() else { return };
    let p = slurm_project(|t| t);
    let o = p.reagent(&["plan", "toy.toml", "--yes"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("slurm: controller answers; partition debug"),
        "{out}"
    );
    let o = p.reagent(&["run", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let r = p.json(&["report", "1", "--format", "json"]);
    assert_eq!(r["state"], "finished", "{r}");
    assert_eq!(r["trials"]["failed"], 0, "{r}");
    assert_each_job_started_once(&p);
    let script = std::fs::read_to_string(folder(&p, 1).join("job.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --partition=debug"), "{script}");
    assert!(
        script.contains("#SBATCH --time=0:50"),
        "20 s + 30 s margin: {script}"
    );
}

#[test]
fn time_outs_and_cancellations_outside_reagent_are_diagnosed() {
    let Some(bin) = cluster() else { return };
    // Trial 4 overruns its 6 s limit; trial 5 would too, but is cancelled
    // with scancel as soon as it is submitted.
    let p = slurm_project(|t| {
        t.replace("time_limit = \"20s\"", "time_limit = \"6s\"")
            .replace(
                "resources = { cpus = 1 }",
                "resources = { cpus = 1 }\nenv = { FAIL_T4 = \"timeout\", FAIL_T5 = \"timeout\" }",
            )
    });
    // A foreground driver: it looks again every few seconds, which a
    // job stopped from outside needs (its own wake comes while Slurm still
    // shows it running; on a cluster, the cron'd `reagent wake` does this).
    let driver = drive(&p);
    let job5 = folder(&p, 5).join("slurm.jobid");
    wait_for(&job5, "trial 5 never launched");
    let id = std::fs::read_to_string(&job5).unwrap().trim().to_string();
    slurm(&bin, "scancel", &[&id]);
    let out = driver.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let s = p.json(&["status", "1", "--json"]);
    assert_eq!(s["state"], "finished", "{s}");
    let trials = p.json(&["trials", "1", "--json"]);
    let t = |id: u64| {
        trials
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(t(4)["failure"], "time-limit", "{}", t(4));
    let t5 = t(5);
    assert_eq!(t5["status"], "failed", "{t5}");
    assert_eq!(t5["failure"], "killed", "cancelled in Slurm: {t5}");
    assert!(
        t5["action"].as_str().unwrap().contains("retry"),
        "a single kill is retried: {t5}"
    );
}

#[test]
fn a_controller_restart_mid_campaign_loses_nothing() {
    let Some(_) = cluster() else { return };
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/slurm-setup.sh");
    let p = slurm_project(|t| {
        t.replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { TOY_SLEEP = \"3\" }",
        )
    });
    let o = p.reagent(&["run", "toy.toml", "--yes", "--detach"]);
    assert!(o.status.success(), "{}", text(&o));
    // Two baseline jobs run now; restart the controller under them.
    std::thread::sleep(Duration::from_secs(1));
    let o = Command::new("bash")
        .arg(&setup)
        .arg("restart-ctld")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let s = p.wait_finished("1", Duration::from_secs(180));
    assert_eq!(s["state"], "finished", "{s}");
    assert_eq!(s["trials"]["failed"], 0, "{s}");
    assert_each_job_started_once(&p);
}

#[test]
fn kills_on_the_submit_path_are_found_by_name_never_submitted_again() {
    let Some(_) = cluster() else { return };
    // Kill points of the Slurm submit path: right after `sbatch` returned
    // (before the id file is written), and after the submission returned
    // to the engine (before the journal records it), at the first and a
    // later submission.
    let points = [
        ("REAGENT_SLURM_CRASH_AFTER_SBATCH", 1),
        ("REAGENT_SLURM_CRASH_AFTER_SBATCH", 4),
        ("REAGENT_CRASH_AFTER_SUBMITS", 1),
        ("REAGENT_CRASH_AFTER_SUBMITS", 3),
    ];
    for (hook, n) in points {
        let label = format!("{hook}={n}");
        let p = slurm_project(|t| t);
        assert!(p.reagent(&["plan", "toy.toml", "--yes"]).status.success());
        // A foreground driver: it makes every submission itself.
        let o = p
            .command(&["run", "1"])
            .env(hook, n.to_string())
            .output()
            .unwrap();
        assert!(!o.status.success(), "{label}: {}", text(&o));
        if hook == "REAGENT_SLURM_CRASH_AFTER_SBATCH" {
            let dir = folder(&p, n);
            assert!(dir.join("job.sbatch").exists(), "{label}");
            assert!(
                !dir.join("slurm.jobid").exists(),
                "{label}: the id was never recorded"
            );
        }
        // The next host finds the job by name instead of submitting again.
        let o = p.reagent(&["run", "1"]);
        assert!(o.status.success(), "{label}: {}", text(&o));
        assert_eq!(
            p.json(&["status", "1", "--json"])["state"],
            "finished",
            "{label}"
        );
        assert_each_job_started_once(&p);
        let o = p.reagent(&["audit", "verify"]);
        assert!(o.status.success(), "{label}: {}", text(&o));
    }
    println!("slurm submit path: {} kill points", points.len());
}

#[test]
fn plan_checks_slurm_up_front() {
    // Slurm's commands missing: named, nothing registered.
    let empty = tempfile::tempdir().unwrap();
    let p = slurm_project(|t| t);
    let o = p
        .command(&["plan", "toy.toml"])
        .env("REAGENT_SLURM_BIN", empty.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("sbatch"), "{}", text(&o));
    assert!(p.json(&["status", "--json"]).as_array().unwrap().is_empty());
    // [job.slurm] with the local backend is a located error.
    std::fs::write(
        p.path("bad.toml"),
        std::fs::read_to_string(p.path("toy.toml"))
            .unwrap()
            .replace("backend = \"slurm\"\n", ""),
    )
    .unwrap();
    let o = p.reagent(&["plan", "bad.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("bad.toml:"), "{}", text(&o));
    assert!(text(&o).contains("backend = \"slurm\""), "{}", text(&o));

    let Some(_) = cluster() else { return };
    let unknown = slurm_project(|t| t.replace("partition = \"debug\"", "partition = \"nope\""));
    let o = unknown.reagent(&["plan", "toy.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("partition \"nope\" does not exist"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_requeued_job_is_followed_under_the_same_trial() {
    let Some(bin) = cluster() else { return };
    let p = slurm_project(|t| {
        t.replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { TOY_SLEEP = \"4\" }",
        )
    });
    let driver = drive(&p);
    // Requeue trial 1 while it runs (what preemption with requeue does).
    let dir = folder(&p, 1);
    wait_for(&dir.join("stdout.log"), "trial 1 never started");
    let id = std::fs::read_to_string(dir.join("slurm.jobid")).unwrap();
    slurm(&bin, "scontrol", &["requeue", id.trim()]);
    let out = driver.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let s = p.json(&["status", "1", "--json"]);
    assert_eq!(s["state"], "finished", "{s}");
    let starts = std::fs::read_to_string(dir.join("slurm-jobs")).unwrap();
    assert_eq!(
        starts.lines().count(),
        2,
        "started, requeued, started again: {starts}"
    );
    assert!(
        dir.join("attempt-1").is_dir(),
        "the interrupted attempt's files are kept"
    );
    let trials = p.json(&["trials", "1", "--json"]);
    let t1 = trials
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == 1)
        .unwrap();
    assert_eq!(t1["status"], "succeeded", "{t1}");
    assert_eq!(t1["attempt"], 1, "followed, not counted again: {t1}");
}

#[test]
fn a_job_slurm_refuses_is_diagnosed_as_infrastructure_and_nothing_is_lost() {
    let Some(_) = cluster() else { return };
    let p = slurm_project(|t| {
        t.replace(
            "time_margin = \"30s\" }",
            "time_margin = \"30s\", sbatch = [\"--constraint=no-such-feature\"] }",
        ) + "\n[policy]\napproval_expiry = \"1s\"\n"
    });
    let o = p.reagent(&["run", "toy.toml", "--yes"]);
    let out = text(&o);
    let s = p.json(&["status", "1", "--json"]);
    assert!(
        !s["state"].as_str().unwrap().contains("running"),
        "{s}\n{out}"
    );
    let trials = p.json(&["trials", "1", "--json"]);
    let failed: Vec<&serde_json::Value> = trials
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "failed")
        .collect();
    assert!(!failed.is_empty(), "{trials}");
    for t in &failed {
        assert_eq!(t["failure"], "infrastructure", "{t}");
    }
    // Retried within bounds, never more.
    let max_attempt = trials
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["attempt"].as_u64())
        .max()
        .unwrap();
    assert!(max_attempt <= 3, "{trials}");
    assert_eq!(p.reagent(&["audit", "verify"]).status.code(), Some(0));
}
