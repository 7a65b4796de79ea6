//! What a campaign learned, derived from its stored trials when it ends:
//! one insight record per change it ran (the records' storage, import and
//! serving are `crate::insights`).

use std::collections::HashMap;

use super::engine::View;
use super::stats;
use crate::insights::{InsightRecord, RECORDED, content_id, iso_utc};
use crate::records::campaign::{HypothesisStatus, Stage, TrialStatus};
use crate::records::insight::round12;
use crate::strategy::{Assignment, FailureClass};

/// The records a campaign's stored trials support: one per hypothesis
/// other than the baseline that has a succeeded or a failed trial and
/// either a measurable effect or a failure. Hypotheses never run (waiting
/// for approval, dropped, cancelled before they ran) have none. The effect
/// compares the hypothesis' confirmation runs with the baseline's when both
/// have them, else its exploration runs with the baseline's (as the
/// report does); the holdout metric is never read.
pub fn derive(view: &View, recorded_ms: u64) -> Vec<InsightRecord> {
    let spec = &view.row.spec;
    let direction = spec.objective.direction;
    let eval_var = view.eval_stderr().map_or(0.0, |s| s * s);
    // One pass over the trials (campaigns may hold 100,000 of them).
    #[derive(Default)]
    struct Arm<'a> {
        explore: Vec<f64>,
        confirm: Vec<f64>,
        succeeded: u32,
        failed: u32,
        cpu: f64,
        gpu: f64,
        last_failure: Option<(u64, FailureClass)>,
        guard: Option<&'a str>,
    }
    let mut arms: HashMap<u64, Arm> = HashMap::new();
    for t in &view.trials {
        let arm = arms.entry(t.hypothesis).or_default();
        arm.cpu += t.spent_cpu;
        arm.gpu += t.spent_gpu;
        match t.status {
            TrialStatus::Succeeded => {
                arm.succeeded += 1;
                if let Some(v) = t.objective {
                    if t.stage == Stage::Confirm {
                        arm.confirm.push(v);
                    } else {
                        arm.explore.push(v);
                    }
                }
            }
            TrialStatus::Failed => {
                arm.failed += 1;
                let class = t.failure.unwrap_or(FailureClass::Unknown);
                if arm.last_failure.is_none_or(|(id, _)| t.id > id) {
                    arm.last_failure = Some((t.id, class));
                }
            }
            _ => {}
        }
        if let Some(g) = &t.guard_violation {
            arm.guard.get_or_insert(g);
        }
    }
    let empty = Arm::default();
    let base = arms.get(&0).unwrap_or(&empty);
    let recorded = iso_utc(recorded_ms);
    let mut out = Vec::new();
    for h in &view.hypotheses {
        if h.id == 0 {
            continue;
        }
        let Some(arm) = arms.get(&h.id) else {
            continue;
        };
        if arm.succeeded == 0 && arm.failed == 0 {
            continue;
        }
        let failed_out =
            arm.failed > 0 && (arm.succeeded == 0 || h.status == HypothesisStatus::Excluded);
        let failure = if failed_out {
            arm.last_failure.map(|(_, class)| class)
        } else {
            None
        };
        let confirmed = !arm.confirm.is_empty() && !base.confirm.is_empty();
        let (treated, baseline) = if confirmed {
            (&arm.confirm, &base.confirm)
        } else {
            (&arm.explore, &base.explore)
        };
        let effect = match (stats::summarize(baseline), stats::summarize(treated)) {
            (Some(b), Some(t)) => Some(stats::effect(direction, &b, &t, eval_var)),
            _ => None,
        };
        if effect.is_none() && failure.is_none() {
            // Succeeded, but the baseline was never measured: nothing learned.
            continue;
        }
        let assignments = h.hypothesis.assignments.clone();
        if assignments.is_empty() {
            continue;
        }
        let baseline_values = assignments
            .iter()
            .filter_map(|a| {
                spec.knob(&a.knob).map(|k| Assignment {
                    knob: a.knob.clone(),
                    value: k.baseline.clone(),
                })
            })
            .collect();
        let mut record = InsightRecord {
            id: String::new(),
            campaign: spec.name.clone(),
            campaign_id: Some(view.row.id),
            origin: RECORDED.into(),
            recorded: recorded.clone(),
            tags: spec.tags.clone(),
            metric: spec.objective.metric.clone(),
            direction,
            title: h.hypothesis.title.clone(),
            phase: h.stage.phase(),
            assignments,
            baseline: baseline_values,
            effect: effect.map(|e| round12(e.estimate)),
            ci95_low: effect.map(|e| round12(e.ci95_low)),
            ci95_high: effect.map(|e| round12(e.ci95_high)),
            confirmed: confirmed && effect.is_some(),
            trials: arm.succeeded,
            failed: arm.failed,
            cost_cpu_hours: round12(arm.cpu),
            cost_gpu_hours: round12(arm.gpu),
            failure,
            guard_violation: arm.guard.map(str::to_string),
        };
        record.id = content_id(&record);
        out.push(record);
    }
    out
}
