//! Tests of the local backend. Most run the supervisor in the test's own
//! thread (`run_supervisor`); the `submit_*`/`process_*` ones start it as a
//! real detached process: this test binary, re-run with a filter that picks
//! [`supervisor_process_entry`] and the `__supervise DIR` arguments.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use super::*;
use crate::jobs::WakeCommand;

const ENTRY: &str = "jobs::local::tests::supervisor_process_entry";

/// Not a test: the supervisor process of the `submit_*` tests. In a normal
/// test run it finds no `__supervise` argument and does nothing.
#[test]
fn supervisor_process_entry() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Some(i) = args.iter().position(|a| a == SUPERVISE_SUBCOMMAND) {
        let dir = PathBuf::from(&args[i + 1]);
        let code = i32::from(supervise(&dir).is_err());
        std::process::exit(code);
    }
}

/// A backend whose supervisors are real detached processes.
fn process_backend(jobs_dir: &Path) -> LocalBackend {
    LocalBackend::with_launcher(
        jobs_dir.to_path_buf(),
        Arc::new(|dir: &Path| {
            let exe = std::env::current_exe()?;
            spawn_detached(
                &exe,
                &[
                    OsStr::new("--exact"),
                    OsStr::new("--test-threads=1"),
                    OsStr::new("-q"),
                    OsStr::new(ENTRY),
                    OsStr::new(SUPERVISE_SUBCOMMAND),
                    dir.as_os_str(),
                ],
            )
        }),
    )
}

/// A backend for tests that run the supervisor inline.
fn inline_backend(jobs_dir: &Path) -> LocalBackend {
    LocalBackend::with_launcher(
        jobs_dir.to_path_buf(),
        Arc::new(|_: &Path| bail!("this test starts no supervisor process")),
    )
}

fn sh_spec(key: &str, script: &str, workdir: &Path) -> JobSpec {
    JobSpec {
        key: key.into(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("REAGENT_SEED".into(), "7".into())],
        pass_env: vec![],
        withheld_env: vec![],
        workdir: workdir.to_path_buf(),
        params: json!({"lr": 0.5}),
        params_file: "params.json".into(),
        time_limit_secs: 30.0,
        memory_mb: None,
        metrics: MetricsSource::Jsonl,
        wake: None,
        cpus: 1.0,
        gpus: 0.0,
        slurm: None,
    }
}

