//! The Slurm backend: each trial is a batch job that runs the same
//! supervisor as the local backend (`reagent __supervise DIR`) on a compute
//! node, so time and memory limits, metrics, early stopping, `status.json`
//! and the wake at exit behave exactly as locally. The job folder must be on
//! a file system the compute nodes share with the host (the usual home or
//! project file system of a cluster).
//!
//! Files added to the job folder (see `local.rs` for the rest):
//!
//! | file | written by | what |
//! |---|---|---|
//! | `job.sbatch` | submit | the batch script |
//! | `slurm.jobid` | submit | the Slurm job id (the handle id) |
//! | `slurm-jobs` | batch script | one line per start: requeues show up here |
//! | `slurm-<id>.log` | Slurm | the batch script's own output |
//! | `slurm-exit.<id>` | batch script | the supervisor's exit code |
//! | `attempt-N/` | batch script | an interrupted attempt's files, when Slurm requeued the job |
//!
//! Idempotency: the job name is `reagent-<workspace hash>-<key>`; a launch
//! that crashed after `sbatch` but before recording the id is found again by
//! name (`squeue`, then `sacct`), never submitted twice.
//!
//! Status: `status.json` when the supervisor wrote it; else `squeue` for
//! live jobs, then `sacct --parsable2` (`sacct --json` on 22.05 reported 0
//! for failed jobs), then `scontrol show job` (no accounting; until
//! MinJobAge), then the exit file. A controller that cannot be reached is a
//! transient state: the job is taken to be where it was.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::local::{self, OUT_DIR, RESERVED, SPEC_FILE, STATUS_FILE};
use super::{Backend, JobHandle, JobOutcome, JobSpec, JobState};

pub const SCRIPT_FILE: &str = "job.sbatch";
pub const JOBID_FILE: &str = "slurm.jobid";
pub const STARTS_FILE: &str = "slurm-jobs";

/// How GPUs are requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpuFlag {
    /// `--gres=gpu:N`
    Gres,
    /// `--gpus=N`
    Gpus,
}

/// `[job.slurm]` of a campaign file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Extra `#SBATCH` options, verbatim.
    pub sbatch: Vec<String>,
    pub gpus_as: GpuFlag,
    /// Slurm's time limit is the trial's plus this.
    pub time_margin_secs: u64,
}

/// Where the Slurm commands are: `$REAGENT_SLURM_BIN` if set, else PATH.
pub fn command(name: &str) -> Command {
    match std::env::var_os("REAGENT_SLURM_BIN") {
        Some(dir) if !dir.is_empty() => Command::new(PathBuf::from(dir).join(name)),
        _ => Command::new(name),
    }
}

