//! The local backend. The supervisor itself is in `supervisor.rs`.
//!
//! Each job gets a folder `<jobs_dir>/<key>`, created exclusively by
//! `submit` (the key holds a per-launch nonce, so nobody can pre-create
//! it; a folder that exists but was not made by this launch is refused,
//! never adopted, and a symlinked folder is never followed). `submit`
//! writes the spec there and starts a detached supervisor
//! (`reagent __supervise <folder>`, in its own session); the supervisor
//! runs the command confined, captures its output, enforces the time and
//! memory limits, stops a diverging run, kills whatever the job left
//! behind, writes the exit status atomically and runs `reagent wake`.
//! Everything the host needs later is in the folder, so a restarted host
//! (or none at all) sees the same thing. The job can write only `out/`
//! and `tmp/`; every other file is the supervisor's or submit's:
//!
//! | file              | written by  | what |
//! |-------------------|-------------|------|
//! | `spec.json`       | submit      | the [`JobSpec`] |
//! | `<params_file>`   | submit      | `spec.params`, named by `$REAGENT_PARAMS` |
//! | `supervisor.pid`  | submit      | the supervisor's pid (the handle id) |
//! | `supervisor.lock` | both        | held (flock) by the live supervisor, and by submit while it starts one |
//! | `job.pid`         | supervisor  | the job's pid, also its process group |
//! | `stdout.log`, `stderr.log` | supervisor | opened by the supervisor, written by the job through those fds; the supervisor adds `[reagent supervisor]` notes to stderr.log |
//! | `status.json`     | supervisor  | [`ExitRecord`]: how the job ended, its run time as measured by the supervisor |
//! | `wake.log`        | supervisor  | stderr of `reagent wake` |
//! | `supervisor.log`  | supervisor  | the supervisor's own errors, if any |
//! | `out/`            | job         | `$REAGENT_JOB_DIR`: the job's own files, among them `metrics.jsonl` (`$REAGENT_METRICS`) |
//! | `tmp/`            | job         | `$TMPDIR`, removed when the job ends |

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::metrics;
use super::sys;
use super::{Backend, JobHandle, JobOutcome, JobSpec, JobState};
use crate::jobs::MetricsSource;

#[cfg(test)]
pub(crate) use super::supervisor::run_supervisor;
pub use super::supervisor::supervise;

/// The hidden subcommand that runs a supervisor: `reagent __supervise DIR`.
pub const SUPERVISE_SUBCOMMAND: &str = "__supervise";
/// Between SIGTERM and SIGKILL when the supervisor stops a job.
pub const KILL_GRACE: Duration = Duration::from_secs(3);
/// How often the supervisor looks at its job.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Exit code recorded when the command cannot be started.
pub const EXIT_CANNOT_START: i32 = 127;
/// The log tail in a finished job's outcome.
const LOG_TAIL_BYTES: usize = 4096;
const LOG_TAIL_LINES: usize = 60;
/// At most this much of each log is searched by a metrics regex.
const REGEX_MAX_BYTES: u64 = 64 << 20;
/// How long submit waits for another process that is starting the same job.
const SUBMIT_WAIT: Duration = Duration::from_secs(5);

pub const SPEC_FILE: &str = "spec.json";
pub const STATUS_FILE: &str = "status.json";
pub const SUPERVISOR_PID_FILE: &str = "supervisor.pid";
pub const LOCK_FILE: &str = "supervisor.lock";
pub const JOB_PID_FILE: &str = "job.pid";
pub const STDOUT_FILE: &str = "stdout.log";
pub const STDERR_FILE: &str = "stderr.log";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const WAKE_LOG_FILE: &str = "wake.log";
pub const SUPERVISOR_LOG_FILE: &str = "supervisor.log";
/// The job's own folder (`$REAGENT_JOB_DIR`), the only one it may write
/// besides its tmp and working directory.
pub const OUT_DIR: &str = "out";
/// The job's private tmp (`$TMPDIR`).
pub const TMP_DIR: &str = "tmp";
pub(crate) const RESERVED: [&str; 12] = [
    OUT_DIR,
    TMP_DIR,
    SPEC_FILE,
    STATUS_FILE,
    SUPERVISOR_PID_FILE,
    LOCK_FILE,
    JOB_PID_FILE,
    STDOUT_FILE,
    STDERR_FILE,
    METRICS_FILE,
    WAKE_LOG_FILE,
    SUPERVISOR_LOG_FILE,
];