/// The jobs' working directory: beside the jobs folder, not holding it (a
/// job cannot create top-level files in a working directory that holds it).
fn work(tmp: &tempfile::TempDir) -> PathBuf {
    let dir = tmp.path().join("work");
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn handle(key: &str) -> JobHandle {
    JobHandle {
        key: key.into(),
        id: "-".into(),
    }
}

/// Prepares the folder as submit does and supervises the job in this thread.
fn run_inline(backend: &LocalBackend, spec: &JobSpec, stop: &AtomicBool) -> JobOutcome {
    let dir = backend.job_dir(&spec.key).unwrap();
    fs::create_dir_all(&dir).unwrap();
    write_atomic(&dir.join(SPEC_FILE), &serde_json::to_vec(spec).unwrap()).unwrap();
    write_atomic(
        &dir.join(&spec.params_file),
        &serde_json::to_vec(&spec.params).unwrap(),
    )
    .unwrap();
    run_supervisor(&dir, stop).unwrap();
    match backend.status(&handle(&spec.key)).unwrap() {
        JobState::Finished(o) => o,
        other => panic!("not finished: {other:?}"),
    }
}

fn wait_finished(backend: &LocalBackend, h: &JobHandle, within: Duration) -> JobOutcome {
    let start = Instant::now();
    loop {
        match backend.status(h).unwrap() {
            JobState::Finished(o) => return o,
            JobState::Lost(why) => panic!("lost: {why}"),
            JobState::Pending | JobState::Running => {}
        }
        assert!(start.elapsed() < within, "not finished after {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Gone or a zombie (an orphan waits for an init that may be slow to reap).
fn process_gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s[s.rfind(')').unwrap() + 1..].trim_start().starts_with('Z'),
    }
}

fn read_pid_in(path: &Path) -> i32 {
    fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

#[test]
fn finished_job_has_metrics_curves_and_log_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let b = inline_backend(&tmp.path().join("jobs"));
    let script = r#"
        echo "seed=$REAGENT_SEED dir=$REAGENT_JOB_DIR"
        cat "$REAGENT_PARAMS"; echo
        echo '{"step": 0, "loss": 2.0}' >> "$REAGENT_METRICS"
        echo '{"step": 10, "loss": 1.0, "valid_ndcg": 0.4, "valid_ndcg_stderr": 0.02}' >> "$REAGENT_METRICS"
        echo 'oops' >> "$REAGENT_METRICS"
        echo "a warning" >&2
        pwd
    "#;
    let spec = sh_spec("c1-t1", script, &work(&tmp));
    let o = run_inline(&b, &spec, &AtomicBool::new(false));
    assert_eq!(o.exit_code, Some(0));
    assert_eq!(o.signal, None);
    assert!(!o.timed_out && !o.memory_exceeded && o.stopped_early.is_none());
    assert_eq!(o.metrics["loss"], 1.0);
    assert_eq!(o.metrics["valid_ndcg"], 0.4);
    assert_eq!(o.metrics["valid_ndcg_stderr"], 0.02);
    assert_eq!(o.curves["loss"], vec![(0, 2.0), (10, 1.0)]);
    assert_eq!(o.metrics_errors.len(), 1);
    assert!(
        o.metrics_errors[0].starts_with("line 3: "),
        "{:?}",
        o.metrics_errors
    );
    let dir = b.job_dir("c1-t1").unwrap();
    assert!(o.log_tail.starts_with("stdout:\n"), "{}", o.log_tail);
    assert!(
        o.log_tail
            .contains(&format!("seed=7 dir={}", dir.display())),
        "{}",
        o.log_tail
    );
    assert!(o.log_tail.contains(r#"{"lr":0.5}"#), "{}", o.log_tail);
    assert!(o.log_tail.contains(&tmp.path().display().to_string()));
    assert!(o.log_tail.contains("stderr:\na warning"), "{}", o.log_tail);
    assert!(o.wall_secs > 0.0 && o.wall_secs < 2.0);
    assert!(o.cpu_secs >= 0.0);
    let status: ExitRecord =
        serde_json::from_slice(&fs::read(dir.join(STATUS_FILE)).unwrap()).unwrap();
    assert_eq!(status.exit_code, Some(0));
    assert_eq!(read_pid(&dir.join(JOB_PID_FILE)).map(|p| p > 1), Some(true));
    // find needs a supervisor pid or a status
    assert_eq!(b.find("c1-t1").unwrap().unwrap().key, "c1-t1");
    assert_eq!(b.find("c1-t2").unwrap(), None);
    let logs = b.logs(&handle("c1-t1"), 1 << 20).unwrap();
    assert!(
        logs.contains("a warning") && logs.contains("seed=7"),
        "{logs}"
    );
}

#[test]
fn exit_code_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let b = inline_backend(tmp.path());
    let o = run_inline(
        &b,
        &sh_spec("k", "echo bye >&2; exit 3", &work(&tmp)),
        &AtomicBool::new(false),
    );
    assert_eq!(o.exit_code, Some(3));
    assert_eq!(o.signal, None);
    assert_eq!(o.log_tail, "stderr:\nbye\n");
}

#[test]
fn time_limit_kills_the_whole_group() {
    let tmp = tempfile::tempdir().unwrap();
    let b = inline_backend(&tmp.path().join("jobs"));
    let mut spec = sh_spec(
        "slow",
        "sleep 5 & echo $! > child.pid; sleep 5",
        &work(&tmp),
    );
    spec.time_limit_secs = 0.3;
    let started = Instant::now();
    let o = run_inline(&b, &spec, &AtomicBool::new(false));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(o.timed_out);
    assert_eq!(o.signal, Some(libc::SIGTERM));
    assert_eq!(o.exit_code, None);
    assert!(o.wall_secs >= 0.3, "{}", o.wall_secs);
    assert!(
        o.log_tail.contains("time limit of 0.3 s reached"),
        "{}",
        o.log_tail
    );
    let child = read_pid_in(&work(&tmp).join("child.pid"));
    wait_for(
        "the background sleep to die",
        Duration::from_secs(1),
        || process_gone(child),
    );
}

#[test]
fn nan_loss_stops_the_job_early() {
    let tmp = tempfile::tempdir().unwrap();
    let b = inline_backend(tmp.path());
    let script = r#"
        echo '{"step": 0, "loss": 0.9}' >> "$REAGENT_METRICS"
        echo '{"step": 1, "loss": NaN}' >> "$REAGENT_METRICS"
        sleep 5
    "#;
    let started = Instant::now();
    let o = run_inline(
        &b,
        &sh_spec("nan", script, &work(&tmp)),
        &AtomicBool::new(false),
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        o.stopped_early.as_deref(),
        Some("metric `loss` is NaN at step 1")
    );
    assert!(!o.timed_out);
    assert!(o.metrics["loss"].is_nan());
    assert_eq!(o.curves["loss"].len(), 2);
    assert!(o.log_tail.contains("stopping early"), "{}", o.log_tail);
}

#[test]
fn loss_explosion_stops_the_job_early() {
    let tmp = tempfile::tempdir().unwrap();
    let b = inline_backend(tmp.path());
    let script = r#"
        for l in 0.7 0.6 0.5 90.0; do echo "{\"loss\": $l}" >> "$REAGENT_METRICS"; done
        sleep 5
    "#;
    let o = run_inline(
        &b,
        &sh_spec("boom", script, &work(&tmp)),
        &AtomicBool::new(false),
    );
    assert_eq!(
        o.stopped_early.as_deref(),
        Some("metric `loss` exploded: 0.7 → 90 at step 3")
    );
}

#[test]
fn missing_program_exits_127_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let b = inline_backend(tmp.path());
    let mut spec = sh_spec("nope", "", &work(&tmp));
    spec.argv = vec!["./no-such-trainer".into(), "--lr".into(), "0.1".into()];
    let o = run_inline(&b, &spec, &AtomicBool::new(false));
    assert_eq!(o.exit_code, Some(EXIT_CANNOT_START));
    assert!(
        o.log_tail.contains("cannot start `./no-such-trainer`"),
        "{}",
        o.log_tail
    );

    let mut spec = sh_spec("nodir", "true", &tmp.path().join("missing"));
    spec.key = "nodir".into();
    let o = run_inline(&b, &spec, &AtomicBool::new(false));
    assert_eq!(o.exit_code, Some(EXIT_CANNOT_START));
    assert!(o.log_tail.contains("does not exist"), "{}", o.log_tail);
}

#[test]
fn memory_limit_kills_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let b = inline_backend(tmp.path());
    // dd fills a 64 MiB buffer from /dev/zero, over and over.
    let mut spec = sh_spec(
        "fat",
        "dd if=/dev/zero of=/dev/null bs=64M count=1000000 2>/dev/null",
        &work(&tmp),
    );
    spec.memory_mb = Some(16);
    let started = Instant::now();
    let o = run_inline(&b, &spec, &AtomicBool::new(false));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(o.memory_exceeded, "{o:?}");
    assert!(
        o.log_tail.contains("passed the limit of 16 MB"),
        "{}",
        o.log_tail
    );
}

#[test]
fn stop_request_cancels_with_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let b = inline_backend(tmp.path());
    let stop = Arc::new(AtomicBool::new(false));
    let setter = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            stop.store(true, Ordering::SeqCst);
        })
    };
    let started = Instant::now();
    let o = run_inline(&b, &sh_spec("c", "sleep 5", &work(&tmp)), &stop);
    setter.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(o.signal, Some(libc::SIGTERM));
    assert!(!o.timed_out && o.stopped_early.is_none());

    // Cancelled before it started: never runs.
    let o = run_inline(
        &b,
        &sh_spec("c2", "touch ran", &work(&tmp)),
        &AtomicBool::new(true),
    );
    assert_eq!(o.signal, Some(libc::SIGTERM));
    assert!(!work(&tmp).join("ran").exists());
}

