//! Trials from queued to submitted: a launch is journaled (`Launching`,
//! key, nonce and reservation) in one transaction before the backend sees
//! it; the job spec the backend gets.

use super::*;

impl Engine<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new_trial(
        &self,
        view: &mut View,
        hypothesis: u64,
        stage: Stage,
        seed: u64,
        attempt: u32,
        retry_of: Option<u64>,
        assignments: Vec<Assignment>,
    ) -> TrialRow {
        let tid = view.row.next_trial.max(1);
        view.row.next_trial = tid + 1;
        TrialRow {
            id: tid,
            hypothesis,
            stage,
            seed,
            assignments,
            key: format!("c{}-t{tid}", view.row.id),
            status: TrialStatus::Queued,
            attempt,
            retry_of,
            handle: None,
            reserved_cpu: 0.0,
            reserved_gpu: 0.0,
            spent_cpu: 0.0,
            spent_gpu: 0.0,
            objective: None,
            objective_stderr: None,
            holdout: None,
            metrics: BTreeMap::new(),
            outcome: None,
            failure: None,
            diagnosis: None,
            action_taken: None,
            guard_violation: None,
            launched_ms: None,
            finished_ms: None,
        }
    }

    pub(super) fn queue_trial(
        &mut self,
        view: &mut View,
        hypothesis: u64,
        stage: Stage,
        seed: u64,
        attempt: u32,
        retry_of: Option<u64>,
    ) -> anyhow::Result<()> {
        let id = view.row.id;
        if hypothesis == 0 && view.hypothesis(0).is_none() {
            let row = HypothesisRow {
                id: 0,
                stage: Stage::Validate,
                hypothesis: Hypothesis {
                    title: "baseline".into(),
                    rationale: "the configuration as it is today".into(),
                    category: "baseline".into(),
                    assignments: Vec::new(),
                    parents: Vec::new(),
                },
                origin: Origin::Baseline,
                status: HypothesisStatus::Active,
                call_seq: None,
            };
            let r = row.clone();
            self.commit(view, |tx| put_new_hypothesis(tx, id, &r))?;
            view.hypotheses.push(row);
        }
        let assignments = view
            .hypothesis(hypothesis)
            .map(|h| h.hypothesis.assignments.clone())
            .unwrap_or_default();
        let trial = self.new_trial(
            view,
            hypothesis,
            stage,
            seed,
            attempt,
            retry_of,
            assignments,
        );
        let t = trial.clone();
        self.commit(view, |tx| {
            tx.append(
                Some(id),
                EventBody::TrialQueued {
                    id: t.id,
                    hypothesis,
                    seed,
                    attempt,
                },
            )?;
            tx.put_trial(id, &t)?;
            Ok(())
        })?;
        view.trials.push(trial);
        Ok(())
    }

    /// Launches queued trials while slots and budget allow. True if any.
    pub(super) fn launch(&mut self, view: &mut View) -> anyhow::Result<bool> {
        let mut launched = false;
        if !view.trials.iter().any(|t| t.status == TrialStatus::Queued) {
            return Ok(false);
        }
        // Invariant 1: nothing launches without the approved plan.
        if let Err(why) = self.plan_gate(view) {
            self.halt(view, why)?;
            return Ok(true);
        }
        loop {
            // Its own `max_parallel`, and the workspace quota's share.
            if view.in_flight() >= self.slot_cap(view) {
                break;
            }
            // The quota's hours: wait for the window to move on.
            if self.quota_refusal(view).is_some() {
                break;
            }
            // Baseline first, then in queue order.
            let Some(next) = view
                .trials
                .iter()
                .filter(|t| t.status == TrialStatus::Queued)
                // Baseline replicates first while exploring; confirmation
                // runs in queue order (winner and baseline alternate, so a
                // cut-short confirmation still has both arms).
                .min_by_key(|t| (!(t.hypothesis == 0 && t.stage != Stage::Confirm), t.id))
                .map(|t| (t.id, t.stage))
            else {
                break;
            };
            let hold = if next.1 < Stage::Confirm {
                self.confirm_hold(view)
            } else {
                0
            };
            // Baseline replicates and confirmation runs are part of the plan;
            // exploration must leave room for confirmation.
            let is_baseline = view
                .trials
                .iter()
                .any(|t| t.id == next.0 && t.hypothesis == 0 && t.stage != Stage::Confirm);
            let exploring = !is_baseline && next.1 < Stage::Confirm;
            let late = exploring && self.past_deadline(view);
            if late || !self.affordable(view, if is_baseline { 0 } else { hold }) {
                if !late && view.in_flight() > 0 {
                    // Running trials usually settle below their reservation:
                    // wait for them before giving up on this one.
                    break;
                }
                // Not enough budget (or past the deadline): drop it.
                let reason = if late {
                    "the campaign's deadline has passed"
                } else {
                    "the budget cannot cover it"
                };
                self.drop_trial(view, next.0, reason)?;
                launched = true;
                continue;
            }
            self.journal_launch(view, next.0)?;
            self.submit(view, next.0)?;
            launched = true;
        }
        Ok(launched)
    }

    /// Step 1 of a launch: reserve budget and journal the key.
    pub(super) fn journal_launch(&mut self, view: &mut View, tid: u64) -> anyhow::Result<()> {
        let id = view.row.id;
        let (rc, rg) = (
            view.row.spec.cpu_reservation(),
            view.row.spec.gpu_reservation(),
        );
        view.row.ledger.reserved_cpu += rc;
        view.row.ledger.reserved_gpu += rg;
        view.row.ledger.launched += 1;
        self.quota_reserve(rc, rg);
        let t = view.trials.iter_mut().find(|t| t.id == tid).unwrap();
        t.status = TrialStatus::Launching;
        // The job folder's name gets a nonce journaled here, so no job can
        // pre-create the folder of a launch to come (folders named by
        // campaign and trial alone were predictable), while a re-submit of
        // this launch after a crash finds the same folder.
        t.key = format!("c{id}-t{tid}-{}", launch_nonce());
        t.reserved_cpu = rc;
        t.reserved_gpu = rg;
        t.launched_ms = Some(now_ms());
        let row = t.clone();
        self.commit(view, |tx| {
            tx.put_trial(id, &row)?;
            tx.append(
                Some(id),
                EventBody::TrialLaunching {
                    id: tid,
                    key: row.key.clone(),
                    reserved_cpu: rc,
                    reserved_gpu: rg,
                },
            )?;
            Ok(())
        })
    }

    pub(super) fn job_spec(&self, view: &View, t: &TrialRow) -> JobSpec {
        job_spec_for(
            &view.row.spec,
            &t.assignments,
            t.seed,
            t.id,
            &t.key,
            self.wake.clone(),
        )
    }

    /// Step 2 of a launch: submit, then record the handle.
    pub(super) fn submit(&mut self, view: &mut View, tid: u64) -> anyhow::Result<()> {
        let t = view.trials.iter().find(|t| t.id == tid).cloned().unwrap();
        let spec = self.job_spec(view, &t);
        match self.backend.submit(&spec) {
            Ok(handle) => {
                crate::crash::after_submit();
                self.mark_submitted(view, tid, handle)?;
                let title = view.labelled_title(t.hypothesis);
                self.say(Progress::Launched {
                    campaign: view.row.id,
                    trial: tid,
                    title,
                });
                Ok(())
            }
            Err(e) => {
                let outcome = JobOutcome {
                    log_tail: format!("reagent: submitting the job failed (infrastructure): {e:#}"),
                    ..JobOutcome::default()
                };
                self.finish(view, tid, outcome)
            }
        }
    }

    pub(super) fn mark_submitted(
        &mut self,
        view: &mut View,
        tid: u64,
        handle: crate::jobs::JobHandle,
    ) -> anyhow::Result<()> {
        let id = view.row.id;
        let t = view.trials.iter_mut().find(|t| t.id == tid).unwrap();
        t.status = TrialStatus::Running;
        t.handle = Some(handle.clone());
        let row = t.clone();
        // Not committed on its own: it rides on the pass's next commit (or
        // the flush at its end). The launch is already journaled, so a crash
        // before then is reconciled by key like any half-done launch.
        self.submitted.borrow_mut().push((id, row, handle));
        Ok(())
    }
}

