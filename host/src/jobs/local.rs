//! The local backend and its job supervisor.
//!
//! Each job gets a folder `<jobs_dir>/<key>`. `submit` writes the spec there
//! and starts a detached supervisor (`reagent __supervise <folder>`, in its
//! own session); the supervisor runs the command in its own process group,
//! captures its output, enforces the time and memory limits, stops a
//! diverging run, writes the exit status atomically and runs `reagent wake`.
//! Everything the host needs later is in the folder, so a restarted host (or
//! none at all) sees the same thing:
//!
//! | file              | written by  | what |
//! |-------------------|-------------|------|
//! | `spec.json`       | submit      | the [`JobSpec`] |
//! | `<params_file>`   | submit      | `spec.params`, named by `$REAGENT_PARAMS` |
//! | `supervisor.pid`  | submit      | the supervisor's pid (the handle id) |
//! | `supervisor.lock` | both        | held (flock) by the live supervisor, and by submit while it starts one |
//! | `job.pid`         | supervisor  | the job's pid, also its process group |
//! | `stdout.log`, `stderr.log` | job | its output; the supervisor adds `[reagent supervisor]` notes to stderr.log |
//! | `metrics.jsonl`   | job         | `$REAGENT_METRICS` |
//! | `status.json`     | supervisor  | [`ExitRecord`]: how the job ended |
//! | `wake.log`        | supervisor  | stderr of `reagent wake` |
//! | `supervisor.log`  | supervisor  | the supervisor's own errors, if any |

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::metrics::{self, MetricsTail};
use super::{Backend, JobHandle, JobOutcome, JobSpec, JobState, WakeCommand};
use crate::campaign::config::MetricsSource;

/// The hidden subcommand that runs a supervisor: `reagent __supervise DIR`.
pub const SUPERVISE_SUBCOMMAND: &str = "__supervise";
/// Between SIGTERM and SIGKILL when the supervisor stops a job.
pub const KILL_GRACE: Duration = Duration::from_secs(3);
/// How often the supervisor looks at its job.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often it measures the job's memory (a scan of /proc).
const MEMORY_INTERVAL: Duration = Duration::from_millis(500);
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
pub(crate) const RESERVED: [&str; 10] = [
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
                if let Some(h) = self.handle_in(&spec.key, &dir) {
                    return Ok(h);
                }
                // A folder without a supervisor pid: a submission that
                // crashed half-way, or one in progress elsewhere.
            }
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
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
        if !dir.is_dir() {
            return Ok(JobState::Lost(format!(
                "job folder {} was deleted",
                dir.display()
            )));
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
                    "the job was never started: {} has no supervisor pid",
                    dir.display()
                ),
            },
        ))
    }

    fn cancel(&self, handle: &JobHandle) -> anyhow::Result<()> {
        let dir = self.job_dir(&handle.key)?;
        if !dir.is_dir() || dir.join(STATUS_FILE).exists() {
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
        if !dir.is_dir() {
            bail!("job folder {} was deleted", dir.display());
        }
        let out = tail_file(&dir.join(STDOUT_FILE), tail_bytes, usize::MAX);
        let err = tail_file(&dir.join(STDERR_FILE), tail_bytes, usize::MAX);
        Ok(format!("stdout:\n{out}\nstderr:\n{err}\n"))
    }
}

/// `Finished` if the folder has an exit status, with metrics and log tail.
/// An unreadable status file is `Lost`, naming the file.
pub(crate) fn finished_state(dir: &Path) -> Option<JobState> {
    let path = dir.join(STATUS_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => return Some(JobState::Lost(format!("{}: {e}", path.display()))),
    };
    match serde_json::from_slice::<ExitRecord>(&bytes) {
        Ok(record) => Some(JobState::Finished(read_outcome(dir, record))),
        Err(e) => Some(JobState::Lost(format!(
            "{} is unreadable: {e}",
            path.display()
        ))),
    }
}