#[test]
fn regex_metrics_come_from_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    let b = inline_backend(tmp.path());
    let mut spec = sh_spec(
        "re",
        "echo 'epoch 1 loss=0.9'; echo 'epoch 2 loss=0.5'; echo 'val acc=0.8' >&2",
        &work(&tmp),
    );
    spec.metrics = MetricsSource::Regex(r"loss=(?P<loss>\S+)|acc=(?P<acc>\S+)".into());
    let o = run_inline(&b, &spec, &AtomicBool::new(false));
    assert_eq!(o.curves["loss"], vec![(0, 0.9), (1, 0.5)]);
    assert_eq!(o.metrics["loss"], 0.5);
    assert_eq!(o.metrics["acc"], 0.8);
}

/// A wake command that records its arguments and fails.
fn wake_script(dir: &Path) -> WakeCommand {
    let exe = dir.join("fake-reagent");
    let out = dir.join("woke");
    fs::write(
        &exe,
        format!(
            "#!/bin/sh\necho \"$@\" > '{}'\necho 'wake complaint' >&2\nexit 1\n",
            out.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    WakeCommand {
        exe,
        workspace: dir.join("ws"),
    }
}

#[test]
fn wake_runs_after_the_status_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let b = inline_backend(&tmp.path().join("jobs"));
    let mut spec = sh_spec("w", "exit 0", &work(&tmp));
    spec.wake = Some(wake_script(tmp.path()));
    run_inline(&b, &spec, &AtomicBool::new(false));
    let woke = fs::read_to_string(tmp.path().join("woke")).unwrap();
    assert_eq!(
        woke.trim(),
        format!(
            "wake --workspace {} --quiet",
            tmp.path().join("ws").display()
        )
    );
    let log = fs::read_to_string(b.job_dir("w").unwrap().join(WAKE_LOG_FILE)).unwrap();
    assert!(log.contains("wake complaint"), "{log}");
    assert!(log.contains("wake ended with exit status: 1"), "{log}");
}

#[test]
fn a_folder_is_never_run_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let b = inline_backend(&tmp.path().join("jobs"));
    let spec = sh_spec("once", "echo x >> count", &work(&tmp));
    run_inline(&b, &spec, &AtomicBool::new(false));
    // A second supervisor of a finished folder does nothing.
    run_inline(&b, &spec, &AtomicBool::new(false));
    // Nor does one that finds the job started by an earlier supervisor
    // that died without a status: that job is lost, not rerun.
    let dir = b.job_dir("once").unwrap();
    fs::remove_file(dir.join(STATUS_FILE)).unwrap();
    run_supervisor(&dir, &AtomicBool::new(false)).unwrap();
    assert!(!dir.join(STATUS_FILE).exists());
    assert!(matches!(
        b.status(&handle("once")).unwrap(),
        JobState::Lost(_)
    ));
    assert_eq!(fs::read_to_string(work(&tmp).join("count")).unwrap(), "x\n");
}

