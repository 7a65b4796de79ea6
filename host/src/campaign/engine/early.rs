//! Early stopping: a running trial that the campaign's `[stopping]` rule
//! finds losing is cancelled and recorded as stopped, with the inputs of
//! the decision in the audit log.

use super::*;
use crate::campaign::stopping::{self, Verdict};

/// The completed trials' curves of the stopping metric, and their median
/// run time, loaded once per pass.
pub(super) struct References {
    curves: Vec<(u64, Vec<(u32, f64)>)>,
    typical_secs: f64,
}

impl Engine<'_> {
    pub(super) fn references(&self, view: &View, metric: &str) -> anyhow::Result<References> {
        let mut curves = Vec::new();
        let mut secs = Vec::new();
        for t in view
            .trials
            .iter()
            .filter(|t| t.status == TrialStatus::Succeeded)
        {
            if let Some(c) = self.store.curves(view.row.id, t.id)?.remove(metric) {
                curves.push((t.id, c));
            }
            if let Some(o) = &t.outcome {
                secs.push(o.wall_secs);
            }
        }
        secs.sort_by(f64::total_cmp);
        let typical_secs = secs.get(secs.len() / 2).copied().unwrap_or(0.0);
        Ok(References {
            curves,
            typical_secs,
        })
    }

    /// Applies the stopping rule to running trial `tid`; true if stopped.
    pub(super) fn consider_stopping(
        &mut self,
        view: &mut View,
        tid: u64,
        handle: &crate::jobs::JobHandle,
        refs: &References,
    ) -> anyhow::Result<bool> {
        let spec = view.row.spec.clone();
        let Some(rule) = &spec.stopping else {
            return Ok(false);
        };
        let Some(mut curves) = self.backend.progress(handle)? else {
            return Ok(false);
        };
        let Some(curve) = curves.remove(&rule.metric) else {
            return Ok(false);
        };
        let Some(verdict) = stopping::judge(rule, spec.objective.direction, &curve, &refs.curves)
        else {
            return Ok(false);
        };
        if let Err(e) = self.backend.cancel(handle) {
            self.say(Progress::Note {
                campaign: view.row.id,
                text: format!("trial {tid} is losing but could not be stopped: {e:#}"),
            });
            return Ok(false);
        }
        self.record_stop(view, tid, &rule.metric, verdict, refs, curves, curve)?;
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    fn record_stop(
        &mut self,
        view: &mut View,
        tid: u64,
        metric: &str,
        v: Verdict,
        refs: &References,
        mut curves: crate::jobs::Curves,
        curve: Vec<(u32, f64)>,
    ) -> anyhow::Result<()> {
        let id = view.row.id;
        let spec = view.row.spec.clone();
        let now = now_ms();
        let launched = view
            .trials
            .iter()
            .find(|t| t.id == tid)
            .and_then(|t| t.launched_ms);
        let ran_secs = launched.map_or(0.0, |l| now.saturating_sub(l) as f64 / 1000.0);
        super::settle::settle_spend(view, tid, ran_secs / 3600.0);
        let t = view.trials.iter_mut().find(|t| t.id == tid).unwrap();
        t.status = TrialStatus::Stopped;
        // A lower-fidelity result: the best it reached before the stop, as
        // its objective only when the stopping metric is the objective.
        t.objective = (metric == spec.objective.metric).then_some(v.value);
        t.finished_ms = Some(now);
        t.action_taken = Some(format!(
            "stopped at step {}: best {metric} {} so far vs the median {} of {} completed trials at that step",
            v.step,
            v.value,
            v.median,
            v.references.len()
        ));
        let row = t.clone();
        curves.insert(metric.to_string(), curve);
        curves
            .iter_mut()
            .for_each(|(_, c)| c.retain(|(_, x)| x.is_finite()));
        let text = format!(
            "trial {tid} stopped at step {}: {metric} {} so far, the median of {} completed trials there is {}",
            v.step,
            v.value,
            v.references.len(),
            v.median
        );
        self.commit(view, |tx| {
            tx.put_trial(id, &row)?;
            tx.put_curves(id, tid, &curves)?;
            tx.append(
                Some(id),
                EventBody::TrialStopped {
                    id: tid,
                    metric: metric.to_string(),
                    step: v.step,
                    value: v.value,
                    references: v.references.clone(),
                    median: v.median,
                    ran_secs,
                    typical_secs: refs.typical_secs,
                },
            )?;
            Ok(())
        })?;
        self.say(Progress::Note { campaign: id, text });
        Ok(())
    }
}