/// The full outcome of a finished job: its exit record plus the metrics and
/// log tail read from the folder.
pub fn read_outcome(dir: &Path, record: ExitRecord) -> JobOutcome {
    let mut metrics_errors = Vec::new();
    let source = match read_spec(dir) {
        Ok(spec) => spec.metrics,
        Err(e) => {
            metrics_errors.push(format!("{e:#}"));
            MetricsSource::Jsonl
        }
    };
    let m = match &source {
        MetricsSource::Jsonl => metrics::read_jsonl_file(&dir.join(METRICS_FILE)),
        MetricsSource::Regex(pattern) => {
            let out = read_tail_lossy(&dir.join(STDOUT_FILE), REGEX_MAX_BYTES);
            let err = read_tail_lossy(&dir.join(STDERR_FILE), REGEX_MAX_BYTES);
            metrics::parse_regex(pattern, &[&out, &err])
        }
    };
    metrics_errors.extend(m.errors);
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

fn read_spec(dir: &Path) -> anyhow::Result<JobSpec> {
    let path = dir.join(SPEC_FILE);
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is unreadable", path.display()))
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
    let Ok(mut file) = File::open(path) else {
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
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(len.saturating_sub(max))).is_ok() {
        let _ = file.take(max).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

// ---------------------------------------------------------------- supervisor

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

/// The hidden `reagent __supervise JOB_DIR` subcommand: runs the job of a
/// prepared folder to the end, writes `status.json`, runs the wake.
///
/// SIGTERM, SIGINT and SIGHUP stop the job (its group gets SIGTERM, then
/// SIGKILL after [`KILL_GRACE`]); the status and the wake still happen.
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
            write_status(&dir, &cannot_start(0.0))?;
            return Ok(());
        }
    };
    let wake = spec.wake.clone();
    let record = run_job(&dir, &spec, stdout, stderr, &mut notes, stop)?;
    write_status(&dir, &record)?;
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
    let Some((program, args)) = spec.argv.split_first() else {
        note(notes, "cannot start the job: its command is empty");
        return Ok(cannot_start(0.0));
    };
    if !spec.workdir.is_dir() {
        note(
            notes,
            &format!(
                "cannot start `{program}`: its working directory {} does not exist",
                spec.workdir.display()
            ),
        );
        return Ok(cannot_start(0.0));
    }
    let metrics_path = dir.join(METRICS_FILE);
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(&spec.workdir)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env("REAGENT_METRICS", &metrics_path)
        .env("REAGENT_PARAMS", dir.join(&spec.params_file))
        .env("REAGENT_JOB_DIR", dir)
        .env_remove(SUPERVISOR_PROCESS_ENV)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    let started = Instant::now();
    let child = match spawn_retrying(&mut cmd) {
        Ok(c) => c,
        Err(e) => {
            note(notes, &format!("cannot start `{program}`: {e}"));
            return Ok(cannot_start(started.elapsed().as_secs_f64()));
        }
    };
    let pid = i32::try_from(child.id()).context("job pid out of range")?;
    // Reaped with wait4 below, for its resource usage; `child` is never waited.
    drop(child);
    if let Err(e) = write_atomic(&dir.join(JOB_PID_FILE), format!("{pid}\n").as_bytes()) {
        // Nobody could cancel or find a job whose pid is unrecorded.
        note(notes, &format!("stopping the job: {e:#}"));
        sys::signal_group(pid, libc::SIGKILL);
    }

    // No limit if it is not a positive, representable number of seconds.
    let limit = Duration::try_from_secs_f64(spec.time_limit_secs)
        .ok()
        .filter(|d| !d.is_zero());
    let mut tail =
        matches!(spec.metrics, MetricsSource::Jsonl).then(|| MetricsTail::new(metrics_path));
    let mut reason: Option<StopReason> = None;
    let mut kill_at: Option<Instant> = None;
    let mut next_memory_check = started + MEMORY_INTERVAL;
    // Wake as soon as the job ends, not at the next poll: a short job's
    // result reaches the host tens of milliseconds sooner.
    let exited = sys::exit_watch(pid);
    let (status, usage) = loop {
        if let Some(done) = sys::try_reap(pid).context("waiting for the job")? {
            break done;
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
            if let Some(kb) = sys::group_memory_kb(pid)
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
            sys::signal_group(pid, libc::SIGTERM);
            reason = Some(r);
            kill_at = Some(now + KILL_GRACE);
        }
        if let Some(at) = kill_at
            && now >= at
        {
            sys::signal_group(pid, libc::SIGKILL);
            kill_at = None;
        }
        sys::wait_exit(exited.as_ref(), POLL_INTERVAL);
    };
    let wall_secs = started.elapsed().as_secs_f64();
    if reason.is_none() && stop.load(Ordering::SeqCst) {
        // The canceller signalled the group too, and it ended first.
        note(notes, "cancelled");
    }
    // Whatever the leader left behind in its group goes with it.
    sys::signal_group(pid, libc::SIGKILL);
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
    Ok(record)
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

fn write_status(dir: &Path, record: &ExitRecord) -> anyhow::Result<()> {
    write_atomic(&dir.join(STATUS_FILE), &serde_json::to_vec_pretty(record)?)
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

// ------------------------------------------------------------------ helpers

/// Starts `exe args…` detached: a new session, stdio to /dev/null, reaped by
/// a background thread so a long-lived host leaves no zombie. Returns its pid.
/// Set in a supervisor's environment: the process is a supervisor (not a
/// test thread calling `supervise`) and should detach into its own session.
const SUPERVISOR_PROCESS_ENV: &str = "REAGENT_SUPERVISOR_PROCESS";

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

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes a file durably and atomically: temp file, fsync, rename, fsync the
/// folder.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_file(path, bytes, true)
}

/// Writes a file atomically (temp file, rename), without fsync.
pub(crate) fn write_replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_file(path, bytes, false)
}

