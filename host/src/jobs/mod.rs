//! Job backends: where trials run. The engine renders a [`JobSpec`] and a
//! backend runs it, keyed by an idempotency key so a launch that crashed
//! half-way is found again instead of run twice.
//!
//! `local` runs each job under a detached supervisor (the `reagent` binary,
//! hidden subcommand `__supervise`); `slurm` submits a batch script that runs
//! the same supervisor on a compute node; `dispatch` picks one per job.

pub mod confine;
pub mod dispatch;
pub mod local;
pub mod metrics;
pub mod slurm;
pub mod supervisor;
mod sys;
pub use sys::release_freed_memory;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where a job's metrics come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricsSource {
    /// JSON lines written to the file named by `$REAGENT_METRICS`.
    Jsonl,
    /// A regex with named groups over stdout and stderr; the last match of
    /// each group wins.
    Regex(String),
    /// The same, with groups renamed (group → metric): for metric names a
    /// group cannot hold, such as `ndcg@10` or `val/loss`.
    RegexNamed {
        regex: String,
        names: std::collections::BTreeMap<String, String>,
    },
}

/// What to run, fully rendered by the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Idempotency key, e.g. `c1-t17-5f0c9a3e1b2d4c6f`: campaign, trial and
    /// a random per-launch nonce journaled with the launch, so nobody can
    /// pre-create the folder of a launch to come. Also the job folder name.
    pub key: String,
    /// The command with every `{knob}` substituted.
    pub argv: Vec<String>,
    /// Extra environment (REAGENT_SEED, REAGENT_KNOB_*, the campaign's env).
    /// The job's environment is built from scratch: [`BASE_ENV`], these
    /// `pass_env` patterns copied from the supervisor's environment, then
    /// `env`, then the `REAGENT_*` the supervisor sets.
    pub env: Vec<(String, String)>,
    /// `NAME` or `PREFIX_*` patterns of variables copied from the
    /// supervisor's environment (`[job] pass_env`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_env: Vec<String>,
    /// Variables never copied from the supervisor's environment, whatever
    /// the patterns say (the language model's key variable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withheld_env: Vec<String>,
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
    /// The curves a running job has reported so far, for early stopping;
    /// `None` where the backend cannot see them.
    fn progress(&self, _handle: &JobHandle) -> anyhow::Result<Option<Curves>> {
        Ok(None)
    }
    /// The folder on this machine that holds the job's logs, for messages
    /// to the operator; `None` where there is none.
    fn folder(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }
}

/// Reported (step, value) points per metric.
pub type Curves = BTreeMap<String, Vec<(u32, f64)>>;

/// What every job gets from the supervisor's environment, when set: the
/// basics of a login session and what ML jobs commonly need. `PREFIX_*`
/// matches every name starting with `PREFIX_`. Under Slurm `SLURM_*` is
/// added. Anything else must be listed in `[job] pass_env` or set in
/// `[job] env`.
pub const BASE_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TERM",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "LD_LIBRARY_PATH",
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
];

/// Whether environment variable `name` matches `pattern` (`NAME`, or
/// `PREFIX*` for every name starting with `PREFIX`).
pub fn env_pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// Checks a `pass_env` pattern: a variable name (letters, digits, `_`, not
/// starting with a digit), optionally ending in `*`; not `REAGENT_*`, which
/// reagent sets itself; not a bare `*`.
pub fn check_env_pattern(pattern: &str) -> Result<(), String> {
    let name = pattern.strip_suffix('*').unwrap_or(pattern);
    if name.is_empty() {
        return Err(format!(
            "pass_env pattern {pattern:?} would pass the whole environment; list the variables (NAME or PREFIX_*)"
        ));
    }
    let ok = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !ok {
        return Err(format!(
            "pass_env pattern {pattern:?} is not a variable name (letters, digits and `_`), optionally ending in `*`"
        ));
    }
    if env_pattern_matches(pattern, "REAGENT_") || name.starts_with("REAGENT_") {
        return Err(format!(
            "pass_env pattern {pattern:?} names REAGENT_* variables, which reagent sets for the job itself"
        ));
    }
    Ok(())
}

/// Replaces absolute host paths in text a strategy will see: a path under
/// `base` becomes relative to it (`train.py`, `src/x.py`), any other
/// absolute path keeps only its last component (`…/metrics.jsonl`).
/// Strategies must not learn where the workspace, the job folders or the
/// user's files are.
pub fn redact_paths(text: &str, base: Option<&std::path::Path>) -> String {
    let base = base
        .map(|b| b.to_string_lossy().trim_end_matches('/').to_string())
        .filter(|b| b.len() > 1);
    let starts_path = |prev: Option<char>, rest: &str| {
        rest.starts_with('/')
            && rest[1..]
                .chars()
                .next()
                .is_some_and(|c| !c.is_whitespace() && c != '/')
            && prev.is_none_or(|p| p.is_whitespace() || "\"'`(=:,[<{".contains(p))
    };
    let ends_path = |c: char| c.is_whitespace() || "\"'`),;]>}".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut prev = None;
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if starts_path(prev, rest) {
            let len = rest.find(ends_path).unwrap_or(rest.len());
            let path = &rest[..len];
            // A trailing `:` or `.` is punctuation (`at /x/y.py:`), not the path.
            let trimmed = path.trim_end_matches([':', '.']);
            let tail = &path[trimmed.len()..];
            let relative = base
                .as_deref()
                .and_then(|b| trimmed.strip_prefix(b))
                .and_then(|r| r.strip_prefix('/'))
                .filter(|r| !r.is_empty());
            match relative {
                Some(r) => out.push_str(r),
                None => {
                    let last = trimmed.rsplit('/').find(|c| !c.is_empty()).unwrap_or("");
                    out.push_str("…/");
                    out.push_str(last);
                }
            }
            out.push_str(tail);
            prev = path.chars().last();
            i += len;
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        prev = Some(c);
        i += c.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_patterns_match_names_and_prefixes() {
        assert!(env_pattern_matches("LC_*", "LC_ALL"));
        assert!(!env_pattern_matches("LC_*", "LANG"));
        assert!(env_pattern_matches("PATH", "PATH"));
        assert!(!env_pattern_matches("PATH", "PATHX"));
        assert!(check_env_pattern("HF_*").is_ok());
        assert!(check_env_pattern("WANDB_API_KEY").is_ok());
        for bad in [
            "*",
            "",
            "A-B",
            "1X",
            "REAGENT_*",
            "REAGENT_WORKSPACE",
            "REAG*",
            "X*Y",
        ] {
            assert!(check_env_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_paths_become_relative_or_lose_their_folders() {
        let base = std::path::Path::new("/home/ann/proj");
        assert_eq!(
            redact_paths(
                "File \"/home/ann/proj/src/train.py\", line 3 (at /tmp/x/.reagent/jobs/c1-t4-ab/out/metrics.jsonl)",
                Some(base)
            ),
            "File \"src/train.py\", line 3 (at …/metrics.jsonl)"
        );
        assert_eq!(
            redact_paths("in /home/ann/proj: 1/2 val/loss a / b", Some(base)),
            "in …/proj: 1/2 val/loss a / b"
        );
        assert_eq!(redact_paths("cwd=/srv/data/x.", None), "cwd=…/x.");
        assert_eq!(redact_paths("ünï /a/b", None), "ünï …/b");
        assert!(!redact_paths("/", None).contains("…"));
    }
}