/// How a job ended, as the supervisor saw it: `status.json`. Metrics and the
/// log tail are not here; `status` reads them from the job folder.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    #[serde(default)]
    pub timed_out: bool,
    #[serde(default)]
    pub stopped_early: Option<String>,
    #[serde(default)]
    pub memory_exceeded: bool,
    pub wall_secs: f64,
    pub cpu_secs: f64,
}

/// Starts a supervisor for a prepared job folder; returns its pid.
pub type Launcher = Arc<dyn Fn(&Path) -> anyhow::Result<u32> + Send + Sync>;

/// Runs jobs on this machine, each under a detached supervisor.
#[derive(Clone)]
pub struct LocalBackend {
    jobs_dir: PathBuf,
    launcher: Launcher,
}

impl fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalBackend")
            .field("jobs_dir", &self.jobs_dir)
            .finish_non_exhaustive()
    }
}

impl LocalBackend {
    /// Supervisors are this executable (`current_exe() __supervise DIR`).
    pub fn new(jobs_dir: PathBuf) -> Self {
        Self::with_launcher(
            jobs_dir,
            Arc::new(|dir: &Path| {
                let exe = std::env::current_exe().context("finding the reagent executable")?;
                spawn_detached(&exe, &[OsStr::new(SUPERVISE_SUBCOMMAND), dir.as_os_str()])
            }),
        )
    }

    /// Supervisors are `exe __supervise DIR`.
    pub fn with_supervisor_exe(jobs_dir: PathBuf, exe: PathBuf) -> Self {
        Self::with_launcher(
            jobs_dir,
            Arc::new(move |dir: &Path| {
                spawn_detached(&exe, &[OsStr::new(SUPERVISE_SUBCOMMAND), dir.as_os_str()])
            }),
        )
    }

    /// Supervisors are started by `launcher` (given the job folder, returns
    /// the supervisor's pid). For tests and embedders.
    pub fn with_launcher(jobs_dir: PathBuf, launcher: Launcher) -> Self {
        let jobs_dir = std::path::absolute(&jobs_dir).unwrap_or(jobs_dir);
        LocalBackend { jobs_dir, launcher }
    }

    pub fn jobs_dir(&self) -> &Path {
        &self.jobs_dir
    }

    /// The folder of the job with this key.
    pub fn job_dir(&self, key: &str) -> anyhow::Result<PathBuf> {
        check_file_name(key, "job key")?;
        Ok(self.jobs_dir.join(key))
    }

    fn handle_in(&self, key: &str, dir: &Path) -> Option<JobHandle> {
        // Only a real folder made by this launch (its spec names the key)
        // is a submitted job; anything else is not ours to adopt.
        if folder_kind(dir) != Folder::Dir || !spec_is_ours(dir, key) {
            return None;
        }
        let pid = read_pid(&dir.join(SUPERVISOR_PID_FILE));
        if pid.is_none() && !dir.join(STATUS_FILE).exists() {
            return None;
        }
        Some(JobHandle {
            key: key.to_string(),
            id: pid.map_or_else(|| "-".to_string(), |p| p.to_string()),
        })
    }

    /// Whether a supervisor is alive for this folder: it holds the lock, or
    /// (while it is starting) its pid is a live `__supervise` of this folder.
    fn supervisor_alive(&self, dir: &Path) -> bool {
        lock_is_held(&dir.join(LOCK_FILE))
            || read_pid(&dir.join(SUPERVISOR_PID_FILE)).is_some_and(|p| is_supervisor_of(p, dir))
    }
}