fn write_file(path: &Path, bytes: &[u8], durable: bool) -> anyhow::Result<()> {
    let dir = path.parent().context("a file path without a folder")?;
    let name = path.file_name().context("a file path without a name")?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let result = (|| -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// A pid from a pid file; never 0, 1 or negative (kill would mean
/// something else entirely).
fn read_pid(path: &Path) -> Option<i32> {
    let text = fs::read_to_string(path).ok()?;
    text.trim().parse::<i32>().ok().filter(|&p| p > 1)
}

/// Tries to take the flock; `None` if someone else holds it.
fn try_lock(path: &Path, op: libc::c_int) -> anyhow::Result<Option<File>> {
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

/// Whether `pid` is alive and runs with `REAGENT_JOB_DIR=<dir>`.
fn is_job_of(pid: i32, dir: &Path) -> bool {
    let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let mut want = b"REAGENT_JOB_DIR=".to_vec();
    want.extend_from_slice(dir.as_os_str().as_bytes());
    environ.split(|&b| b == 0).any(|e| e == want.as_slice())
}

/// The few system calls std does not wrap.
mod sys {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;

    pub fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
        loop {
            // SAFETY: the fd is open for the duration of the call (borrowed
            // from `file`); flock touches no memory of ours.
            #[allow(unsafe_code)]
            let r = unsafe { libc::flock(file.as_raw_fd(), op) };
            if r == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Sends `sig` to a process group; false if it does not exist. Refuses
    /// groups 0 and 1 (ours, init's).
    pub fn signal_group(pgid: i32, sig: libc::c_int) -> bool {
        if pgid <= 1 {
            return false;
        }
        // SAFETY: killpg only sends a signal; pgid > 1 names one group.
        #[allow(unsafe_code)]
        let r = unsafe { libc::killpg(pgid, sig) };
        r == 0
    }

    /// Sends `sig` to one process. Refuses pids 0, 1 and negative ones
    /// (which would mean groups or everyone).
    pub fn signal_pid(pid: i32, sig: libc::c_int) -> bool {
        if pid <= 1 {
            return false;
        }
        // SAFETY: kill only sends a signal; pid > 1 names one process.
        #[allow(unsafe_code)]
        let r = unsafe { libc::kill(pid, sig) };
        r == 0
    }

    /// Whether a process with this pid exists (possibly not ours).
    pub fn pid_exists(pid: i32) -> bool {
        if pid <= 1 {
            return false;
        }
        // SAFETY: signal 0 only checks for existence and permission.
        #[allow(unsafe_code)]
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }

    /// Whether `pid` has exited and waits to be reaped (state `Z` in
    /// /proc/PID/stat, read after the name, which may contain spaces).
    pub fn is_zombie(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    }

    /// A handle that becomes readable when process `pid` ends (Linux 5.3+
    /// pidfd); `None` where the kernel has none.
    pub fn exit_watch(pid: i32) -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::FromRawFd as _;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        #[allow(unsafe_code)]
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: the fd was just returned to us and is owned by nobody else.
        #[allow(unsafe_code)]
        Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
    }

    /// Waits up to `timeout` for the watched process to end (returns early
    /// when it does, or on a signal); sleeps the timeout without a watch.
    pub fn wait_exit(watch: Option<&std::os::fd::OwnedFd>, timeout: std::time::Duration) {
        let Some(fd) = watch else {
            std::thread::sleep(timeout);
            return;
        };
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        #[allow(unsafe_code)]
        unsafe {
            libc::poll(&mut p, 1, ms);
        }
    }

    /// Reaps the child `pid` if it has ended: its wait status and resource
    /// usage (its own and its waited-for descendants').
    pub fn try_reap(pid: i32) -> io::Result<Option<(libc::c_int, libc::rusage)>> {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is a plain C struct of integers, for which all-zero
        // is a valid value.
        #[allow(unsafe_code)]
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are to live locals of the right types.
        #[allow(unsafe_code)]
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        match r {
            0 => Ok(None),
            -1 => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
            _ => Ok(Some((status, usage))),
        }
    }

    /// Makes the calling process a session leader (no controlling
    /// terminal, no hangups from the one that started it). Called first
    /// thing by the supervisor process: doing it in the parent between fork
    /// and exec would force `fork` of a large host (wasmtime reserves a lot
    /// of address space), where a plain spawn uses `posix_spawn`.
    pub fn become_session_leader() {
        // SAFETY: setsid has no preconditions; failure (already a leader)
        // is harmless.
        #[allow(unsafe_code)]
        unsafe {
            libc::setsid();
        }
    }

    /// Routes SIGTERM, SIGINT and SIGHUP to `handler`.
    pub fn install_stop_handlers(handler: extern "C" fn(libc::c_int)) {
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            // SAFETY: the handler only stores to an atomic, which is
            // async-signal-safe; `signal` with a valid function is sound.
            #[allow(unsafe_code)]
            unsafe {
                libc::signal(sig, handler as libc::sighandler_t);
            }
        }
    }

    /// Memory of the process group `pgid` in KiB: the sum over its members
    /// of the proportional set size (shared pages split among sharers, so
    /// forked workers are not counted many times), or resident size where
    /// the kernel has no smaps_rollup. `None` if no member was found.
    pub fn group_memory_kb(pgid: i32) -> Option<u64> {
        let mut total = 0u64;
        let mut found = false;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid pgrp …; comm may hold spaces and parens.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            if rest
                .split_whitespace()
                .nth(2)
                .and_then(|s| s.parse::<i32>().ok())
                != Some(pgid)
            {
                continue;
            }
            found = true;
            total += process_memory_kb(pid).unwrap_or(0);
        }
        found.then_some(total)
    }

    fn process_memory_kb(pid: i32) -> Option<u64> {
        let field = |text: &str, key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            && let Some(kb) = field(&text, "Pss:")
        {
            return Some(kb);
        }
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        field(&text, "VmRSS:")
    }
}

#[cfg(test)]
mod tests;
