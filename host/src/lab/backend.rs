//! A job backend that answers trials from a task instead of launching
//! processes: the engine renders the job as for any backend, and the
//! outcome is what `reagent __task` would have reported for the same
//! parameters and seed.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::jobs::{Backend, JobHandle, JobOutcome, JobSpec, JobState};
use crate::strategy::{KnobKind, KnobSpec, Value};

use super::tasks::{Config, Eval, HOLDOUT, METRIC, Task};

/// The knob values of a job's parameters (`$REAGENT_PARAMS`), by the kinds
/// of `knobs`; the seed; an error naming what is missing or mistyped.
pub fn config_from_params(
    knobs: &[KnobSpec],
    params: &serde_json::Value,
) -> anyhow::Result<(Config, u64)> {
    let mut config = Config::new();
    for k in knobs {
        let v = params
            .get(&k.name)
            .ok_or_else(|| anyhow::anyhow!("the parameters have no knob `{}`", k.name))?;
        let value = match &k.kind {
            KnobKind::Float(_) | KnobKind::LogFloat(_) => v.as_f64().map(Value::Float),
            KnobKind::Int(_) => v.as_i64().map(Value::Int),
            KnobKind::Categorical(_) => v.as_str().map(|s| Value::Choice(s.into())),
            KnobKind::Flag => v.as_bool().map(Value::Flag),
        };
        let value = value.ok_or_else(|| {
            anyhow::anyhow!("knob `{}` has a value of the wrong kind: {v}", k.name)
        })?;
        config.insert(k.name.clone(), value);
    }
    let seed = params.get("seed").and_then(|s| s.as_u64()).unwrap_or(1);
    Ok((config, seed))
}

/// The outcome a job of `task` reports for `config` at `seed`.
pub fn outcome(task: &Task, config: &Config, seed: u64) -> JobOutcome {
    match task.evaluate(config, seed) {
        Eval::Done {
            loss,
            holdout,
            secs,
        } => {
            let metrics: BTreeMap<String, f64> =
                [(METRIC.to_string(), loss), (HOLDOUT.to_string(), holdout)].into();
            let curves = metrics
                .iter()
                .map(|(k, v)| (k.clone(), vec![(1, *v)]))
                .collect();
            JobOutcome {
                exit_code: Some(0),
                wall_secs: secs,
                cpu_secs: secs,
                metrics,
                curves,
                ..JobOutcome::default()
            }
        }
        Eval::Failed { message, secs } => JobOutcome {
            exit_code: Some(1),
            wall_secs: secs,
            cpu_secs: secs,
            log_tail: message,
            ..JobOutcome::default()
        },
    }
}

/// Jobs answered at submission; every status is final.
pub struct TaskBackend<'a> {
    pub task: &'a Task,
    jobs: Mutex<BTreeMap<String, JobState>>,
}

impl<'a> TaskBackend<'a> {
    pub fn new(task: &'a Task) -> Self {
        TaskBackend {
            task,
            jobs: Mutex::new(BTreeMap::new()),
        }
    }
}

fn handle(key: &str) -> JobHandle {
    JobHandle {
        key: key.into(),
        id: key.into(),
    }
}

impl Backend for TaskBackend<'_> {
    fn name(&self) -> &'static str {
        "task"
    }

    fn submit(&self, spec: &JobSpec) -> anyhow::Result<JobHandle> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if !jobs.contains_key(&spec.key) {
            let state = match config_from_params(&self.task.knobs, &spec.params) {
                Ok((config, seed)) => JobState::Finished(outcome(self.task, &config, seed)),
                Err(e) => JobState::Finished(JobOutcome {
                    exit_code: Some(2),
                    log_tail: format!("reagent __task: {e}"),
                    ..JobOutcome::default()
                }),
            };
            jobs.insert(spec.key.clone(), state);
        }
        Ok(handle(&spec.key))
    }

    fn find(&self, key: &str) -> anyhow::Result<Option<JobHandle>> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        Ok(jobs.contains_key(key).then(|| handle(key)))
    }

    fn status(&self, h: &JobHandle) -> anyhow::Result<JobState> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        Ok(jobs
            .get(&h.key)
            .cloned()
            .unwrap_or_else(|| JobState::Lost("unknown to the task backend".into())))
    }

    fn cancel(&self, _: &JobHandle) -> anyhow::Result<()> {
        // Every job has already finished.
        Ok(())
    }

    fn logs(&self, h: &JobHandle, _: usize) -> anyhow::Result<String> {
        Ok(match self.status(h)? {
            JobState::Finished(o) => o.log_tail,
            _ => String::new(),
        })
    }
}