/// Runs a Slurm command; `Err` carries what it printed.
fn run(name: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = command(name).args(args).output().with_context(|| {
        format!("cannot run `{name}` (is Slurm installed and on PATH, or REAGENT_SLURM_BIN set?)")
    })?;
    if !out.status.success() {
        bail!(
            "`{name} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks, before any spend, that Slurm answers and the options make sense:
/// the commands exist, the controller is reachable, the partition exists.
/// Returns a line for the preflight checklist.
pub fn preflight(opts: &SlurmOptions) -> anyhow::Result<String> {
    run("sbatch", &["--version"]).context("Slurm's sbatch is not usable here")?;
    let nodes = run("sinfo", &["-h", "-o", "%P %D %t"]).context(
        "the Slurm controller does not answer (sinfo failed); is slurmctld running and reachable?",
    )?;
    if let Some(p) = &opts.partition {
        let parts: Vec<&str> = nodes
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|p| p.trim_end_matches('*'))
            .collect();
        if !parts.contains(&p.as_str()) {
            bail!(
                "Slurm partition {p:?} does not exist (partitions: {}); fix [job.slurm] partition",
                parts.join(", ")
            );
        }
    }
    Ok(format!(
        "slurm: controller answers; partition {}, account {}, qos {}{}",
        opts.partition.as_deref().unwrap_or("(default)"),
        opts.account.as_deref().unwrap_or("(default)"),
        opts.qos.as_deref().unwrap_or("(default)"),
        if opts.sbatch.is_empty() {
            String::new()
        } else {
            format!(", extra {}", opts.sbatch.join(" "))
        }
    ))
}

pub struct SlurmBackend {
    jobs_dir: PathBuf,
    exe: PathBuf,
    /// Distinguishes this workspace's job names on a shared cluster.
    tag: String,
}

impl SlurmBackend {
    pub fn new(jobs_dir: PathBuf, exe: PathBuf) -> Self {
        let tag = hex::encode(&sha2::Sha256::digest(jobs_dir.as_os_str().as_encoded_bytes())[..4]);
        SlurmBackend { jobs_dir, exe, tag }
    }

    fn dir(&self, key: &str) -> anyhow::Result<PathBuf> {
        local::check_file_name(key, "job key")?;
        Ok(self.jobs_dir.join(key))
    }

    /// The Slurm job name for `key`.
    pub fn job_name(&self, key: &str) -> String {
        format!("reagent-{}-{key}", self.tag)
    }

    /// The job id Slurm knows under this key's name, if any.
    fn lookup(&self, key: &str) -> anyhow::Result<Option<String>> {
        let name = self.job_name(key);
        // `-t all`: also jobs that ended but are still in the controller's
        // memory (MinJobAge).
        let live = run(
            "squeue",
            &["-h", "-a", "-t", "all", "-o", "%i", "--name", &name],
        )?;
        if let Some(id) = live.lines().map(str::trim).find(|l| !l.is_empty()) {
            return Ok(Some(id.to_string()));
        }
        // Finished jobs: accounting, where there is any.
        if let Ok(done) = run(
            "sacct",
            &[
                "-n",
                "-X",
                "-P",
                "-o",
                "JobID",
                "--name",
                &name,
                "-S",
                "now-7days",
            ],
        ) && let Some(id) = done.lines().map(str::trim).find(|l| !l.is_empty())
        {
            return Ok(Some(id.to_string()));
        }
        Ok(None)
    }

    fn script(&self, spec: &JobSpec, opts: &SlurmOptions, dir: &Path) -> String {
        let q = |p: &Path| shell_quote(&p.display().to_string());
        let secs = spec.time_limit_secs.ceil() as u64 + opts.time_margin_secs;
        let mut lines = vec![
            "#!/bin/sh".to_string(),
            format!("#SBATCH --job-name={}", self.job_name(&spec.key)),
            format!("#SBATCH --output={}/slurm-%j.log", dir.display()),
            format!("#SBATCH --time={}:{:02}", secs / 60, secs % 60),
            format!(
                "#SBATCH --cpus-per-task={}",
                spec.cpus.ceil().max(1.0) as u64
            ),
            "#SBATCH --nodes=1".to_string(),
            "#SBATCH --ntasks=1".to_string(),
        ];
        if let Some(mb) = spec.memory_mb {
            lines.push(format!("#SBATCH --mem={mb}M"));
        }
        let gpus = spec.gpus.ceil() as u64;
        if gpus > 0 {
            lines.push(match opts.gpus_as {
                GpuFlag::Gres => format!("#SBATCH --gres=gpu:{gpus}"),
                GpuFlag::Gpus => format!("#SBATCH --gpus={gpus}"),
            });
        }
        for (flag, v) in [
            ("partition", &opts.partition),
            ("account", &opts.account),
            ("qos", &opts.qos),
        ] {
            if let Some(v) = v {
                lines.push(format!("#SBATCH --{flag}={v}"));
            }
        }
        for extra in &opts.sbatch {
            lines.push(format!("#SBATCH {extra}"));
        }
        lines.push(format!(
            r#"# Written by reagent: runs trial {key} under its supervisor.
dir={dir}
echo "$SLURM_JOB_ID" >> "$dir/{STARTS_FILE}"
if [ "${{SLURM_RESTART_COUNT:-0}}" -gt 0 ]; then
  # Requeued (preempted, node failure, scontrol requeue): keep the
  # interrupted attempt's files and run the trial afresh, same key.
  old="$dir/attempt-$SLURM_RESTART_COUNT"
  mkdir -p "$old"
  for f in stdout.log stderr.log {OUT_DIR} job.pid {STATUS_FILE}; do
    if [ -e "$dir/$f" ]; then mv "$dir/$f" "$old/"; fi
  done
fi
# As a supervisor process it is the subreaper of the job's descendants.
REAGENT_SUPERVISOR_PROCESS=1 {exe} __supervise "$dir"
code=$?
echo "$code" > "$dir/slurm-exit.$SLURM_JOB_ID"
exit "$code""#,
            key = spec.key,
            dir = q(dir),
            exe = q(&self.exe),
        ));
        lines.join("\n") + "\n"
    }

    /// The terminal or live state Slurm reports for job `id`, if it knows it.
    fn slurm_state(&self, id: &str) -> anyhow::Result<Option<(String, Option<String>)>> {
        // Live jobs.
        match run("squeue", &["-h", "-t", "all", "-j", id, "-o", "%T"]) {
            Ok(out) => {
                if let Some(state) = out.lines().map(str::trim).find(|l| !l.is_empty()) {
                    return Ok(Some((state.to_string(), None)));
                }
            }
            // squeue says "Invalid job id" for a job it no longer has.
            Err(e) if e.to_string().contains("Invalid job id") => {}
            Err(e) => return Err(e),
        }
        // Accounting (parsable; --json misreports exit codes on 22.05).
        if let Ok(out) = run(
            "sacct",
            &["-n", "-X", "-P", "-j", id, "-o", "State,ExitCode"],
        ) && let Some(line) = out.lines().map(str::trim).find(|l| !l.is_empty())
        {
            let mut parts = line.split('|');
            let state = parts.next().unwrap_or("").to_string();
            let exit = parts.next().map(str::to_string);
            return Ok(Some((state, exit)));
        }
        // No accounting: the controller remembers a finished job for
        // MinJobAge.
        if let Ok(out) = run("scontrol", &["show", "job", id, "-o"]) {
            let field = |name: &str| {
                out.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .map(str::to_string)
            };
            if let Some(state) = field("JobState=") {
                return Ok(Some((state, field("ExitCode="))));
            }
        }
        Ok(None)
    }
}

/// Single-quotes a string for sh.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Maps a Slurm state (as squeue, sacct or scontrol print it) onto ours.
/// `None` means "not finished": pending or running (requeued and
/// preempted-then-requeued jobs are followed, not counted again).
pub fn map_state(state: &str, exit: Option<&str>, log_tail: String) -> Option<JobState> {
    // sacct prints e.g. "CANCELLED by 0"; keep the first word.
    let word = state
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches('+');
    let exit_code = exit
        .and_then(|e| e.split(':').next())
        .and_then(|c| c.trim().parse::<i32>().ok());
    let signal = exit
        .and_then(|e| e.split(':').nth(1))
        .and_then(|c| c.trim().parse::<i32>().ok())
        .filter(|s| *s > 0);
    let outcome = |o: JobOutcome| Some(JobState::Finished(o));
    let base = JobOutcome {
        log_tail,
        ..JobOutcome::default()
    };
    match word {
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESIZING"
        | "SUSPENDED" | "STOPPED" | "SIGNALING" | "STAGE_OUT" => Some(JobState::Pending),
        "RUNNING" | "COMPLETING" => Some(JobState::Running),
        "COMPLETED" => outcome(JobOutcome {
            exit_code: Some(exit_code.unwrap_or(0)),
            ..base
        }),
        "FAILED" => outcome(JobOutcome {
            exit_code: Some(exit_code.filter(|c| *c != 0).unwrap_or(1)),
            signal,
            ..base
        }),
        "TIMEOUT" | "DEADLINE" => outcome(JobOutcome {
            timed_out: true,
            signal: Some(15),
            log_tail: format!(
                "{}\nslurm: the job hit its time limit (TIMEOUT)",
                base.log_tail
            ),
            ..base
        }),
        "OUT_OF_MEMORY" => outcome(JobOutcome {
            memory_exceeded: true,
            signal: Some(9),
            log_tail: format!(
                "{}\nslurm: out of memory (OUT_OF_MEMORY): the job exceeded its memory limit",
                base.log_tail
            ),
            ..base
        }),
        "CANCELLED" => outcome(JobOutcome {
            signal: Some(15),
            log_tail: format!("{}\nslurm: the job was cancelled ({state})", base.log_tail),
            ..base
        }),
        "PREEMPTED" => outcome(JobOutcome {
            signal: Some(9),
            log_tail: format!(
                "{}\nslurm: the job was preempted and not requeued",
                base.log_tail
            ),
            ..base
        }),
        "NODE_FAIL" | "BOOT_FAIL" | "LAUNCH_FAILED" => Some(JobState::Lost(format!(
            "slurm: node failure ({word}): infrastructure, not the configuration"
        ))),
        "" => None,
        other => Some(JobState::Lost(format!(
            "slurm reported an unexpected job state {other:?}: infrastructure"
        ))),
    }
}

impl Backend for SlurmBackend {
    fn folder(&self, key: &str) -> Option<PathBuf> {
        self.dir(key).ok()
    }
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn submit(&self, spec: &JobSpec) -> anyhow::Result<JobHandle> {
        let opts = spec
            .slurm
            .as_ref()
            .context("a Slurm job without [job.slurm] options")?;
        local::check_file_name(&spec.params_file, "params file name")?;
        if RESERVED.contains(&spec.params_file.as_str()) {
            bail!(
                "params file name {:?} is taken by the job folder's own files",
                spec.params_file
            );
        }
        if let Some(h) = self.find(&spec.key)? {
            return Ok(h);
        }
        let dir = self.dir(&spec.key)?;
        fs::create_dir_all(&self.jobs_dir)
            .with_context(|| format!("creating {}", self.jobs_dir.display()))?;
        // Created here or by an earlier submit of this launch (the key holds
        // its nonce); a symlink is never followed.
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if local::folder_kind(&dir) != local::Folder::Dir {
                    bail!(
                        "job folder {} is not a folder (a symlink?); not ours",
                        spec.key
                    );
                }
            }
            Err(e) => return Err(e).with_context(|| format!("creating job folder {}", spec.key)),
        }
        local::write_replace(&dir.join(SPEC_FILE), &serde_json::to_vec_pretty(spec)?)?;
        local::write_replace(
            &dir.join(&spec.params_file),
            &serde_json::to_vec_pretty(&spec.params)?,
        )?;
        let script = dir.join(SCRIPT_FILE);
        local::write_replace(&script, self.script(spec, opts, &dir).as_bytes())?;
        let out = run("sbatch", &["--parsable", &script.display().to_string()])
            .context("Slurm refused the job")?;
        // "123" or "123;cluster".
        let id = out
            .trim()
            .split(';')
            .next()
            .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
            .with_context(|| format!("sbatch printed {:?}, not a job id", out.trim()))?
            .to_string();
        // Test hook: die between sbatch and recording its id.
        crate::crash::after_sbatch();
        local::write_replace(&dir.join(JOBID_FILE), format!("{id}\n").as_bytes())?;
        Ok(JobHandle {
            key: spec.key.clone(),
            id,
        })
    }

    fn find(&self, key: &str) -> anyhow::Result<Option<JobHandle>> {
        let dir = self.dir(key)?;
        if local::folder_kind(&dir) != local::Folder::Dir {
            return Ok(None);
        }
        if let Ok(id) = fs::read_to_string(dir.join(JOBID_FILE))
            && !id.trim().is_empty()
        {
            return Ok(Some(JobHandle {
                key: key.into(),
                id: id.trim().into(),
            }));
        }
        // Submitted but not recorded (a crash right after sbatch)?
        match self.lookup(key)? {
            Some(id) => {
                local::write_replace(&dir.join(JOBID_FILE), format!("{id}\n").as_bytes())?;
                Ok(Some(JobHandle {
                    key: key.into(),
                    id,
                }))
            }
            None => Ok(None),
        }
    }

    fn status(&self, handle: &JobHandle) -> anyhow::Result<JobState> {
        let dir = self.dir(&handle.key)?;
        if let Some(lost) = local::folder_lost(&dir, &handle.key) {
            return Ok(lost);
        }
        match local::finished_state(&dir) {
            // Stopped from outside (not by its own limits): scancel,
            // which is final, or Slurm requeueing it, which runs it again
            // under the same key. Slurm's state tells which once the batch
            // script has ended; until then, wait (the next wake looks again).
            Some(JobState::Finished(o))
                if o.signal.is_some()
                    && !o.timed_out
                    && !o.memory_exceeded
                    && o.stopped_early.is_none() =>
            {
                if let Ok(Some((state, exit))) = self.slurm_state(&handle.id)
                    && let Some(live @ (JobState::Pending | JobState::Running)) =
                        map_state(&state, exit.as_deref(), String::new())
                {
                    return Ok(live);
                }
                return Ok(JobState::Finished(o));
            }
            Some(state) => return Ok(state),
            None => {}
        }
        let slurm = match self.slurm_state(&handle.id) {
            Ok(s) => s,
            // The controller is down or restarting: nothing is known to
            // have changed; look again on the next pass.
            Err(e) => {
                tracing::warn!("slurm job {}: {e:#}", handle.id);
                return Ok(JobState::Running);
            }
        };
        // The supervisor may have finished between the looks.
        if let Some(state) = local::finished_state(&dir) {
            return Ok(state);
        }
        let tail = || {
            let mut t = local::log_tail(&dir);
            let batch = local::tail_file(&dir.join(format!("slurm-{}.log", handle.id)), 2048, 20);
            if !batch.is_empty() {
                t.push_str("slurm:\n");
                t.push_str(&batch);
            }
            t
        };
        match slurm {
            Some((state, exit)) => match map_state(&state, exit.as_deref(), tail()) {
                Some(JobState::Finished(o))
                    if o.exit_code == Some(0) && !o.timed_out && o.signal.is_none() =>
                {
                    // Slurm says the batch script ended well, yet the
                    // supervisor wrote no status: it never ran the job.
                    Ok(JobState::Lost(format!(
                        "slurm job {} completed but its supervisor left no {STATUS_FILE}",
                        handle.id
                    )))
                }
                Some(s) => Ok(s),
                None => Ok(JobState::Pending),
            },
            None => {
                let exit = dir.join(format!("slurm-exit.{}", handle.id));
                Ok(JobState::Lost(if exit.exists() {
                    format!(
                        "slurm job {}'s supervisor exited ({}) without a {STATUS_FILE}",
                        handle.id,
                        fs::read_to_string(&exit).unwrap_or_default().trim()
                    )
                } else {
                    format!(
                        "Slurm no longer knows job {} and it left no exit status",
                        handle.id
                    )
                }))
            }
        }
    }

    fn cancel(&self, handle: &JobHandle) -> anyhow::Result<()> {
        let dir = self.dir(&handle.key)?;
        if dir.join(STATUS_FILE).exists() {
            return Ok(());
        }
        // The supervisor gets SIGTERM, stops the job's group, records the
        // status and runs the wake.
        run("scancel", &[&handle.id]).map(|_| ())
    }

    fn progress(&self, handle: &JobHandle) -> anyhow::Result<Option<super::Curves>> {
        // The job folder is on the shared file system.
        Ok(local::progress_in(&self.dir(&handle.key)?))
    }

    fn logs(&self, handle: &JobHandle, tail_bytes: usize) -> anyhow::Result<String> {
        let dir = self.dir(&handle.key)?;
        if let Some(JobState::Lost(why)) = local::folder_lost(&dir, &handle.key) {
            bail!("{why}");
        }
        let out = local::tail_file(&dir.join(local::STDOUT_FILE), tail_bytes, usize::MAX);
        let err = local::tail_file(&dir.join(local::STDERR_FILE), tail_bytes, usize::MAX);
        let batch = local::tail_file(
            &dir.join(format!("slurm-{}.log", handle.id)),
            tail_bytes,
            usize::MAX,
        );
        Ok(format!("stdout:\n{out}\nstderr:\n{err}\nslurm:\n{batch}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(s: &str, exit: Option<&str>) -> JobOutcome {
        match map_state(s, exit, String::new()) {
            Some(JobState::Finished(o)) => o,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn slurm_states_map_onto_reagents() {
        assert_eq!(
            map_state("PENDING", None, String::new()),
            Some(JobState::Pending)
        );
        assert_eq!(
            map_state("REQUEUED", None, String::new()),
            Some(JobState::Pending)
        );
        assert_eq!(
            map_state("RUNNING", None, String::new()),
            Some(JobState::Running)
        );
        assert_eq!(
            map_state("COMPLETING", None, String::new()),
            Some(JobState::Running)
        );
        assert!(finished("TIMEOUT", Some("0:15")).timed_out);
        assert!(finished("OUT_OF_MEMORY", Some("0:125")).memory_exceeded);
        assert_eq!(finished("FAILED", Some("3:0")).exit_code, Some(3));
        assert_eq!(finished("FAILED", Some("0:9")).signal, Some(9));
        // sacct's "CANCELLED by 0".
        let c = finished("CANCELLED by 0", Some("0:15"));
        assert_eq!(c.signal, Some(15));
        assert!(c.log_tail.contains("cancelled"), "{c:?}");
        assert_eq!(finished("PREEMPTED", None).signal, Some(9));
        match map_state("NODE_FAIL", None, String::new()) {
            Some(JobState::Lost(why)) => assert!(why.contains("node fail"), "{why}"),
            other => panic!("{other:?}"),
        }
        match map_state("WEIRD_NEW_STATE", None, String::new()) {
            Some(JobState::Lost(why)) => assert!(why.contains("unexpected"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_batch_script_requests_what_the_trial_needs() {
        let b = SlurmBackend::new("/ws/.reagent/jobs".into(), "/opt/it's/reagent".into());
        let spec = JobSpec {
            key: "c1-t7".into(),
            argv: vec!["true".into()],
            env: vec![],
            pass_env: vec![],
            withheld_env: vec![],
            workdir: "/".into(),
            params: serde_json::json!({}),
            params_file: "params.json".into(),
            time_limit_secs: 90.0,
            memory_mb: Some(2048),
            metrics: crate::jobs::MetricsSource::Jsonl,
            wake: None,
            cpus: 1.5,
            gpus: 2.0,
            slurm: None,
        };
        let opts = SlurmOptions {
            partition: Some("gpu".into()),
            account: Some("ml".into()),
            qos: None,
            sbatch: vec!["--constraint=a100".into()],
            gpus_as: GpuFlag::Gres,
            time_margin_secs: 60,
        };
        let s = b.script(&spec, &opts, Path::new("/ws/.reagent/jobs/c1-t7"));
        for line in [
            &format!("#SBATCH --job-name={}", b.job_name("c1-t7")),
            "#SBATCH --time=2:30",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --mem=2048M",
            "#SBATCH --gres=gpu:2",
            "#SBATCH --partition=gpu",
            "#SBATCH --account=ml",
            "#SBATCH --constraint=a100",
            "'/opt/it'\\''s/reagent' __supervise \"$dir\"",
        ] {
            assert!(s.contains(line), "{line} not in:\n{s}");
        }
        assert!(!s.contains("--qos"), "{s}");
        assert!(b.job_name("c1-t7").starts_with("reagent-"));
        let other = SlurmBackend::new("/other/.reagent/jobs".into(), "/x".into());
        assert_ne!(
            b.job_name("c1-t7"),
            other.job_name("c1-t7"),
            "names differ per workspace"
        );
    }
}