/// Stores a newly queued trial with its event.
pub(super) fn put_queued(tx: &mut Tx, campaign: u64, t: &TrialRow) -> anyhow::Result<()> {
    tx.append(
        Some(campaign),
        EventBody::TrialQueued {
            id: t.id,
            hypothesis: t.hypothesis,
            seed: t.seed,
            attempt: t.attempt,
        },
    )?;
    tx.put_trial(campaign, t)
}

/// The job that runs `assignments` (changes from the baseline) with this
/// seed as trial `trial`, in the folder named by `key`.
pub fn job_spec_for(
    spec: &Campaign,
    assignments: &[Assignment],
    seed: u64,
    trial: u64,
    key: &str,
    wake: Option<WakeCommand>,
) -> JobSpec {
    let config = full_config(spec, assignments);
    let mut values: BTreeMap<String, String> = config
        .iter()
        .map(|(k, v)| (k.clone(), render_value(v)))
        .collect();
    values.insert("seed".into(), seed.to_string());
    values.insert("trial".into(), trial.to_string());
    let argv = spec
        .job
        .command
        .iter()
        .map(|a| render_arg(a, &values))
        .collect();
    let mut env: Vec<(String, String)> = spec.job.env.clone();
    env.push(("REAGENT_SEED".into(), seed.to_string()));
    env.push(("REAGENT_TRIAL".into(), trial.to_string()));
    env.push(("REAGENT_CAMPAIGN".into(), spec.name.clone()));
    for (k, v) in &config {
        env.push((
            format!("REAGENT_KNOB_{}", k.to_uppercase()),
            render_value(v),
        ));
    }
    let mut params = serde_json::Map::new();
    for (k, v) in &config {
        params.insert(k.clone(), crate::strategy::value_json(v));
    }
    params.insert("seed".into(), serde_json::json!(seed));
    params.insert("trial".into(), serde_json::json!(trial));
    JobSpec {
        key: key.to_string(),
        argv,
        env,
        pass_env: spec.job.pass_env.clone(),
        // The language model's key never reaches a job.
        withheld_env: spec
            .llm
            .as_ref()
            .and_then(|l| l.api_key_env.clone())
            .into_iter()
            .collect(),
        workdir: spec.job.workdir.clone(),
        params: serde_json::Value::Object(params),
        params_file: spec.job.params_file.clone(),
        time_limit_secs: spec.job.time_limit.as_secs_f64(),
        memory_mb: spec.job.resources.memory_mb,
        cpus: spec.job.resources.cpus,
        gpus: spec.job.resources.gpus,
        slurm: if spec.job.backend == "slurm" {
            spec.job.slurm.clone()
        } else {
            None
        },
        metrics: spec.job.metrics.clone(),
        wake,
    }
}
