//! A finished job settled: spend into the ledger, metrics and guards into
//! the trial, failures through the debugger to an action; and cancelling a
//! campaign.

use super::*;

/// Settles trial `tid`'s reservation to `hours` of actual use: its
/// reservation is released, its spend recorded on it and in the ledger.
/// Never above the reservation (the supervisor enforces the time limit,
/// and its kill grace is not the job's to pay) and never negative, whatever
/// a record said (a negative spend would give budget back). Returns the
/// CPU- and GPU-hours spent.
pub(super) fn settle_spend(view: &mut View, tid: u64, hours: f64) -> (f64, f64) {
    let resources = view.row.spec.job.resources;
    let t = view.trials.iter_mut().find(|t| t.id == tid).unwrap();
    let cap = |reserved: f64, used: f64| {
        if reserved > 0.0 {
            used.min(reserved)
        } else {
            used
        }
    };
    let spent_cpu = cap(t.reserved_cpu, resources.cpus * hours).max(0.0);
    let spent_gpu = cap(t.reserved_gpu, resources.gpus * hours).max(0.0);
    view.row.ledger.reserved_cpu = (view.row.ledger.reserved_cpu - t.reserved_cpu).max(0.0);
    view.row.ledger.reserved_gpu = (view.row.ledger.reserved_gpu - t.reserved_gpu).max(0.0);
    view.row.ledger.spent_cpu += spent_cpu;
    view.row.ledger.spent_gpu += spent_gpu;
    t.reserved_cpu = 0.0;
    t.reserved_gpu = 0.0;
    t.spent_cpu = spent_cpu;
    t.spent_gpu = spent_gpu;
    (spent_cpu, spent_gpu)
}

