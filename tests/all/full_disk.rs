//! A full disk (ENOSPC) and a read-only workspace: the workspace lives on a
//! small tmpfs the test mounts (root only). Without root it skips with a
//! message, unless REAGENT_REQUIRE_MOUNT=1 (CI), where it fails.
//!
//! Each case: the error names what could not be written and what to do,
//! nothing acknowledged is lost (the chain verifies), and the campaign
//! finishes once space (or write access) returns.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reagent::store::Store;

use crate::campaign::{Project, text};

/// A tmpfs mounted for one test, unmounted when dropped.
struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) {
        let o = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "remount {mode}: {}", text(&o));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// Mounts a tmpfs of `mb` MiB, or says why not and returns None.
fn small_filesystem(mb: u32) -> Option<Mount> {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={mb}m,mode=0755"),
            "tmpfs",
        ])
        .arg(dir.path())
        .output();
    match o {
        Ok(o) if o.status.success() => Some(Mount { dir }),
        other => {
            let why = match other {
                Ok(o) => text(&o),
                Err(e) => e.to_string(),
            };
            assert!(
                std::env::var("REAGENT_REQUIRE_MOUNT").as_deref() != Ok("1"),
                "REAGENT_REQUIRE_MOUNT=1 but a tmpfs cannot be mounted here: {why}"
            );
            println!("skipping the full-disk test: cannot mount a tmpfs (needs root): {why}");
            None
        }
    }
}

/// Fills the filesystem at `dir` to the last byte; returns the filler.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let block = vec![0u8; chunk];
        while f.write_all(&block).is_ok() {}
    }
    path
}

fn small(t: String) -> String {
    t.replace("max_trials = 24", "max_trials = 8")
        .replace("confirm_replicates = 2", "confirm_replicates = 1")
}

/// The chain verifies, the ledger is exact and the campaign finished.
fn check_finished(p: &Project, label: &str) {
    let store = Store::open(&p.path(".reagent/reagent.redb")).unwrap();
    let events = store.events(0).unwrap();
    assert_eq!(
        store.verify_chain().unwrap(),
        Ok(events.len() as u64),
        "{label}"
    );
    let c = store.campaign(1).unwrap().unwrap();
    assert_eq!(c.state.name(), "finished", "{label}: {:?}", c.note);
    assert!(c.ledger.reserved_cpu.abs() < 1e-9, "{label}");
    let trials = store.trials(1).unwrap();
    let spent: f64 = trials.iter().map(|t| t.spent_cpu).sum();
    assert!((c.ledger.spent_cpu - spent).abs() < 1e-9, "{label}");
}

/// Runs `reagent run 1` until the campaign ends (supervisors may still be
/// writing when the first run returns).
fn resume(p: &Project, label: &str) {
    let o = p.reagent(&["run", "1"]);
    assert!(o.status.success(), "{label}: {}", text(&o));
    let s = p.wait_finished("1", Duration::from_secs(120));
    assert_eq!(s["state"], "finished", "{label}: {s}");
}

#[test]
fn a_full_disk_is_a_clear_error_and_the_campaign_resumes_when_space_returns() {
    let Some(fs) = small_filesystem(48) else {
        return;
    };
    // 1. Full before the run: the first commit cannot be written.
    let p = Project::new_in(fs.path(), small);
    assert!(p.reagent(&["plan", "toy.toml", "--yes"]).status.success());
    let filler = fill(fs.path());
    let o = p.reagent(&["run", "1"]);
    let said = text(&o).to_lowercase();
    println!("full before the run:\n{said}");
    assert!(!o.status.success(), "{said}");
    assert!(!said.contains("panicked"), "{said}");
    assert!(said.contains("no space left"), "{said}");
    assert!(said.contains(".reagent"), "names what: {said}");
    assert!(said.contains("free space"), "says what to do: {said}");
    std::fs::remove_file(&filler).unwrap();
    resume(&p, "full before the run");
    check_finished(&p, "full before the run");

    // 2. Full while jobs run: trials of ~1 s; the disk fills once the
    // third has launched, and stays full for a few seconds.
    let p = Project::new_in(fs.path(), |t| {
        small(t).replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { TOY_SLEEP = \"1\" }",
        )
    });
    assert!(p.reagent(&["plan", "toy.toml", "--yes"]).status.success());
    let driver = p
        .command(&["run", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let jobs = p.path(".reagent/jobs");
    let start = Instant::now();
    while crate::crash::job_folder(&jobs, 3).is_none() {
        assert!(start.elapsed() < Duration::from_secs(60), "no third trial");
        std::thread::sleep(Duration::from_millis(20));
    }
    let filler = fill(fs.path());
    std::thread::sleep(Duration::from_secs(4));
    std::fs::remove_file(&filler).unwrap();
    let o = driver.wait_with_output().unwrap();
    let said = text(&o).to_lowercase();
    println!("full while jobs run ({}):\n{said}", o.status);
    assert!(!said.contains("panicked"), "{said}");
    if !o.status.success() {
        // A commit failed: the message says what and what to do.
        assert!(said.contains("no space left"), "{said}");
        assert!(said.contains("free space"), "{said}");
    }
    resume(&p, "full while jobs run");
    // A trial whose job could not write while the disk was full is an
    // infrastructure fault, retried: its configuration is not blamed. (The
    // supervisor waited for space to write the exit record, and said why.)
    let trials = p.json(&["trials", "1", "--json"]);
    for t in trials.as_array().unwrap() {
        if t["status"] == "failed" {
            assert_eq!(t["failure"], "infrastructure", "{t}");
            assert!(t["action"].as_str().unwrap().starts_with("retry"), "{t}");
        }
    }
    check_finished(&p, "full while jobs run");
}

#[test]
fn a_read_only_workspace_is_a_clear_error_and_the_campaign_resumes_when_writable() {
    let Some(fs) = small_filesystem(48) else {
        return;
    };
    let p = Project::new_in(fs.path(), small);
    assert!(p.reagent(&["plan", "toy.toml", "--yes"]).status.success());
    fs.remount("ro");
    let o = p.reagent(&["run", "1"]);
    let said = text(&o).to_lowercase();
    fs.remount("rw");
    println!("read-only:\n{said}");
    assert!(!o.status.success(), "{said}");
    assert!(!said.contains("panicked"), "{said}");
    assert!(said.contains("read-only"), "{said}");
    assert_eq!(
        said.matches("(os error 30)").count(),
        1,
        "said once: {said}"
    );
    assert!(said.contains(".reagent"), "names what: {said}");
    resume(&p, "read-only");
    check_finished(&p, "read-only");
}