#[test]
fn deleted_folder_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let b = inline_backend(&tmp.path().join("jobs"));
    run_inline(
        &b,
        &sh_spec("gone", "true", &work(&tmp)),
        &AtomicBool::new(false),
    );
    fs::remove_dir_all(b.job_dir("gone").unwrap()).unwrap();
    match b.status(&handle("gone")).unwrap() {
        JobState::Lost(why) => assert!(why.contains("was deleted"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(b.find("gone").unwrap(), None);
    assert!(b.logs(&handle("gone"), 100).is_err());
}

#[test]
fn corrupt_status_is_lost_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let b = inline_backend(tmp.path());
    run_inline(
        &b,
        &sh_spec("bad", "true", &work(&tmp)),
        &AtomicBool::new(false),
    );
    fs::write(b.job_dir("bad").unwrap().join(STATUS_FILE), "{not json").unwrap();
    match b.status(&handle("bad")).unwrap() {
        JobState::Lost(why) => assert!(why.contains("status.json is unreadable"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn keys_and_params_file_names_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let b = inline_backend(tmp.path());
    for key in ["", "..", "a/b", ".hidden", "with space"] {
        assert!(
            b.submit(&sh_spec(key, "true", &work(&tmp))).is_err(),
            "{key:?}"
        );
        assert!(b.find(key).is_err(), "{key:?}");
    }
    for name in ["status.json", "../p.json", ""] {
        let mut spec = sh_spec("k", "true", &work(&tmp));
        spec.params_file = name.into();
        assert!(b.submit(&spec).is_err(), "{name:?}");
    }
}

#[test]
fn log_tail_is_capped_and_starts_on_a_line() {
    let tmp = tempfile::tempdir().unwrap();
    let b = inline_backend(tmp.path());
    let o = run_inline(
        &b,
        &sh_spec(
            "chatty",
            "i=0; while [ $i -lt 500 ]; do echo \"line $i\"; i=$((i+1)); done",
            tmp.path(),
        ),
        &AtomicBool::new(false),
    );
    let lines: Vec<&str> = o.log_tail.lines().collect();
    assert_eq!(lines[0], "stdout:");
    assert_eq!(lines[1], "…");
    assert_eq!(lines.len(), 2 + LOG_TAIL_LINES);
    assert_eq!(*lines.last().unwrap(), "line 499");
    assert_eq!(lines[2], format!("line {}", 500 - LOG_TAIL_LINES));
    let logs = b.logs(&handle("chatty"), 20).unwrap();
    assert_eq!(logs, "stdout:\n…\nline 498\nline 499\nstderr:\n\n");
}

// ------------------------------------------------ real supervisor processes

#[test]
fn submit_runs_detached_and_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let b = process_backend(&tmp.path().join("jobs"));
    let spec = sh_spec(
        "c1-t9",
        "echo x >> count; echo '{\"acc\": 0.75}' > \"$REAGENT_METRICS\"; sleep 0.3",
        &work(&tmp),
    );
    let h1 = b.submit(&spec).unwrap();
    let h2 = b.submit(&spec).unwrap();
    assert_eq!(h1, h2);
    assert_eq!(b.find("c1-t9").unwrap(), Some(h1.clone()));
    let pid: i32 = h1.id.parse().unwrap();
    let dir = b.job_dir("c1-t9").unwrap();
    assert!(is_supervisor_of(pid, &dir));
    assert!(matches!(
        b.status(&h1).unwrap(),
        JobState::Pending | JobState::Running
    ));
    let o = wait_finished(&b, &h1, Duration::from_secs(3));
    assert_eq!(o.exit_code, Some(0));
    assert_eq!(o.metrics["acc"], 0.75);
    assert_eq!(b.submit(&spec).unwrap(), h1);
    assert_eq!(fs::read_to_string(work(&tmp).join("count")).unwrap(), "x\n");
    let params: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("params.json")).unwrap()).unwrap();
    assert_eq!(params, json!({"lr": 0.5}));
    // The supervisor leaves no process behind (reaped by the launcher).
    wait_for("the supervisor to exit", Duration::from_secs(1), || {
        !sys::pid_exists(pid)
    });
}

#[test]
fn submit_resumes_a_half_submission() {
    let tmp = tempfile::tempdir().unwrap();
    let b = process_backend(&tmp.path().join("jobs"));
    let spec = sh_spec("half", "echo x >> count", &work(&tmp));
    // The host crashed after creating the folder.
    fs::create_dir_all(b.job_dir("half").unwrap()).unwrap();
    assert_eq!(b.find("half").unwrap(), None);
    assert!(matches!(
        b.status(&handle("half")).unwrap(),
        JobState::Lost(why) if why.contains("never started")
    ));
    let h = b.submit(&spec).unwrap();
    let o = wait_finished(&b, &h, Duration::from_secs(3));
    assert_eq!(o.exit_code, Some(0));
    assert_eq!(fs::read_to_string(work(&tmp).join("count")).unwrap(), "x\n");
}

#[test]
fn cancel_stops_a_running_job_and_still_wakes() {
    let tmp = tempfile::tempdir().unwrap();
    let b = process_backend(&tmp.path().join("jobs"));
    let mut spec = sh_spec("c", "sleep 5", &work(&tmp));
    spec.wake = Some(wake_script(tmp.path()));
    let h = b.submit(&spec).unwrap();
    wait_for("the job to run", Duration::from_secs(2), || {
        b.status(&h).unwrap() == JobState::Running
    });
    let started = Instant::now();
    b.cancel(&h).unwrap();
    let o = wait_finished(&b, &h, Duration::from_secs(2));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(o.signal, Some(libc::SIGTERM));
    assert!(o.log_tail.contains("cancelled"), "{}", o.log_tail);
    wait_for("the wake", Duration::from_secs(2), || {
        tmp.path().join("woke").exists()
    });
    // Cancelling a finished job is a no-op.
    b.cancel(&h).unwrap();
}

#[test]
fn killed_supervisor_is_lost_and_cancel_still_stops_its_job() {
    let tmp = tempfile::tempdir().unwrap();
    let b = process_backend(&tmp.path().join("jobs"));
    let h = b.submit(&sh_spec("k9", "sleep 5", &work(&tmp))).unwrap();
    wait_for("the job to run", Duration::from_secs(2), || {
        b.status(&h).unwrap() == JobState::Running
    });
    let sup: i32 = h.id.parse().unwrap();
    let job = read_pid_in(&b.job_dir("k9").unwrap().join(JOB_PID_FILE));
    assert!(sys::signal_pid(sup, libc::SIGKILL));
    wait_for("the job to be lost", Duration::from_secs(2), || {
        matches!(b.status(&h).unwrap(), JobState::Lost(_))
    });
    match b.status(&h).unwrap() {
        JobState::Lost(why) => assert_eq!(
            why,
            format!("the supervisor (pid {sup}) is gone and left no exit status")
        ),
        other => panic!("{other:?}"),
    }
    // The orphaned job still runs; cancel finds it by its environment.
    assert!(!process_gone(job));
    b.cancel(&h).unwrap();
    wait_for("the orphaned job to die", Duration::from_secs(2), || {
        process_gone(job)
    });
}

// ------------------------------------------------------ a job's containment

#[test]
fn an_escaped_descendant_dies_with_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let b = process_backend(&tmp.path().join("jobs"));
    let spec = sh_spec(
        "escape",
        "setsid sh -c 'sleep 30' </dev/null >/dev/null 2>&1 & echo $! > \"$REAGENT_JOB_DIR/bg.pid\"",
        &work(&tmp),
    );
    let h = b.submit(&spec).unwrap();
    let o = wait_finished(&b, &h, Duration::from_secs(5));
    assert_eq!(o.exit_code, Some(0));
    let bg = read_pid_in(&b.job_dir("escape").unwrap().join(OUT_DIR).join("bg.pid"));
    let gone = process_gone(bg);
    if !gone {
        sys::signal_pid(bg, libc::SIGKILL);
    }
    assert!(gone, "the setsid'd sleep {bg} outlived its job");
}