impl Engine<'_> {
    /// Settles a finished job: ledger, metrics, status; failures go to the
    /// debugger and its action is applied.
    pub(super) fn finish(
        &mut self,
        view: &mut View,
        tid: u64,
        mut outcome: JobOutcome,
    ) -> anyhow::Result<()> {
        // Non-finite values cannot be stored as JSON numbers; the early-stop
        // reason and the log tail already say which metric went NaN/inf.
        let dropped: Vec<String> = outcome
            .metrics
            .iter()
            .filter(|(_, v)| !v.is_finite())
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        let non_finite: Vec<String> = outcome
            .metrics
            .iter()
            .filter(|(_, v)| !v.is_finite())
            .map(|(k, _)| k.clone())
            .collect();
        outcome.metrics.retain(|_, v| v.is_finite());
        for points in outcome.curves.values_mut() {
            points.retain(|(_, v)| v.is_finite());
        }
        if !dropped.is_empty() {
            outcome.log_tail.push_str(&format!(
                "\nreagent: last reported non-finite metrics: {}",
                dropped.join(", ")
            ));
        }
        let id = view.row.id;
        let spec = view.row.spec.clone();
        let metric = &spec.objective.metric;
        let objective = outcome.metrics.get(metric).copied();
        let stderr = outcome.metrics.get(&format!("{metric}_stderr")).copied();
        let holdout = spec
            .objective
            .holdout
            .as_ref()
            .and_then(|h| outcome.metrics.get(h).copied());
        let clean_exit = outcome.exit_code == Some(0)
            && outcome.signal.is_none()
            && !outcome.timed_out
            && outcome.stopped_early.is_none()
            && !outcome.memory_exceeded;
        let succeeded = clean_exit && objective.is_some_and(f64::is_finite);
        let wall_secs = plausible_wall_secs(&mut outcome, spec.job.time_limit);
        let hours = wall_secs / 3600.0;
        let mut guard_violation = None;
        for g in &spec.objective.guards {
            if non_finite.contains(&g.metric) {
                guard_violation = Some(format!("guard `{}` is not a finite number", g.metric));
            } else if let Some(v) = outcome.metrics.get(&g.metric)
                && (g.max.is_some_and(|m| *v > m) || g.min.is_some_and(|m| *v < m))
            {
                guard_violation = Some(format!("guard `{}` = {v} outside its limit", g.metric));
            }
        }
        let (spent_cpu, spent_gpu) = settle_spend(view, tid, hours);
        let t = view.trials.iter_mut().find(|t| t.id == tid).unwrap();
        t.status = if succeeded {
            TrialStatus::Succeeded
        } else {
            TrialStatus::Failed
        };
        t.objective = objective.filter(|x| x.is_finite());
        t.objective_stderr = stderr;
        t.holdout = holdout;
        t.metrics = outcome.metrics.clone();
        t.guard_violation = guard_violation;
        t.finished_ms = Some(now_ms());
        if clean_exit && !succeeded {
            t.failure = Some(FailureClass::MissingMetrics);
        }
        let curves = outcome.curves.clone();
        let mut stored = outcome.clone();
        stored.curves = BTreeMap::new();
        t.outcome = Some(stored);
        let row = t.clone();
        let summary = match (succeeded, objective) {
            (true, Some(v)) => format!("{metric} = {v}"),
            _ => describe_failure(&outcome, metric),
        };
        let s2 = summary.clone();
        self.commit(view, |tx| {
            tx.put_trial(id, &row)?;
            tx.put_curves(id, tid, &curves)?;
            tx.append(
                Some(id),
                EventBody::TrialFinished {
                    id: tid,
                    status: row.status,
                    objective: row.objective,
                    spent_cpu,
                    spent_gpu,
                    summary: s2,
                },
            )?;
            Ok(())
        })?;
        let title = view.labelled_title(row.hypothesis);
        self.say(Progress::Finished {
            campaign: id,
            trial: tid,
            title,
            objective: row.objective,
            status: row.status,
        });
        if !succeeded {
            self.diagnose(view, tid, &outcome)?;
        }
        Ok(())
    }

    pub(super) fn diagnose(
        &mut self,
        view: &mut View,
        tid: u64,
        outcome: &JobOutcome,
    ) -> anyhow::Result<()> {
        let id = view.row.id;
        let spec = view.row.spec.clone();
        let trial = view.trials.iter().find(|t| t.id == tid).cloned().unwrap();
        let max_attempts = spec.budget.max_retries + 1;
        let report = failure_report(&spec, &trial, outcome, max_attempts);
        let (diagnosis, record) = self.ask_debugger(view, &trial, report);
        let mut applied = self.apply_action(view, &trial, &diagnosis, max_attempts);
        // The baseline is never excluded: its failure halts nothing but is
        // retried if the debugger allows; otherwise other replicates carry it.
        if let Some((0, _, _)) = applied.status_change {
            applied.status_change = None;
        }
        {
            let t = view.trials.iter_mut().find(|t| t.id == tid).unwrap();
            t.failure = Some(diagnosis.class);
            t.diagnosis = Some(diagnosis.clone());
            t.action_taken = Some(applied.action_text.clone());
        }
        if let Some((hid, status, _)) = &applied.status_change
            && let Some(h) = view.hypotheses.iter_mut().find(|h| h.id == *hid)
        {
            h.status = *status;
        }
        self.record_diagnosis(view, tid, &diagnosis, record, &mut applied)?;
        if let Some(h) = applied.new_hypothesis {
            view.hypotheses.push(h);
        }
        if let Some(t) = applied.new_trial {
            view.trials.push(t);
        }
        self.say(Progress::Diagnosed {
            campaign: id,
            trial: tid,
            class: diagnosis.class,
            action: applied.action_text,
        });
        if view.row.strikes >= MAX_STRIKES {
            let reason = format!("strategies failed {MAX_STRIKES} times");
            self.halt(view, reason)?;
        }
        Ok(())
    }

    /// The debugger's diagnosis of a failure, with its call record; a
    /// strike and "exclude" when the debugger fails.
    fn ask_debugger(
        &mut self,
        view: &mut View,
        trial: &TrialRow,
        report: FailureReport,
    ) -> (crate::strategy::Diagnosis, Option<CallRecord>) {
        let spec = view.row.spec.clone();
        let debugger = self.strategy(&spec.strategies.debugger, &spec);
        let round = view.row.debugger_calls;
        view.row.debugger_calls += 1;
        let (diagnosis, record) = match debugger {
            Ok(d) => {
                let ctx = view.context(
                    trial.stage.min(Stage::Exploit),
                    round,
                    view.left(trial.stage),
                );
                let (record, _) = self.sandbox.call(
                    &d,
                    CallInput::Diagnose {
                        context: ctx,
                        failure: report,
                    },
                    Arc::new(view.strategy_data()),
                    Default::default(),
                    &spec.strategies.limits,
                );
                match &record.outcome {
                    Ok(CallOutput::Diagnosis(diag)) => (Some(diag.clone()), Some(record)),
                    _ => (None, Some(record)),
                }
            }
            Err(_) => (None, None),
        };
        let diagnosis = diagnosis.unwrap_or_else(|| {
            view.row.strikes += 1;
            crate::strategy::Diagnosis {
                class: trial.failure.unwrap_or(FailureClass::Unknown),
                action: Action::Exclude,
                rationale: "the debugger strategy failed; excluding this hypothesis".into(),
            }
        });
        (diagnosis, record)
    }

    /// What the diagnosis' action does, within the retry bound: a retry, a
    /// retry with changed knobs (a new hypothesis), an escalation to a
    /// person, or an exclusion.
    fn apply_action(
        &mut self,
        view: &mut View,
        trial: &TrialRow,
        diagnosis: &crate::strategy::Diagnosis,
        max_attempts: u32,
    ) -> Applied {
        let tid = trial.id;
        let retries_left = trial.attempt < max_attempts;
        let mut applied = Applied::default();
        // A baseline stays the baseline: a debugger's changed retry of a
        // baseline run would measure something else under its name, so
        // the host runs the baseline again as it is.
        let unchanged_baseline =
            trial.hypothesis == 0 && matches!(&diagnosis.action, Action::RetryWith(_));
        let action = if unchanged_baseline {
            Action::Retry
        } else {
            diagnosis.action.clone()
        };
        match (&action, retries_left) {
            (Action::Retry, true) => {
                let t = self.new_trial(
                    view,
                    trial.hypothesis,
                    trial.stage,
                    trial.seed,
                    trial.attempt + 1,
                    Some(tid),
                    trial.assignments.clone(),
                );
                applied.action_text = if unchanged_baseline {
                    format!(
                        "retry as trial {}, unchanged (the debugger asked for a changed retry; a baseline run is only ever retried as it is)",
                        t.id
                    )
                } else {
                    format!("retry as trial {}", t.id)
                };
                applied.new_trial = Some(t);
            }
            (Action::RetryWith(changes), true) => {
                applied = self.retry_with(view, trial, diagnosis, changes);
            }
            (Action::Escalate, _) => {
                let payload = self.trial_payload(
                    view,
                    serde_json::json!({
                        "trial": tid,
                        "hypothesis": trial.hypothesis,
                        "class": crate::strategy::failure_class_name(diagnosis.class),
                        "rationale": diagnosis.rationale,
                        "retry": "approving runs the trial once more",
                    }),
                );
                applied.escalation = Some(self.new_request(
                    view,
                    governance::ApprovalKind::Escalation,
                    format!(
                        "trial {tid} failed ({}); the debugger asks a human whether to retry it",
                        crate::strategy::failure_class_name(diagnosis.class)
                    ),
                    payload,
                    Some(trial.hypothesis),
                ));
                applied.action_text =
                    "escalated to a human (an approval request); the hypothesis is parked".into();
                applied.status_change = Some((
                    trial.hypothesis,
                    HypothesisStatus::Escalated,
                    diagnosis.rationale.clone(),
                ));
            }
            (_, false) => {
                applied.action_text = format!("excluded: {} attempts used", trial.attempt);
                applied.status_change = Some((
                    trial.hypothesis,
                    HypothesisStatus::Excluded,
                    applied.action_text.clone(),
                ));
            }
            (Action::Exclude, _) => {
                applied.action_text = "excluded".into();
                applied.status_change = Some((
                    trial.hypothesis,
                    HypothesisStatus::Excluded,
                    diagnosis.rationale.clone(),
                ));
            }
        }
        applied
    }

    /// `retry-with`: a new hypothesis, the failed one's change with the
    /// debugger's knobs on top, and its first trial.
    fn retry_with(
        &mut self,
        view: &mut View,
        trial: &TrialRow,
        diagnosis: &crate::strategy::Diagnosis,
        changes: &[Assignment],
    ) -> Applied {
        let spec = view.row.spec.clone();
        let mut assignments = trial.assignments.clone();
        for c in changes {
            assignments.retain(|a| a.knob != c.knob);
            let baseline = spec.knob(&c.knob).map(|k| &k.baseline);
            if baseline != Some(&c.value) {
                assignments.push(c.clone());
            }
        }
        // Name only what the debugger changed (it may repeat the rest).
        let current = full_config(&spec, &trial.assignments);
        let what: Vec<String> = changes
            .iter()
            .filter(|c| !current.iter().any(|(k, v)| k == &c.knob && v == &c.value))
            .map(|c| format!("{}={}", c.knob, render_value(&c.value)))
            .collect();
        let parent = view.hypothesis(trial.hypothesis);
        let parent_title = parent
            .map(|h| h.hypothesis.title.clone())
            .unwrap_or_default();
        let category = parent
            .map(|h| h.hypothesis.category.clone())
            .unwrap_or_default();
        let hid = view.row.next_hypothesis.max(1);
        view.row.next_hypothesis = hid + 1;
        let h = HypothesisRow {
            id: hid,
            stage: trial.stage,
            hypothesis: Hypothesis {
                title: format!("{parent_title} (retry with {})", what.join(", ")),
                rationale: diagnosis.rationale.clone(),
                category,
                assignments: assignments.clone(),
                parents: vec![trial.hypothesis],
            },
            origin: Origin::Debugger,
            status: HypothesisStatus::Active,
            call_seq: None,
        };
        let t = self.new_trial(
            view,
            hid,
            trial.stage,
            trial.seed,
            trial.attempt + 1,
            Some(trial.id),
            assignments,
        );
        Applied {
            action_text: format!("retry with {} as trial {}", what.join(", "), t.id),
            status_change: (trial.hypothesis != 0).then(|| {
                (
                    trial.hypothesis,
                    HypothesisStatus::Replaced,
                    format!("replaced by hypothesis {hid}"),
                )
            }),
            new_hypothesis: Some(h),
            new_trial: Some(t),
            escalation: None,
        }
    }

    /// One transaction: the debugger's call record, the diagnosed trial,
    /// what the action changed.
    fn record_diagnosis(
        &mut self,
        view: &mut View,
        tid: u64,
        diagnosis: &crate::strategy::Diagnosis,
        record: Option<CallRecord>,
        applied: &mut Applied,
    ) -> anyhow::Result<()> {
        let id = view.row.id;
        let trial_row = view.trials.iter().find(|t| t.id == tid).cloned().unwrap();
        let changed_h = applied
            .status_change
            .as_ref()
            .and_then(|(hid, _, _)| view.hypotheses.iter().find(|h| h.id == *hid).cloned());
        let d2 = diagnosis.clone();
        let a2 = applied.action_text.clone();
        let nh = applied.new_hypothesis.clone();
        let nt = applied.new_trial.clone();
        let sc = applied.status_change.clone();
        let escalation = applied.escalation.take();
        self.commit(view, |tx| {
            let seq = match &record {
                Some(r) => Some(self.record_call(tx, id, "debugger", r)?),
                None => None,
            };
            tx.put_trial(id, &trial_row)?;
            tx.append(
                Some(id),
                EventBody::TrialDiagnosed {
                    id: tid,
                    diagnosis: d2,
                    action: a2,
                },
            )?;
            if let (Some((hid, status, reason)), Some(h)) = (sc, changed_h) {
                tx.put_hypothesis(id, &h)?;
                tx.append(
                    Some(id),
                    EventBody::HypothesisStatus {
                        id: hid,
                        status,
                        reason,
                    },
                )?;
            }
            if let Some(mut h) = nh {
                h.call_seq = seq;
                put_new_hypothesis(tx, id, &h)?;
            }
            if let Some(t) = &nt {
                put_queued(tx, id, t)?;
            }
            if let Some(r) = escalation {
                governance::request(tx, r, (self.clock)())?;
            }
            Ok(())
        })
    }

    /// Cancels every in-flight job of a campaign and marks it cancelled.
    pub fn cancel(&mut self, id: u64) -> anyhow::Result<()> {
        let mut view = View::load(self.store, id)?;
        if view.row.state.is_terminal() {
            anyhow::bail!("campaign {id} is already {}", view.row.state.name());
        }
        let ids: Vec<u64> = view
            .trials
            .iter()
            .filter(|t| t.status.in_flight() || t.status == TrialStatus::Queued)
            .map(|t| t.id)
            .collect();
        for tid in ids {
            let t = view.trials.iter_mut().find(|t| t.id == tid).unwrap();
            if let Some(h) = &t.handle {
                let _ = self.backend.cancel(h);
            }
            let reserved = (t.reserved_cpu, t.reserved_gpu);
            t.status = if t.status == TrialStatus::Queued {
                TrialStatus::Dropped
            } else {
                TrialStatus::Cancelled
            };
            // A cancelled job used its time so far (capped at its reservation).
            let hours = t
                .launched_ms
                .map_or(0.0, |l| now_ms().saturating_sub(l) as f64 / 3_600_000.0);
            let resources = view.row.spec.job.resources;
            t.spent_cpu = (resources.cpus * hours).min(reserved.0);
            t.spent_gpu = (resources.gpus * hours).min(reserved.1);
            t.reserved_cpu = 0.0;
            t.reserved_gpu = 0.0;
            t.finished_ms = Some(now_ms());
            let row = t.clone();
            view.row.ledger.reserved_cpu = (view.row.ledger.reserved_cpu - reserved.0).max(0.0);
            view.row.ledger.reserved_gpu = (view.row.ledger.reserved_gpu - reserved.1).max(0.0);
            view.row.ledger.spent_cpu += row.spent_cpu;
            view.row.ledger.spent_gpu += row.spent_gpu;
            self.commit(&view, |tx| {
                tx.put_trial(id, &row)?;
                tx.append(
                    Some(id),
                    EventBody::TrialDropped {
                        id: tid,
                        reason: "the campaign was cancelled".into(),
                    },
                )?;
                Ok(())
            })?;
        }
        self.set_state(
            &mut view,
            CampaignState::Cancelled,
            "cancelled by the operator",
        )
    }
}

