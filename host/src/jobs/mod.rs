//! Job backends: where trials run. The engine renders a [`JobSpec`] and a
//! backend runs it, keyed by an idempotency key so a launch that crashed
//! half-way is found again instead of run twice.
//!
//! `local` runs each job under a detached supervisor (the `reagent` binary,
//! hidden subcommand `__supervise`); `slurm` submits a batch script that runs
//! the same supervisor on a compute node; `dispatch` picks one per job.

pub mod dispatch;
pub mod local;
pub mod metrics;
pub mod slurm;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::campaign::config::MetricsSource;

/// What to run, fully rendered by the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Deterministic idempotency key, e.g. `c1-t17`. Also the job folder name.
    pub key: String,
    /// The command with every `{knob}` substituted.
    pub argv: Vec<String>,
    /// Extra environment (REAGENT_SEED, REAGENT_KNOB_*, the campaign's env).
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
    /// Written to `<job folder>/<params_file>` and named by `$REAGENT_PARAMS`.
    pub params: serde_json::Value,
    pub params_file: String,
    pub time_limit_secs: f64,
    /// Kill the job when its resident memory passes this (where the OS tells).
    pub memory_mb: Option<u64>,
    /// What one trial asks the scheduler for (Slurm: `--cpus-per-task`,
    /// GPUs as `--gres` or `--gpus`).
    #[serde(default)]
    pub cpus: f64,
    #[serde(default)]
    pub gpus: f64,
    /// Run on Slurm with these options; `None` runs it locally.
    #[serde(default)]
    pub slurm: Option<slurm::SlurmOptions>,
    pub metrics: MetricsSource,
    /// Run after the job ends: `<exe> wake --workspace <workspace>`.
    pub wake: Option<WakeCommand>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WakeCommand {
    pub exe: PathBuf,
    pub workspace: PathBuf,
}

/// A submitted job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobHandle {
    pub key: String,
    /// Backend-specific id (local: the supervisor's pid; Slurm: the job id).
    pub id: String,
}

/// How a finished job ended and what it reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobOutcome {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Stopped by the supervisor at its time limit.
    pub timed_out: bool,
    /// Stopped early by the supervisor, with the reason (NaN/inf, explosion).
    pub stopped_early: Option<String>,
    /// Stopped by the supervisor for passing its memory limit.
    pub memory_exceeded: bool,
    pub wall_secs: f64,
    /// CPU time of the job's processes (user + system), where known.
    pub cpu_secs: f64,
    /// Final (last reported) value of each metric.
    pub metrics: BTreeMap<String, f64>,
    /// Every reported value, as (step, value), per metric.
    pub curves: BTreeMap<String, Vec<(u32, f64)>>,
    /// Metrics lines that could not be read, with their line numbers (capped).
    pub metrics_errors: Vec<String>,
    /// The last lines of stdout and stderr (capped).
    pub log_tail: String,
}

/// Where a job is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobState {
    /// Submitted, not started.
    Pending,
    Running,
    Finished(JobOutcome),
    /// The backend no longer knows it and it left no outcome (e.g. the
    /// supervisor was killed, the job folder was deleted).
    Lost(String),
}

/// A place to run jobs.
pub trait Backend: Send + Sync {
    fn name(&self) -> &'static str;
    /// Starts the job. Idempotent by `spec.key`: if a job with this key was
    /// already submitted, returns its handle without starting another.
    fn submit(&self, spec: &JobSpec) -> anyhow::Result<JobHandle>;
    /// The job submitted under `key`, if any.
    fn find(&self, key: &str) -> anyhow::Result<Option<JobHandle>>;
    fn status(&self, handle: &JobHandle) -> anyhow::Result<JobState>;
    fn cancel(&self, handle: &JobHandle) -> anyhow::Result<()>;
    /// The last `tail_bytes` of the job's stdout and stderr.
    fn logs(&self, handle: &JobHandle, tail_bytes: usize) -> anyhow::Result<String>;
}