#[test]
fn a_job_writes_only_its_own_folders() {
    if super::super::confine::kernel_abi() < super::super::confine::MIN_ABI {
        eprintln!("skipped: no Landlock here");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let b = inline_backend(&tmp.path().join("jobs"));
    let script = r#"
        r=""
        for f in "$REAGENT_JOB_DIR/../status.json" "$REAGENT_JOB_DIR/../../other/status.json" "$REAGENT_JOB_DIR/../spec.json"; do
          if mkdir -p "$(dirname "$f")" 2>/dev/null && echo forged > "$f" 2>/dev/null; then r="$r wrote"; else r="$r denied"; fi
        done
        echo tmp > "$TMPDIR/t" && echo out > "$REAGENT_JOB_DIR/o" && echo work > w && echo "$r" > "$REAGENT_JOB_DIR/result"
        if [ "$TMPDIR" != "$(dirname "$REAGENT_JOB_DIR")/tmp" ]; then echo "TMPDIR=$TMPDIR" >&2; exit 3; fi
    "#;
    let o = run_inline(
        &b,
        &sh_spec("box", script, &work(&tmp)),
        &AtomicBool::new(false),
    );
    assert_eq!(o.exit_code, Some(0), "{}", o.log_tail);
    let dir = b.job_dir("box").unwrap();
    let result = fs::read_to_string(dir.join(OUT_DIR).join("result")).unwrap();
    assert_eq!(result.trim(), "denied denied denied");
    assert!(!tmp.path().join("jobs/other").exists());
    assert!(
        work(&tmp).join("w").exists(),
        "the working directory is writable"
    );
    assert!(
        !dir.join(TMP_DIR).exists(),
        "the private tmp goes with the job"
    );
    let spec: JobSpec = serde_json::from_slice(&fs::read(dir.join(SPEC_FILE)).unwrap()).unwrap();
    assert_eq!(spec.key, "box");
}

#[test]
fn the_job_environment_is_built_from_scratch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("k");
    let mut spec = sh_spec("k", "true", tmp.path());
    spec.pass_env = vec!["HF_*".into(), "OPENAI_API_KEY".into()];
    spec.withheld_env = vec!["OPENAI_API_KEY".into()];
    spec.env.push(("CAMPAIGN_SET".into(), "c".into()));
    let inherited: Vec<(OsString, OsString)> = [
        ("PATH", "/bin"),
        ("LC_ALL", "C"),
        ("HF_HOME", "/hf"),
        ("OPENAI_API_KEY", "sk-secret"),
        ("UNLISTED", "u"),
        ("REAGENT_WORKSPACE", "/ws"),
        ("SLURM_JOB_ID", "7"),
        ("TMPDIR", "/tmp"),
    ]
    .iter()
    .map(|(k, v)| (OsString::from(k), OsString::from(v)))
    .collect();
    let env = super::super::supervisor::job_env(&spec, &dir, inherited.clone());
    let get = |k: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.to_string_lossy().into_owned())
    };
    assert_eq!(get("PATH").as_deref(), Some("/bin"));
    assert_eq!(get("LC_ALL").as_deref(), Some("C"));
    assert_eq!(get("HF_HOME").as_deref(), Some("/hf"));
    assert_eq!(get("CAMPAIGN_SET").as_deref(), Some("c"));
    assert_eq!(get("REAGENT_SEED").as_deref(), Some("7"));
    for absent in [
        "OPENAI_API_KEY",
        "UNLISTED",
        "REAGENT_WORKSPACE",
        "SLURM_JOB_ID",
    ] {
        assert_eq!(get(absent), None, "{absent}");
    }
    let out = dir.join(OUT_DIR);
    assert_eq!(get("REAGENT_JOB_DIR"), Some(out.display().to_string()));
    assert_eq!(
        get("REAGENT_METRICS"),
        Some(out.join(METRICS_FILE).display().to_string())
    );
    assert_eq!(get("TMPDIR"), Some(dir.join(TMP_DIR).display().to_string()));
    // Under Slurm the job gets SLURM_*.
    spec.slurm = Some(crate::jobs::slurm::SlurmOptions {
        partition: None,
        account: None,
        qos: None,
        sbatch: vec![],
        gpus_as: crate::jobs::slurm::GpuFlag::Gres,
        time_margin_secs: 60,
    });
    let env = super::super::supervisor::job_env(&spec, &dir, inherited);
    assert!(env.iter().any(|(k, _)| k == "SLURM_JOB_ID"));
}