/// What a diagnosis' action changed, to record and to say.
#[derive(Default)]
struct Applied {
    action_text: String,
    new_trial: Option<TrialRow>,
    new_hypothesis: Option<HypothesisRow>,
    /// (hypothesis, new status, reason).
    status_change: Option<(u64, HypothesisStatus, String)>,
    escalation: Option<governance::NewRequest>,
}

/// What the debugger is told about a failed trial: its configuration, how
/// it ended, and its log tail without the holdout metric or host paths.
fn failure_report(
    spec: &Campaign,
    trial: &TrialRow,
    outcome: &JobOutcome,
    max_attempts: u32,
) -> FailureReport {
    // The holdout metric is never shown to strategies: drop lines of the
    // log that mention it.
    let mut tail = match &spec.objective.holdout {
        Some(h) => outcome
            .log_tail
            .lines()
            .filter(|l| !l.contains(h.as_str()))
            .collect::<Vec<_>>()
            .join("\n"),
        None => outcome.log_tail.clone(),
    };
    if let Some(reason) = &outcome.stopped_early {
        tail.push_str(&format!("\nreagent: stopped early: {reason}"));
    }
    if outcome.memory_exceeded {
        tail.push_str(
            "\nreagent: killed: out of memory (resident memory passed the job's memory limit)",
        );
    }
    if outcome.exit_code == Some(0) && trial.objective.is_none() {
        tail.push_str(&format!(
            "\nreagent: the job exited 0 but never reported `{}`",
            spec.objective.metric
        ));
    }
    FailureReport {
        trial: trial.id,
        hypothesis: trial.hypothesis,
        assignments: full_config(spec, &trial.assignments)
            .into_iter()
            .map(|(knob, value)| Assignment { knob, value })
            .collect(),
        exit_code: outcome.exit_code,
        signal: outcome.signal,
        timed_out: outcome.timed_out,
        stopped_early: outcome.stopped_early.is_some(),
        // Strategies never see where things are on this machine.
        log_tail: crate::jobs::redact_paths(&tail, Some(&spec.job.workdir)),
        attempt: trial.attempt,
        max_attempts,
        last_metrics: outcome
            .metrics
            .iter()
            .filter(|(k, _)| spec.objective.holdout.as_deref() != Some(k.as_str()))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
    }
}
