//! `reagent plan --smoke`: one run of the baseline before anything is
//! registered, to prove the job starts, ends and reports the objective.
//!
//! A campaign spends its first trials on the baseline; when those cannot
//! produce the objective the baseline gate halts it (`engine/gate.rs`).
//! The smoke run finds the same mistakes — a metric name the job never
//! reports, a script that is not there — for the price of one run and with
//! nothing recorded.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::jobs::{Backend, JobOutcome, JobState};
use crate::spec::Campaign;

/// How the smoke run ended.
pub struct Smoke {
    /// The job's folder, kept for its logs.
    pub folder: Option<PathBuf>,
    /// Its outcome, or why the backend lost it.
    pub outcome: Result<JobOutcome, String>,
    pub secs: f64,
}

/// Runs the baseline once (seed 1, trial number 0) on the campaign's
/// backend and waits for it; `waiting` is called about once a second with
/// the seconds so far.
pub fn run(
    backend: &dyn Backend,
    spec: &Campaign,
    mut waiting: impl FnMut(f64),
) -> anyhow::Result<Smoke> {
    let key = format!("smoke-{}", super::engine::launch_nonce());
    let job = super::engine::job_spec_for(spec, &[], 1, 0, &key, None);
    let handle = backend.submit(&job)?;
    let start = Instant::now();
    let mut told = 0u64;
    let outcome = loop {
        match backend.status(&handle)? {
            JobState::Finished(o) => break Ok(o),
            JobState::Lost(why) => break Err(why),
            JobState::Pending | JobState::Running => {
                std::thread::sleep(Duration::from_millis(100));
                let secs = start.elapsed().as_secs();
                if secs > told {
                    told = secs;
                    waiting(start.elapsed().as_secs_f64());
                }
            }
        }
    };
    Ok(Smoke {
        folder: backend.folder(&key),
        outcome,
        secs: start.elapsed().as_secs_f64(),
    })
}

/// What the smoke run shows: lines to print when the objective arrived
/// (with warnings for a missing holdout or guard metric, or a run close to
/// its time limit), or the cause when it did not.
pub fn judge(spec: &Campaign, smoke: &Smoke) -> Result<Vec<String>, String> {
    let o = match &smoke.outcome {
        Ok(o) => o,
        Err(why) => return Err(format!("the job was lost: {why}")),
    };
    let metric = &spec.objective.metric;
    let value = o.metrics.get(metric);
    let clean = o.exit_code == Some(0) && !o.timed_out && !o.memory_exceeded;
    let Some(value) = value.filter(|v| clean && v.is_finite()) else {
        return Err(format!(
            "the baseline run {}",
            super::engine::outcome_cause(spec, o)
        ));
    };
    let mut lines = vec![format!(
        "the baseline reported `{metric}` = {value} in {:.1} s (time limit {} s)",
        o.wall_secs,
        spec.job.time_limit.as_secs()
    )];
    let limit = spec.job.time_limit.as_secs_f64();
    if o.wall_secs > 0.8 * limit {
        lines.push(format!(
            "warning: the run took {:.0}% of `[job] time_limit`; slower configurations will hit it",
            100.0 * o.wall_secs / limit
        ));
    }
    let mut others: Vec<(&str, &str)> = Vec::new();
    if let Some(h) = &spec.objective.holdout {
        others.push((h, "holdout"));
    }
    for g in &spec.objective.guards {
        others.push((&g.metric, "guard"));
    }
    for (name, role) in others {
        if !o.metrics.contains_key(name) {
            let mut seen: Vec<&str> = o.metrics.keys().map(String::as_str).collect();
            seen.sort_unstable();
            let hint = super::engine::closest_name(name, &seen)
                .map_or(String::new(), |n| format!(" (did you mean `{n}`?)"));
            lines.push(format!(
                "warning: the {role} metric `{name}` was not reported{hint}; the report will show it as n/a"
            ));
        }
    }
    Ok(lines)
}
