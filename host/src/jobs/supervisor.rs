//! The job supervisor: `reagent __supervise JOB_DIR`, started detached by
//! the local backend and by a Slurm batch script on a compute node.
//!
//! It owns every record the host reads from the job folder; the job owns
//! only its `out/` folder (`$REAGENT_JOB_DIR`, holding `metrics.jsonl`) and
//! its private `tmp/` (`$TMPDIR`, removed when the job ends):
//!
//! - the job is confined before exec ([`super::confine`]): it can write
//!   `out/`, `tmp/`, its working directory except the workspace, and
//!   devices — not the job folder, other jobs' folders or `.reagent/`;
//! - its environment is built from scratch ([`job_env`]);
//! - its run time is measured here, not reported by the job;
//! - the supervisor is the subreaper of everything the job starts, so a
//!   descendant that leaves the job's session (setsid, double fork) is
//!   still found: memory is measured over all descendants, the limits stop
//!   them all, and when the job's main process ends every descendant is
//!   killed before the exit record is written.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::local::{
    EXIT_CANNOT_START, ExitRecord, JOB_PID_FILE, KILL_GRACE, LOCK_FILE, METRICS_FILE, OUT_DIR,
    POLL_INTERVAL, STATUS_FILE, STDERR_FILE, STDOUT_FILE, SUPERVISOR_LOG_FILE,
    SUPERVISOR_PROCESS_ENV, TMP_DIR, WAKE_LOG_FILE, read_spec, write_atomic,
};
use super::metrics::MetricsTail;
use super::{BASE_ENV, JobSpec, WakeCommand, confine, env_pattern_matches, sys};
use crate::jobs::MetricsSource;

/// How often it measures the job's memory (a scan of /proc).
const MEMORY_INTERVAL: Duration = Duration::from_millis(500);
/// How long the supervisor keeps killing a job's descendants that keep
/// appearing (a fork loop) before giving up with a note.
const KILL_ROUNDS: usize = 1000;

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

/// The hidden `reagent __supervise JOB_DIR` subcommand: runs the job of a
/// prepared folder to the end, writes `status.json`, runs the wake.
///
/// SIGTERM, SIGINT and SIGHUP stop the job (its processes get SIGTERM,
/// then SIGKILL after [`KILL_GRACE`]); the status and the wake still happen.
/// Errors are also appended to `supervisor.log` in the folder, since a
/// detached supervisor has no stderr anyone reads.
pub fn supervise(job_dir: &Path) -> anyhow::Result<()> {
    sys::install_stop_handlers(on_stop_signal);
    if std::env::var_os(SUPERVISOR_PROCESS_ENV).is_some() {
        sys::become_session_leader();
    }
    let result = run_supervisor(job_dir, &STOP_REQUESTED);
    if let Err(e) = &result
        && let Ok(mut log) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(job_dir.join(SUPERVISOR_LOG_FILE))
    {
        let _ = writeln!(log, "supervisor {}: {e:#}", std::process::id());
    }
    result
}

/// Why the supervisor is stopping the job.
enum StopReason {
    TimeLimit,
    Memory,
    Diverged(String),
    Cancelled,
}