#[test]
fn a_folder_made_by_someone_else_is_refused_not_adopted() {
    let tmp = tempfile::tempdir().unwrap();
    let b = inline_backend(&tmp.path().join("jobs"));
    let spec = sh_spec("c1-t3-0011223344556677", "true", &work(&tmp));
    // Pre-created with an exit record and metrics.
    let dir = b.job_dir(&spec.key).unwrap();
    fs::create_dir_all(dir.join(OUT_DIR)).unwrap();
    fs::write(
        dir.join(STATUS_FILE),
        r#"{"exit_code":0,"signal":null,"wall_secs":0.1,"cpu_secs":0}"#,
    )
    .unwrap();
    assert_eq!(b.find(&spec.key).unwrap(), None);
    let e = b.submit(&spec).unwrap_err().to_string();
    assert!(e.contains("not created by this launch"), "{e}");
    // A symlinked folder is never followed.
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    let spec = sh_spec("c1-t4-8899aabbccddeeff", "true", &work(&tmp));
    let dir = b.job_dir(&spec.key).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
    let e = b.submit(&spec).unwrap_err().to_string();
    assert!(e.contains("symlink"), "{e}");
    assert!(
        fs::read_dir(&elsewhere).unwrap().next().is_none(),
        "nothing written through it"
    );
    match b.status(&handle(&spec.key)).unwrap() {
        JobState::Lost(why) => {
            assert!(why.contains("job folder is a symlink"), "{why}");
            assert!(
                !why.contains(tmp.path().to_str().unwrap()),
                "no host path: {why}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_process_tree_follows_parents_across_sessions() {
    let mut child = std::process::Command::new("sh")
        .args(["-c", "setsid sleep 5 & echo $!; sleep 5"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let escaped: i32 = line.trim().parse().unwrap();
    let sh = i32::try_from(child.id()).unwrap();
    let tree = sys::tree(sh, sh);
    let pids: Vec<i32> = tree.iter().map(|p| p.pid).collect();
    sys::signal_pid(escaped, libc::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
    assert!(pids.contains(&sh), "{pids:?}");
    assert!(
        pids.contains(&escaped),
        "the setsid'd child is in the tree: {pids:?}"
    );
    let me = i32::try_from(std::process::id()).unwrap();
    assert!(!pids.contains(&me));
}

#[test]
fn without_landlock_the_job_does_not_start_and_says_why() {
    if super::super::confine::unconfined_allowed() {
        eprintln!("skipped: REAGENT_ALLOW_UNCONFINED_JOBS=1 is set");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let b = inline_backend(&tmp.path().join("jobs"));
    super::super::confine::FAKE_ABI.with(|a| a.set(Some(0)));
    let o = run_inline(
        &b,
        &sh_spec("open", "touch ran", &work(&tmp)),
        &AtomicBool::new(false),
    );
    super::super::confine::FAKE_ABI.with(|a| a.set(None));
    assert_eq!(o.exit_code, Some(EXIT_CANNOT_START));
    assert!(
        o.log_tail
            .contains("cannot confine the job: Landlock is not available")
            && o.log_tail
                .contains("set REAGENT_ALLOW_UNCONFINED_JOBS=1 to run jobs unconfined"),
        "{}",
        o.log_tail
    );
    assert!(!work(&tmp).join("ran").exists(), "the job ran unconfined");
}

#[test]
fn a_status_file_that_cannot_be_read_for_a_moment_is_not_a_lost_job() {
    let e = |code| io::Error::from_raw_os_error(code);
    // Too many open files, no memory, interrupted: look again next pass.
    for code in [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::EINTR] {
        assert_eq!(
            unread_status("c1-t1", &e(code)),
            Some(JobState::Running),
            "{code}"
        );
    }
    // Not there yet: not finished.
    assert_eq!(unread_status("c1-t1", &e(libc::ENOENT)), None);
    // Anything else is named.
    match unread_status("c1-t1", &e(libc::EACCES)) {
        Some(JobState::Lost(why)) => assert!(why.starts_with("c1-t1/status.json: "), "{why}"),
        other => panic!("{other:?}"),
    }
}