impl Backend for LocalBackend {
    fn folder(&self, key: &str) -> Option<PathBuf> {
        self.job_dir(key).ok()
    }
    fn name(&self) -> &'static str {
        "local"
    }

    fn submit(&self, spec: &JobSpec) -> anyhow::Result<JobHandle> {
        let dir = self.job_dir(&spec.key)?;
        check_file_name(&spec.params_file, "params file name")?;
        if RESERVED.contains(&spec.params_file.as_str()) {
            bail!(
                "params file name {:?} is taken by the job folder's own files",
                spec.params_file
            );
        }
        fs::create_dir_all(&self.jobs_dir)
            .with_context(|| format!("creating {}", self.jobs_dir.display()))?;
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                check_ours(&dir, &spec.key)?;
                if let Some(h) = self.handle_in(&spec.key, &dir) {
                    return Ok(h);
                }
                // Our folder without a supervisor pid: a submission that
                // crashed half-way, or one in progress elsewhere.
            }
            Err(e) => return Err(e).with_context(|| format!("creating job folder {}", spec.key)),
        }
        // Hold the lock while starting the supervisor, so two submitters never
        // both start one (the supervisor waits for it before it runs the job).
        let waited = Instant::now();
        let _lock = loop {
            if let Some(lock) = try_lock(&dir.join(LOCK_FILE), libc::LOCK_EX)? {
                break lock;
            }
            if let Some(h) = self.handle_in(&spec.key, &dir) {
                return Ok(h);
            }
            if waited.elapsed() > SUBMIT_WAIT {
                bail!(
                    "job {}: another process holds {} and wrote no supervisor pid",
                    spec.key,
                    dir.join(LOCK_FILE).display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(h) = self.handle_in(&spec.key, &dir) {
            return Ok(h);
        }
        // Atomic (a reader never sees half a file) but not fsynced: the
        // launch is already journaled in the store, and after a machine
        // crash the job is gone anyway — reconcile finds it lost and the
        // debugger retries it. Skipping six fsyncs per launch is most of
        // the host's file-system cost.
        write_replace(&dir.join(SPEC_FILE), &serde_json::to_vec_pretty(spec)?)?;
        write_replace(
            &dir.join(&spec.params_file),
            &serde_json::to_vec_pretty(&spec.params)?,
        )?;
        let pid = (self.launcher)(&dir)
            .with_context(|| format!("starting the supervisor of job {}", spec.key))?;
        write_replace(
            &dir.join(SUPERVISOR_PID_FILE),
            format!("{pid}\n").as_bytes(),
        )?;
        Ok(JobHandle {
            key: spec.key.clone(),
            id: pid.to_string(),
        })
    }

    fn find(&self, key: &str) -> anyhow::Result<Option<JobHandle>> {
        let dir = self.job_dir(key)?;
        Ok(self.handle_in(key, &dir))
    }

    fn status(&self, handle: &JobHandle) -> anyhow::Result<JobState> {
        let dir = self.job_dir(&handle.key)?;
        if let Some(lost) = folder_lost(&dir, &handle.key) {
            return Ok(lost);
        }
        if let Some(state) = finished_state(&dir) {
            return Ok(state);
        }
        if self.supervisor_alive(&dir) {
            return Ok(if dir.join(JOB_PID_FILE).exists() {
                JobState::Running
            } else {
                JobState::Pending
            });
        }
        // It may have finished between the two looks.
        if let Some(state) = finished_state(&dir) {
            return Ok(state);
        }
        Ok(JobState::Lost(
            match read_pid(&dir.join(SUPERVISOR_PID_FILE)) {
                Some(pid) => {
                    format!("the supervisor (pid {pid}) is gone and left no exit status")
                }
                None => format!(
                    "the job was never started: job folder {} has no supervisor pid",
                    handle.key
                ),
            },
        ))
    }

    fn cancel(&self, handle: &JobHandle) -> anyhow::Result<()> {
        let dir = self.job_dir(&handle.key)?;
        if folder_kind(&dir) != Folder::Dir || dir.join(STATUS_FILE).exists() {
            return Ok(());
        }
        // The supervisor stops the group (SIGTERM, then SIGKILL after the
        // grace) and still records the status and runs the wake.
        if let Some(pid) = read_pid(&dir.join(SUPERVISOR_PID_FILE))
            && is_supervisor_of(pid, &dir)
            && sys::signal_pid(pid, libc::SIGTERM)
        {
            // Left to the supervisor: signalling the group as well could end
            // the job before its handler has marked it cancelled.
            return Ok(());
        }
        // The supervisor is gone: the job's group directly, only when it is
        // surely this job's (pids get reused).
        if let Some(pid) = read_pid(&dir.join(JOB_PID_FILE))
            && is_job_of(pid, &dir)
            && !dir.join(STATUS_FILE).exists()
        {
            sys::signal_group(pid, libc::SIGTERM);
        }
        Ok(())
    }

    fn logs(&self, handle: &JobHandle, tail_bytes: usize) -> anyhow::Result<String> {
        let dir = self.job_dir(&handle.key)?;
        if let Some(JobState::Lost(why)) = folder_lost(&dir, &handle.key) {
            bail!("{why}");
        }
        let out = tail_file(&dir.join(STDOUT_FILE), tail_bytes, usize::MAX);
        let err = tail_file(&dir.join(STDERR_FILE), tail_bytes, usize::MAX);
        Ok(format!("stdout:\n{out}\nstderr:\n{err}\n"))
    }

    fn progress(&self, handle: &JobHandle) -> anyhow::Result<Option<super::Curves>> {
        Ok(progress_in(&self.job_dir(&handle.key)?))
    }
}

/// `Finished` if the folder has an exit status, with metrics and log tail.
/// An unreadable status file is `Lost`, naming the file.
pub(crate) fn finished_state(dir: &Path) -> Option<JobState> {
    let key = dir
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    if let Some(lost) = folder_lost(dir, &key) {
        return Some(lost);
    }
    let bytes = match read_regular(&dir.join(STATUS_FILE), 1 << 20) {
        Ok(b) => b,
        Err(e) => return unread_status(&key, &e),
    };
    match serde_json::from_slice::<ExitRecord>(&bytes) {
        Ok(record) => Some(JobState::Finished(read_outcome(dir, record))),
        Err(e) => Some(JobState::Lost(format!(
            "{key}/{STATUS_FILE} is unreadable: {e}"
        ))),
    }
}

/// The state of a job whose status file could not be read: not finished
/// yet when it is not there; still running when the error is one that
/// passes (too many open files, no memory, interrupted — the next pass
/// looks again, as for a Slurm controller that does not answer); lost,
/// naming the file, otherwise. A transient error once made a running
/// trial "lost".
pub(crate) fn unread_status(key: &str, e: &io::Error) -> Option<JobState> {
    if e.kind() == io::ErrorKind::NotFound {
        return None;
    }
    let transient = matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EINTR | libc::EAGAIN | libc::ENOBUFS
        )
    ) || matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    );
    if transient {
        tracing::warn!("{key}/{STATUS_FILE}: {e}; looking again on the next pass");
        return Some(JobState::Running);
    }
    Some(JobState::Lost(format!("{key}/{STATUS_FILE}: {e}")))
}