/// [`supervise`] with an injectable stop flag (set = cancel).
pub(crate) fn run_supervisor(job_dir: &Path, stop: &AtomicBool) -> anyhow::Result<()> {
    let dir = std::path::absolute(job_dir).unwrap_or_else(|_| job_dir.to_path_buf());
    let lock_path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    // Blocks while a submitter is still starting us, or while another
    // supervisor of this folder runs (it will have finished the job).
    sys::flock(&lock, libc::LOCK_EX).with_context(|| format!("locking {}", lock_path.display()))?;
    if dir.join(STATUS_FILE).exists() {
        return Ok(());
    }
    // stdout.log is the "started" mark: an earlier supervisor that created it
    // may have run the job, so never run it again (the job shows as lost).
    let stdout = match OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(dir.join(STDOUT_FILE))
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => {
            return Err(e).with_context(|| format!("creating {}", dir.join(STDOUT_FILE).display()));
        }
    };
    let stderr = OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join(STDERR_FILE))
        .with_context(|| format!("creating {}", dir.join(STDERR_FILE).display()))?;
    let mut notes = stderr.try_clone()?;

    let spec = match read_spec(&dir) {
        Ok(spec) => spec,
        Err(e) => {
            note(&mut notes, &format!("cannot start the job: {e:#}"));
            write_status(&dir, &cannot_start(0.0), &mut notes)?;
            return Ok(());
        }
    };
    // The job's own folders: out/ kept (a requeued Slurm job's earlier
    // out/ was moved away by its batch script), tmp/ fresh.
    let tmp = dir.join(TMP_DIR);
    if tmp.symlink_metadata().is_ok() {
        fs::remove_dir_all(&tmp).with_context(|| format!("clearing {TMP_DIR}/"))?;
    }
    fs::create_dir_all(dir.join(OUT_DIR)).with_context(|| format!("creating {OUT_DIR}/"))?;
    fs::create_dir(&tmp).with_context(|| format!("creating {TMP_DIR}/"))?;
    let wake = spec.wake.clone();
    let record = run_job(&dir, &spec, stdout, stderr, &mut notes, stop);
    // Private tmp goes with the job (its processes are all dead by now).
    let _ = fs::remove_dir_all(&tmp);
    write_status(&dir, &record?, &mut notes)?;
    if let Some(wake) = &wake {
        run_wake(&dir, wake);
    }
    drop(lock);
    Ok(())
}

fn cannot_start(wall_secs: f64) -> ExitRecord {
    ExitRecord {
        exit_code: Some(EXIT_CANNOT_START),
        wall_secs,
        ..ExitRecord::default()
    }
}

/// Appends a supervisor note to stderr.log.
fn note(stderr: &mut File, msg: &str) {
    let _ = writeln!(stderr, "[reagent supervisor] {msg}");
}

/// The job's environment, from scratch: the supervisor's variables named
/// by [`BASE_ENV`] (plus `SLURM_*` under Slurm) or by `spec.pass_env`,
/// never a `REAGENT_*` one or one in `spec.withheld_env`; then `spec.env`;
/// then what the supervisor sets: `REAGENT_METRICS`, `REAGENT_PARAMS`,
/// `REAGENT_JOB_DIR` (the job's `out/`) and `TMPDIR` (its `tmp/`).
pub fn job_env(
    spec: &JobSpec,
    dir: &Path,
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    let mut env = Vec::new();
    for (k, v) in inherited {
        let Some(name) = k.to_str() else {
            continue;
        };
        if name.starts_with("REAGENT_") || spec.withheld_env.iter().any(|w| w == name) {
            continue;
        }
        let listed = BASE_ENV.iter().any(|p| env_pattern_matches(p, name))
            || (spec.slurm.is_some() && name.starts_with("SLURM_"))
            || spec.pass_env.iter().any(|p| env_pattern_matches(p, name));
        if listed {
            env.push((k, v));
        }
    }
    for (k, v) in &spec.env {
        env.push((k.into(), v.into()));
    }
    let out = dir.join(OUT_DIR);
    for (k, v) in [
        ("REAGENT_METRICS", out.join(METRICS_FILE)),
        ("REAGENT_PARAMS", dir.join(&spec.params_file)),
        ("REAGENT_JOB_DIR", out),
        ("TMPDIR", dir.join(TMP_DIR)),
    ] {
        env.push((k.into(), v.into_os_string()));
    }
    env
}

/// Folders a job must not write even inside its working directory: the
/// jobs folder and the workspace holding it.
fn protected_dirs(dir: &Path, spec: &JobSpec) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(jobs) = dir.parent() {
        out.push(jobs.to_path_buf());
        if let Some(ws) = jobs.parent()
            && ws.join("reagent.redb").exists()
        {
            out.push(ws.to_path_buf());
        }
    }
    if let Some(w) = &spec.wake {
        out.push(w.workspace.clone());
    }
    out
}

/// The job's processes: with `whole_tree` (a supervisor process, the
/// subreaper of everything the job starts) every descendant of this
/// process; otherwise (a supervisor running inside a test) the job's
/// descendants and process group. Zombies excluded.
fn job_processes(job: i32, whole_tree: bool) -> Vec<sys::Proc> {
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let root = if whole_tree { me } else { job };
    sys::tree(root, job)
        .into_iter()
        .filter(|p| p.pid != me && !p.zombie)
        .collect()
}

/// Sends `sig` to every process of the job.
fn signal_job(job: i32, whole_tree: bool, sig: libc::c_int) {
    sys::signal_group(job, sig);
    for p in job_processes(job, whole_tree) {
        sys::signal_pid(p.pid, sig);
    }
}

/// Kills every process of the job, looking again until none is left
/// (new ones may be forked while we look). False if some survived
/// [`KILL_ROUNDS`] looks.
fn kill_job(job: i32, whole_tree: bool) -> bool {
    for _ in 0..KILL_ROUNDS {
        if whole_tree {
            sys::reap_ended_children();
        }
        let left = job_processes(job, whole_tree);
        sys::signal_group(job, libc::SIGKILL);
        if left.is_empty() {
            return true;
        }
        for p in &left {
            sys::signal_pid(p.pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

fn run_job(
    dir: &Path,
    spec: &JobSpec,
    stdout: File,
    stderr: File,
    notes: &mut File,
    stop: &AtomicBool,
) -> anyhow::Result<ExitRecord> {
    if stop.load(Ordering::SeqCst) {
        note(notes, "cancelled before the job started");
        return Ok(ExitRecord {
            signal: Some(libc::SIGTERM),
            ..ExitRecord::default()
        });
    }
    let job = match start_job(dir, spec, stdout, stderr, notes)? {
        Ok(job) => job,
        Err(record) => return Ok(record),
    };
    let (status, usage, reason) = watch_job(dir, spec, &job, notes, stop)?;
    let wall_secs = job.started.elapsed().as_secs_f64();
    if reason.is_none() && stop.load(Ordering::SeqCst) {
        // The canceller signalled the group too, and it ended first.
        note(notes, "cancelled");
    }
    // Whatever the job left behind goes with it: its group, and (as the
    // subreaper) every descendant, wherever it moved.
    if !kill_job(job.pid, job.whole_tree) {
        note(notes, "some of the job's processes could not be stopped");
    }
    Ok(exit_record(status, &usage, wall_secs, reason))
}

/// A job that started: its main process, whether the supervisor is the
/// subreaper of its whole tree, and when it was spawned.
struct Running {
    pid: i32,
    whole_tree: bool,
    started: Instant,
}

/// Confines and spawns the job's command and records its pid; the exit
/// record instead when it cannot start (the reason is noted).
fn start_job(
    dir: &Path,
    spec: &JobSpec,
    stdout: File,
    stderr: File,
    notes: &mut File,
) -> anyhow::Result<Result<Running, ExitRecord>> {
    let Some((program, args)) = spec.argv.split_first() else {
        note(notes, "cannot start the job: its command is empty");
        return Ok(Err(cannot_start(0.0)));
    };
    if !spec.workdir.is_dir() {
        note(
            notes,
            &format!("cannot start `{program}`: its working directory does not exist"),
        );
        return Ok(Err(cannot_start(0.0)));
    }
    let own = [dir.join(OUT_DIR), dir.join(TMP_DIR)];
    let confinement = match confine::build(
        confine::kernel_abi(),
        &own,
        &spec.workdir,
        &protected_dirs(dir, spec),
    ) {
        Ok(c) => Some(c),
        Err(why) if confine::unconfined_allowed() => {
            note(
                notes,
                &format!(
                    "running the job unconfined ({}=1): cannot confine it: {why}",
                    confine::ALLOW_UNCONFINED_ENV
                ),
            );
            None
        }
        Err(why) => {
            note(notes, &confine::refusal(&why));
            return Ok(Err(cannot_start(0.0)));
        }
    };
    // Only a supervisor process makes itself the subreaper and waits for
    // any child; inside a test process that would take other tests' children.
    let whole_tree = std::env::var_os(SUPERVISOR_PROCESS_ENV).is_some() && sys::become_subreaper();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(&spec.workdir)
        .env_clear()
        .envs(job_env(spec, dir, std::env::vars_os()))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    if let Some(c) = &confinement {
        let fd = c.raw_fd();
        // SAFETY: the closure runs in the child between fork and exec and
        // only makes two async-signal-safe system calls on an fd that the
        // parent keeps open until `spawn` returns.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || confine::apply_in_child(fd));
        }
    }
    let started = Instant::now();
    let spawned = spawn_retrying(&mut cmd);
    drop(confinement);
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            note(notes, &format!("cannot start `{program}`: {e}"));
            return Ok(Err(cannot_start(started.elapsed().as_secs_f64())));
        }
    };
    let pid = i32::try_from(child.id()).context("job pid out of range")?;
    // Reaped with wait4 below, for its resource usage; `child` is never waited.
    drop(child);
    if let Err(e) = write_atomic(&dir.join(JOB_PID_FILE), format!("{pid}\n").as_bytes()) {
        // Nobody could cancel or find a job whose pid is unrecorded.
        note(notes, &format!("stopping the job: {e:#}"));
        signal_job(pid, whole_tree, libc::SIGKILL);
    }
    Ok(Ok(Running {
        pid,
        whole_tree,
        started,
    }))
}

/// Watches the job until its main process ends, stopping it (SIGTERM, then
/// SIGKILL after [`KILL_GRACE`]) when it is cancelled, reaches its time or
/// memory limit, or its metrics diverge. Its wait status, resource usage
/// and why it was stopped, if it was.
fn watch_job(
    dir: &Path,
    spec: &JobSpec,
    job: &Running,
    notes: &mut File,
    stop: &AtomicBool,
) -> anyhow::Result<(libc::c_int, libc::rusage, Option<StopReason>)> {
    let Running {
        pid,
        whole_tree,
        started,
    } = *job;
    // No limit if it is not a positive, representable number of seconds.
    let limit = Duration::try_from_secs_f64(spec.time_limit_secs)
        .ok()
        .filter(|d| !d.is_zero());
    let mut tail = matches!(spec.metrics, MetricsSource::Jsonl)
        .then(|| MetricsTail::new(dir.join(OUT_DIR).join(METRICS_FILE)));
    let mut reason: Option<StopReason> = None;
    let mut kill_at: Option<Instant> = None;
    let mut next_memory_check = started + MEMORY_INTERVAL;
    // Wake as soon as the job ends, not at the next poll: a short job's
    // result reaches the host tens of milliseconds sooner.
    let exited = sys::exit_watch(pid);
    loop {
        if let Some((status, usage)) = sys::try_reap(pid).context("waiting for the job")? {
            return Ok((status, usage, reason));
        }
        let now = Instant::now();
        let mut new_reason = None;
        if stop.load(Ordering::SeqCst) {
            new_reason = Some((StopReason::Cancelled, "cancelled".to_string()));
        } else if let Some(limit) = limit
            && now.duration_since(started) >= limit
        {
            new_reason = Some((
                StopReason::TimeLimit,
                format!("time limit of {} s reached", spec.time_limit_secs),
            ));
        } else if let Some(limit_mb) = spec.memory_mb
            && now >= next_memory_check
        {
            next_memory_check = now + MEMORY_INTERVAL;
            if let Some(kb) = sys::memory_kb(&job_processes(pid, whole_tree))
                && kb > limit_mb.saturating_mul(1024)
            {
                new_reason = Some((
                    StopReason::Memory,
                    format!("memory {} MB passed the limit of {limit_mb} MB", kb / 1024),
                ));
            }
        } else if reason.is_none()
            && let Some(why) = tail.as_mut().and_then(MetricsTail::poll)
        {
            new_reason = Some((
                StopReason::Diverged(why.clone()),
                format!("stopping early: {why}"),
            ));
        }
        if let Some((r, msg)) = new_reason
            && reason.is_none()
        {
            note(
                notes,
                &format!(
                    "{msg}; stopping the job (SIGTERM, SIGKILL after {} s)",
                    KILL_GRACE.as_secs_f64()
                ),
            );
            signal_job(pid, whole_tree, libc::SIGTERM);
            reason = Some(r);
            kill_at = Some(now + KILL_GRACE);
        }
        if let Some(at) = kill_at
            && now >= at
        {
            signal_job(pid, whole_tree, libc::SIGKILL);
            kill_at = None;
        }
        sys::wait_exit(exited.as_ref(), POLL_INTERVAL);
    }
}

/// The exit record of a job that ran: how it ended (wait `status`), its
/// CPU time (`usage`), and what the supervisor stopped it for.
fn exit_record(
    status: libc::c_int,
    usage: &libc::rusage,
    wall_secs: f64,
    reason: Option<StopReason>,
) -> ExitRecord {
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let mut record = ExitRecord {
        exit_code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        wall_secs,
        cpu_secs: tv(usage.ru_utime) + tv(usage.ru_stime),
        ..ExitRecord::default()
    };
    match reason {
        Some(StopReason::TimeLimit) => record.timed_out = true,
        Some(StopReason::Memory) => record.memory_exceeded = true,
        Some(StopReason::Diverged(why)) => record.stopped_early = Some(why),
        Some(StopReason::Cancelled) | None => {}
    }
    record
}

/// Spawns, retrying a few times on ETXTBSY (an executable that some process
/// still holds open for writing, typically a script written a moment ago).
fn spawn_retrying(cmd: &mut Command) -> io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

/// Writes the exit record. On a full disk, a quota or a read-only
/// filesystem it waits for the write to succeed instead of losing the
/// record (the host sees a live supervisor, so the trial stays running),
/// and first says so in the job's stderr: the debugger then reads "no space
/// left" and treats a job that could not write its results as an
/// infrastructure fault, not its configuration's.
fn write_status(dir: &Path, record: &ExitRecord, notes: &mut File) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(record)?;
    let started = Instant::now();
    let mut cause: Option<String> = None;
    let mut noted = false;
    loop {
        if let Some(cause) = &cause
            && !noted
        {
            let msg = format!(
                "{cause} while the job ran: its results may be incomplete; the exit record waited {:.0} s for space",
                started.elapsed().as_secs_f64()
            );
            noted = writeln!(notes, "[reagent supervisor] {msg}")
                .and_then(|()| notes.sync_data())
                .is_ok();
            if !noted {
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        }
        match write_atomic(&dir.join(STATUS_FILE), &bytes) {
            Ok(()) => return Ok(()),
            Err(e) => {
                let code = e.chain().find_map(|c| {
                    c.downcast_ref::<io::Error>()
                        .and_then(io::Error::raw_os_error)
                });
                match code {
                    Some(libc::ENOSPC | libc::EDQUOT) => {
                        cause.get_or_insert_with(|| "No space left on device".into());
                    }
                    Some(libc::EROFS) => {
                        cause.get_or_insert_with(|| "Read-only file system".into());
                    }
                    _ => return Err(e),
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// `<exe> wake --workspace <workspace> --quiet`, waited for; its stderr goes
/// to wake.log. Its failure is only logged.
fn run_wake(dir: &Path, wake: &WakeCommand) {
    let log_path = dir.join(WAKE_LOG_FILE);
    let Ok(mut log) = File::create(&log_path) else {
        return;
    };
    let Ok(log_for_child) = log.try_clone() else {
        return;
    };
    let mut cmd = Command::new(&wake.exe);
    cmd.arg("wake")
        .arg("--workspace")
        .arg(&wake.workspace)
        .arg("--quiet")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_for_child);
    match spawn_retrying(&mut cmd).and_then(|mut c| c.wait()) {
        Ok(status) if !status.success() => {
            let _ = writeln!(log, "[reagent supervisor] wake ended with {status}");
        }
        Ok(_) => {}
        Err(e) => {
            let _ = writeln!(
                log,
                "[reagent supervisor] cannot run `{} wake`: {e}",
                wake.exe.display()
            );
        }
    }
}