/// What is at a job folder's path, without following a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Folder {
    Missing,
    Dir,
    Symlink,
    Other,
}

pub(crate) fn folder_kind(dir: &Path) -> Folder {
    match fs::symlink_metadata(dir) {
        Err(_) => Folder::Missing,
        Ok(m) if m.file_type().is_symlink() => Folder::Symlink,
        Ok(m) if m.is_dir() => Folder::Dir,
        Ok(_) => Folder::Other,
    }
}

/// `Lost` when the job folder is gone or not a real folder (a symlink is
/// never followed: someone else could point it anywhere).
pub(crate) fn folder_lost(dir: &Path, key: &str) -> Option<JobState> {
    match folder_kind(dir) {
        Folder::Dir => None,
        Folder::Missing => Some(JobState::Lost(format!("job folder {key} was deleted"))),
        Folder::Symlink => Some(JobState::Lost(format!(
            "job folder is a symlink ({key}); not followed"
        ))),
        Folder::Other => Some(JobState::Lost(format!("job folder {key} is not a folder"))),
    }
}

/// Whether the folder's spec names `key` (written by the submit of this
/// launch: the key holds the launch's nonce).
fn spec_is_ours(dir: &Path, key: &str) -> bool {
    read_spec(dir).is_ok_and(|s| s.key == key)
}

/// An existing job folder at submit: ours (a re-submit of the same
/// launch after a crash) or refused, never adopted.
fn check_ours(dir: &Path, key: &str) -> anyhow::Result<()> {
    match folder_kind(dir) {
        Folder::Dir => {}
        Folder::Symlink => bail!("job folder is a symlink ({key}); not ours, not followed"),
        _ => bail!("job folder {key} is not a folder; not ours"),
    }
    let has = |name: &str| dir.join(name).symlink_metadata().is_ok();
    let ours = if has(SPEC_FILE) {
        spec_is_ours(dir, key)
    } else {
        // A half submission writes the spec first: anything else in the
        // folder was put there by someone else.
        [STATUS_FILE, SUPERVISOR_PID_FILE, STDOUT_FILE, OUT_DIR]
            .iter()
            .all(|f| !has(f))
    };
    if !ours {
        bail!("job folder {key} exists but was not created by this launch; not adopting it");
    }
    Ok(())
}

/// Reads at most `max` bytes of a regular file, never following a symlink
/// nor blocking on a FIFO.
pub(crate) fn read_regular(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = metrics::open_regular(path)?;
    let mut buf = Vec::new();
    file.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

/// What a job in `dir` has reported so far (its spec names the source),
/// with a note when the spec is unreadable.
fn read_metrics(dir: &Path) -> (metrics::Metrics, Option<String>) {
    let (source, note) = match read_spec(dir) {
        Ok(spec) => (spec.metrics, None),
        Err(e) => (MetricsSource::Jsonl, Some(format!("{e:#}"))),
    };
    let m = match &source {
        MetricsSource::Jsonl => metrics::read_jsonl_file(&dir.join(OUT_DIR).join(METRICS_FILE)),
        MetricsSource::Regex(pattern) => {
            let out = read_tail_lossy(&dir.join(STDOUT_FILE), REGEX_MAX_BYTES);
            let err = read_tail_lossy(&dir.join(STDERR_FILE), REGEX_MAX_BYTES);
            metrics::parse_regex(pattern, &[&out, &err])
        }
        MetricsSource::RegexNamed { regex, names } => {
            let out = read_tail_lossy(&dir.join(STDOUT_FILE), REGEX_MAX_BYTES);
            let err = read_tail_lossy(&dir.join(STDERR_FILE), REGEX_MAX_BYTES);
            metrics::parse_regex_named(regex, names, &[&out, &err])
        }
    };
    (m, note)
}

/// The curves a running job in `dir` has reported so far (a folder that
/// is not a plain directory reports nothing).
pub(crate) fn progress_in(dir: &Path) -> Option<super::Curves> {
    if folder_kind(dir) != Folder::Dir {
        return None;
    }
    Some(read_metrics(dir).0.curves)
}

/// The full outcome of a finished job: its exit record plus the metrics and
/// log tail read from the folder.
pub fn read_outcome(dir: &Path, record: ExitRecord) -> JobOutcome {
    let (m, note) = read_metrics(dir);
    let mut metrics_errors: Vec<String> = note.into_iter().collect();
    let capped = m.cap_notes();
    metrics_errors.extend(m.errors);
    metrics_errors.extend(capped);
    JobOutcome {
        exit_code: record.exit_code,
        signal: record.signal,
        timed_out: record.timed_out,
        stopped_early: record.stopped_early,
        memory_exceeded: record.memory_exceeded,
        wall_secs: record.wall_secs,
        cpu_secs: record.cpu_secs,
        metrics: m.finals,
        curves: m.curves,
        metrics_errors,
        log_tail: log_tail(dir),
    }
}

pub(crate) fn read_spec(dir: &Path) -> anyhow::Result<JobSpec> {
    let bytes = read_regular(&dir.join(SPEC_FILE), 16 << 20)
        .with_context(|| format!("reading {SPEC_FILE}"))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{SPEC_FILE} is unreadable"))
}

/// The last lines of stdout and stderr, as `stdout:`/`stderr:` sections
/// (about `LOG_TAIL_BYTES` and `LOG_TAIL_LINES` in all; an empty stream gives
/// its share to the other).
pub fn log_tail(dir: &Path) -> String {
    let size = |name| fs::metadata(dir.join(name)).map_or(0, |m| m.len());
    let both = size(STDOUT_FILE) > 0 && size(STDERR_FILE) > 0;
    let (bytes, lines) = if both {
        (LOG_TAIL_BYTES / 2, LOG_TAIL_LINES / 2)
    } else {
        (LOG_TAIL_BYTES, LOG_TAIL_LINES)
    };
    let mut out = String::new();
    for (label, name) in [("stdout", STDOUT_FILE), ("stderr", STDERR_FILE)] {
        let tail = tail_file(&dir.join(name), bytes, lines);
        if !tail.is_empty() {
            out.push_str(label);
            out.push_str(":\n");
            out.push_str(&tail);
            out.push('\n');
        }
    }
    out
}

/// The last `max_bytes` of a file (at most `max_lines` lines), starting at a
/// line boundary when cut; empty when missing.
pub(crate) fn tail_file(path: &Path, max_bytes: usize, max_lines: usize) -> String {
    let Ok(mut file) = metrics::open_regular(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(max_bytes as u64);
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err()
        || file.take(max_bytes as u64).read_to_end(&mut buf).is_err()
    {
        return String::new();
    }
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    let mut cut = start > 0;
    if cut && let Some(nl) = text.find('\n') {
        text.drain(..=nl);
    }
    let trimmed = text.trim_end_matches('\n');
    let lines: Vec<&str> = trimmed.lines().collect();
    let skip = lines.len().saturating_sub(max_lines);
    cut |= skip > 0;
    let body = lines[skip..].join("\n");
    if cut { format!("…\n{body}") } else { body }
}

fn read_tail_lossy(path: &Path, max: u64) -> String {
    let Ok(mut file) = metrics::open_regular(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(len.saturating_sub(max))).is_ok() {
        let _ = file.take(max).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

// ------------------------------------------------------------------ helpers

/// Starts `exe args…` detached: a new session, stdio to /dev/null, reaped by
/// a background thread so a long-lived host leaves no zombie. Returns its pid.
/// Set in a supervisor's environment: the process is a supervisor (not a
/// test thread calling `supervise`) and should detach into its own session.
pub(crate) const SUPERVISOR_PROCESS_ENV: &str = "REAGENT_SUPERVISOR_PROCESS";

pub fn spawn_detached(exe: &Path, args: &[&OsStr]) -> anyhow::Result<u32> {
    let mut cmd = Command::new(exe);
    cmd.env(SUPERVISOR_PROCESS_ENV, "1");
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // A crash-test hook of the host's must not follow it into the
        // supervisor and its wake.
        .env_remove("REAGENT_CRASH_AFTER_COMMITS");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let pid = child.id();
    std::thread::spawn(move || child.wait());
    Ok(pid)
}

/// A job key or file name: one plain path component.
pub(crate) fn check_file_name(name: &str, what: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != '\\');
    if !ok {
        bail!(
            "{what} {name:?} must be 1 to 200 printable ASCII characters, without `/` or `\\`, not starting with `.`"
        );
    }
    Ok(())
}

pub(crate) use crate::files::{write_atomic, write_replace};

/// A pid from a pid file; never 0, 1 or negative (kill would mean
/// something else entirely).
fn read_pid(path: &Path) -> Option<i32> {
    let text = fs::read_to_string(path).ok()?;
    text.trim().parse::<i32>().ok().filter(|&p| p > 1)
}

/// Tries to take the flock; `None` if someone else holds it.
pub fn try_lock(path: &Path, op: libc::c_int) -> anyhow::Result<Option<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    match sys::flock(&file, op | libc::LOCK_NB) {
        Ok(()) => Ok(Some(file)),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

/// Whether someone holds the folder lock (a live supervisor, or a
/// submitter starting one).
fn lock_is_held(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    matches!(
        sys::flock(&file, libc::LOCK_SH | libc::LOCK_NB),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK)
    )
}

/// Whether `pid` is alive and is `… __supervise <dir>` (not a reused pid).
fn is_supervisor_of(pid: i32, dir: &Path) -> bool {
    // A process that has just exec'd reads an empty cmdline until the
    // kernel has set up its arguments, and `spawn` returns before that
    // (its vfork parent is released when the new image is mapped): a
    // supervisor starting on a busy machine. Look again for up to ~0.2 s;
    // a zombie's cmdline stays empty, so it ends the wait.
    for _ in 0..100 {
        if !sys::pid_exists(pid) {
            return false;
        }
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        if cmdline.is_empty() {
            if sys::is_zombie(pid) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        return args.contains(&SUPERVISE_SUBCOMMAND.as_bytes())
            && args.contains(&dir.as_os_str().as_bytes());
    }
    false
}

/// Whether `pid` is alive and runs with `REAGENT_JOB_DIR=<dir>/out`.
fn is_job_of(pid: i32, dir: &Path) -> bool {
    let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let mut want = b"REAGENT_JOB_DIR=".to_vec();
    want.extend_from_slice(dir.join(OUT_DIR).as_os_str().as_bytes());
    environ.split(|&b| b == 0).any(|e| e == want.as_slice())
}

#[cfg(test)]
mod tests;
