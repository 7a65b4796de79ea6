//! The improvement proposal. Every number here is computed by the host
//! from recorded trials (never taken from a strategy).

use serde::Serialize;

use super::engine::View;
use super::stats::{self, Effect, Summary};
use crate::records::campaign::{CampaignState, HypothesisStatus, Stage, TrialStatus};
use crate::strategy::{Direction, render_value};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub id: u64,
    pub campaign: String,
    pub state: String,
    pub stage: String,
    pub objective: ObjectiveOut,
    pub baseline: Option<Summary>,
    pub best: Option<BestOut>,
    pub effect: Option<Effect>,
    /// True when the effect comes from fresh-seed confirmation runs.
    pub confirmed: bool,
    pub holdout: Option<HoldoutOut>,
    pub verdict: String,
    pub trials: Counts,
    pub spent: Hours,
    pub budget: BudgetOut,
    pub phases: Vec<PhaseOut>,
    pub failures: Vec<FailureOut>,
    /// Early stopping, when the campaign has a `[stopping]` rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopping: Option<StoppingOut>,
    pub note: Option<String>,
}

/// What early stopping did: the trials it stopped, what they cost, and an
/// estimate of the CPU they did not use (each stopped trial's run time
/// short of the completed trials' median, times its CPUs).
#[derive(Debug, Clone, Serialize)]
pub struct StoppingOut {
    pub metric: String,
    pub stopped: usize,
    pub cpu_hours_spent: f64,
    pub cpu_hours_saved: f64,
    /// Median run time of the completed trials, in seconds.
    pub typical_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectiveOut {
    pub metric: String,
    pub direction: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BestOut {
    pub hypothesis: u64,
    pub title: String,
    /// knob → value, only the knobs that differ from baseline.
    pub assignments: serde_json::Map<String, serde_json::Value>,
    /// `knob: baseline → value` lines.
    pub diff: Vec<String>,
    pub mean: f64,
    pub sd: f64,
    pub n: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct HoldoutOut {
    pub metric: String,
    pub baseline_mean: Option<f64>,
    pub best_mean: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub total: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// Stopped early by the `[stopping]` rule.
    pub stopped: usize,
    pub excluded: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hours {
    pub cpu_hours: f64,
    pub gpu_hours: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BudgetOut {
    pub cpu_hours: f64,
    pub gpu_hours: f64,
    pub max_trials: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseOut {
    pub phase: String,
    pub hypotheses: usize,
    pub trials: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub promising: usize,
    pub best_effect: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureOut {
    pub trial: u64,
    pub hypothesis: u64,
    pub title: String,
    pub class: String,
    pub rationale: String,
    pub action: String,
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

pub fn build(view: &View) -> Report {
    let spec = &view.row.spec;
    let direction = spec.objective.direction;
    let eval_var = view.eval_stderr().map_or(0.0, |s| s * s);
    let winner = view.row.winner.or_else(|| view.best().map(|b| b.0));
    let (baseline_s, best_s, confirmed) = arms(view, winner);
    let effect = match (&baseline_s, &best_s) {
        (Some(b), Some(t)) => Some(stats::effect(direction, b, t, eval_var)),
        _ => None,
    };
    let best = match (winner, &best_s) {
        (Some(w), Some(s)) => best_out(view, w, s),
        _ => None,
    };
    let holdout = holdout_out(view, winner, confirmed);
    let verdict = verdict(
        view,
        best.as_ref(),
        effect.as_ref(),
        holdout.as_ref(),
        confirmed,
    );
    let metric = &spec.objective.metric;
    Report {
        id: view.row.id,
        campaign: spec.name.clone(),
        state: view.row.state.name().into(),
        stage: view.row.stage.name().into(),
        objective: ObjectiveOut {
            metric: metric.clone(),
            direction: match direction {
                Direction::Minimize => "minimize".into(),
                Direction::Maximize => "maximize".into(),
            },
        },
        baseline: baseline_s,
        best,
        effect,
        confirmed,
        holdout,
        verdict,
        trials: counts(view),
        spent: Hours {
            cpu_hours: view.row.ledger.spent_cpu,
            gpu_hours: view.row.ledger.spent_gpu,
        },
        budget: BudgetOut {
            cpu_hours: view.row.budget().cpu_hours,
            gpu_hours: view.row.budget().gpu_hours,
            max_trials: view.row.budget().max_trials,
        },
        phases: phases(view),
        failures: failures(view),
        stopping: stopping_out(view),
        note: view.row.note.clone(),
    }
}

fn stopping_out(view: &View) -> Option<StoppingOut> {
    let rule = view.row.spec.stopping.as_ref()?;
    let mut secs: Vec<f64> = view
        .trials
        .iter()
        .filter(|t| t.status == TrialStatus::Succeeded)
        .filter_map(|t| t.outcome.as_ref().map(|o| o.wall_secs))
        .collect();
    secs.sort_by(f64::total_cmp);
    let typical_secs = secs.get(secs.len() / 2).copied().unwrap_or(0.0);
    let cpus = view.row.spec.job.resources.cpus;
    let stopped: Vec<_> = view
        .trials
        .iter()
        .filter(|t| t.status == TrialStatus::Stopped)
        .collect();
    let cpu_hours_saved = stopped
        .iter()
        .map(|t| {
            let ran = match (t.launched_ms, t.finished_ms) {
                (Some(l), Some(f)) => f.saturating_sub(l) as f64 / 1000.0,
                _ => 0.0,
            };
            (typical_secs - ran).max(0.0) * cpus / 3600.0
        })
        .sum();
    Some(StoppingOut {
        metric: rule.metric.clone(),
        stopped: stopped.len(),
        cpu_hours_spent: stopped.iter().map(|t| t.spent_cpu).sum(),
        cpu_hours_saved,
        typical_secs,
    })
}

/// The baseline's and the winner's summaries, and whether they come from
/// fresh-seed confirmation runs of both (else from exploration runs).
fn arms(view: &View, winner: Option<u64>) -> (Option<Summary>, Option<Summary>, bool) {
    let confirm_values = |h: u64| view.values(h, true);
    match winner {
        Some(w) if !confirm_values(w).is_empty() && !confirm_values(0).is_empty() => (
            stats::summarize(&confirm_values(0)),
            stats::summarize(&confirm_values(w)),
            true,
        ),
        Some(w) => (
            view.baseline(),
            stats::summarize(&view.values(w, false)),
            false,
        ),
        None => (view.baseline(), None, false),
    }
}

/// The winner as the report shows it: its change from the baseline.
fn best_out(view: &View, w: u64, s: &Summary) -> Option<BestOut> {
    let spec = &view.row.spec;
    let h = view.hypotheses.iter().find(|h| h.id == w)?;
    let mut assignments = serde_json::Map::new();
    let mut diff = Vec::new();
    for a in &h.hypothesis.assignments {
        assignments.insert(a.knob.clone(), crate::strategy::value_json(&a.value));
        let base = spec
            .knob(&a.knob)
            .map(|k| render_value(&k.baseline))
            .unwrap_or_default();
        diff.push(format!("{}: {} → {}", a.knob, base, render_value(&a.value)));
    }
    Some(BestOut {
        hypothesis: w,
        title: h.hypothesis.title.clone(),
        assignments,
        diff,
        mean: s.mean,
        sd: s.sd,
        n: s.n,
    })
}

/// The holdout metric of the baseline and the winner (from the same runs
/// the effect uses): reported, never used to choose.
fn holdout_out(view: &View, winner: Option<u64>, confirmed: bool) -> Option<HoldoutOut> {
    let metric = view.row.spec.objective.holdout.as_ref()?;
    let pick = |h: u64| -> Option<f64> {
        let pool: Vec<f64> = view
            .trials
            .iter()
            .filter(|t| t.hypothesis == h && t.status == TrialStatus::Succeeded)
            .filter(|t| !confirmed || t.stage == Stage::Confirm)
            .filter_map(|t| t.holdout)
            .collect();
        mean(&pool)
    };
    Some(HoldoutOut {
        metric: metric.clone(),
        baseline_mean: pick(0),
        best_mean: winner.and_then(pick),
    })
}

/// A winner as the verdict names it: its number and its change from the
/// baseline (a strategy's title may describe the change from a parent).
fn named(b: &BestOut) -> String {
    let changes: Vec<String> = b.diff.iter().map(|d| d.replacen(": ", " ", 1)).collect();
    format!("hypothesis {} ({})", b.hypothesis, changes.join(", "))
}

/// The proposal in one paragraph.
fn verdict(
    view: &View,
    best: Option<&BestOut>,
    effect: Option<&stats::Effect>,
    holdout: Option<&HoldoutOut>,
    confirmed: bool,
) -> String {
    let metric = &view.row.spec.objective.metric;
    let direction = view.row.spec.objective.direction;
    // A campaign that did not finish makes no proposal: say how it ended
    // first, then what it had measured so far.
    let ended = match view.row.state {
        CampaignState::Finished => None,
        CampaignState::Halted => Some(format!(
            "The campaign halted in {}: {}. It makes no proposal.",
            view.row.stage.name(),
            view.row.note.as_deref().unwrap_or("no reason recorded")
        )),
        CampaignState::Cancelled => Some(format!(
            "The campaign was cancelled in {}. It makes no proposal.",
            view.row.stage.name()
        )),
        state => Some(format!(
            "The campaign is {} (stage {}): an interim report, not a proposal.",
            state.name(),
            view.row.stage.name()
        )),
    };
    let (b, e) = match (best, effect, ended) {
        (None, _, None) => {
            return format!(
                "Nothing beat the baseline on {metric}: no change improved it beyond zero. Keep the current configuration."
            );
        }
        (Some(_), None, None) => {
            return "No baseline measurement: no effect can be computed.".into();
        }
        (Some(b), Some(e), None) => (b, e),
        (None, _, Some(ended)) if view.row.state == CampaignState::Halted => return ended,
        (None, _, Some(ended)) => {
            let so_far = if view.baseline().is_none() {
                format!("The baseline has no {metric} measurement, so nothing was compared.")
            } else {
                format!("No change has beaten the baseline on {metric} so far.")
            };
            return format!("{ended} {so_far}");
        }
        (Some(_), None, Some(ended)) => {
            return format!(
                "{ended} The baseline has no {metric} measurement, so nothing was compared."
            );
        }
        (Some(b), Some(e), Some(ended)) => {
            return format!(
                "{ended} Best so far: {} changes {metric} by {:.6} (95% CI [{:.6}, {:.6}]){} — a lead to try again, not a result.",
                named(b),
                e.estimate,
                e.ci95_low,
                e.ci95_high,
                if confirmed {
                    ", with fresh seeds"
                } else {
                    ", not confirmed with fresh seeds"
                }
            );
        }
    };
    let mut v = if e.ci95_low > 0.0 {
        format!(
            "Adopt {}: it improves {metric} by {:.6} (95% CI [{:.6}, {:.6}]){}.",
            named(b),
            e.estimate,
            e.ci95_low,
            e.ci95_high,
            if confirmed {
                ", confirmed with fresh seeds"
            } else {
                ", not confirmed with fresh seeds"
            }
        )
    } else {
        format!(
            "Not a confirmed improvement: {} changes {metric} by {:.6}, but the 95% CI [{:.6}, {:.6}] includes zero.",
            named(b),
            e.estimate,
            e.ci95_low,
            e.ci95_high
        )
    };
    if let Some(h) = holdout
        && let (Some(hb), Some(hw)) = (h.baseline_mean, h.best_mean)
    {
        let gain = stats::improvement(direction, hb, hw);
        if gain <= 0.0 {
            v.push_str(&format!(
                " Warning: the gain does not hold on the holdout ({}: baseline {hb:.6}, best {hw:.6}).",
                h.metric
            ));
        } else {
            v.push_str(&format!(
                " It holds on the holdout ({}: {hb:.6} → {hw:.6}).",
                h.metric
            ));
        }
    }
    v
}

fn counts(view: &View) -> Counts {
    let launched: Vec<_> = view
        .trials
        .iter()
        .filter(|t| !matches!(t.status, TrialStatus::Queued | TrialStatus::Dropped))
        .collect();
    Counts {
        total: launched.len(),
        succeeded: launched
            .iter()
            .filter(|t| t.status == TrialStatus::Succeeded)
            .count(),
        failed: launched
            .iter()
            .filter(|t| t.status == TrialStatus::Failed)
            .count(),
        stopped: launched
            .iter()
            .filter(|t| t.status == TrialStatus::Stopped)
            .count(),
        excluded: view
            .hypotheses
            .iter()
            .filter(|h| h.status == HypothesisStatus::Excluded)
            .count(),
    }
}

fn phases(view: &View) -> Vec<PhaseOut> {
    [
        Stage::Validate,
        Stage::Combine,
        Stage::Exploit,
        Stage::Confirm,
    ]
    .iter()
    .map(|&stage| {
        let hs: Vec<_> = view
            .hypotheses
            .iter()
            .filter(|h| h.stage == stage && h.id != 0)
            .collect();
        let ts: Vec<_> = view
            .trials
            .iter()
            .filter(|t| {
                t.stage == stage && !matches!(t.status, TrialStatus::Queued | TrialStatus::Dropped)
            })
            .collect();
        // One judging for all hypotheses: judging per hypothesis was
        // O(hypotheses × trials), minutes at 100,000 trials.
        let judging = view.judging();
        let judged: Vec<_> = hs.iter().map(|h| view.judge_with(&judging, h)).collect();
        PhaseOut {
            phase: stage.name().into(),
            hypotheses: hs.len(),
            trials: ts.len(),
            succeeded: ts
                .iter()
                .filter(|t| t.status == TrialStatus::Succeeded)
                .count(),
            failed: ts
                .iter()
                .filter(|t| t.status == TrialStatus::Failed)
                .count(),
            promising: judged.iter().filter(|j| j.2).count(),
            best_effect: judged
                .iter()
                .filter_map(|j| j.1)
                .fold(None, |acc: Option<f64>, e| {
                    Some(acc.map_or(e, |a| a.max(e)))
                }),
        }
    })
    .collect()
}

fn failures(view: &View) -> Vec<FailureOut> {
    view.trials
        .iter()
        .filter(|t| t.status == TrialStatus::Failed)
        .map(|t| FailureOut {
            trial: t.id,
            hypothesis: t.hypothesis,
            title: view
                .hypotheses
                .iter()
                .find(|h| h.id == t.hypothesis)
                .map(|h| h.hypothesis.title.clone())
                .unwrap_or_default(),
            class: t.diagnosis.as_ref().map_or("unknown".into(), |d| {
                crate::strategy::failure_class_name(d.class).to_string()
            }),
            rationale: t
                .diagnosis
                .as_ref()
                .map_or(String::new(), |d| d.rationale.clone()),
            action: t.action_taken.clone().unwrap_or_default(),
        })
        .collect()
}

/// One line for the event log and the terminal.
pub fn headline(view: &View) -> String {
    build(view).verdict
}

/// The proposal as Markdown.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# Improvement proposal: {} (campaign {})\n\n",
        r.campaign, r.id
    ));
    s.push_str(&format!("**{}**\n\n", r.verdict));
    s.push_str(&format!("- State: {} (stage {})\n", r.state, r.stage));
    s.push_str(&format!(
        "- Objective: {} {}\n",
        r.objective.direction, r.objective.metric
    ));
    if let Some(b) = &r.baseline {
        s.push_str(&format!(
            "- Baseline: {:.6} ± {:.6} (sd, n = {})\n",
            b.mean, b.sd, b.n
        ));
    }
    if let Some(b) = &r.best {
        s.push_str(&format!(
            "- Best: hypothesis {} \"{}\": {:.6} ± {:.6} (sd, n = {})\n",
            b.hypothesis, b.title, b.mean, b.sd, b.n
        ));
    }
    if let Some(e) = &r.effect {
        s.push_str(&format!(
            "- Effect (positive = better): {:.6}, 95% CI [{:.6}, {:.6}]{}\n",
            e.estimate,
            e.ci95_low,
            e.ci95_high,
            if r.confirmed {
                " — fresh-seed confirmation"
            } else {
                " — from exploration runs"
            }
        ));
    }
    if let Some(h) = &r.holdout {
        s.push_str(&format!(
            "- Holdout {}: baseline {}, best {}\n",
            h.metric,
            h.baseline_mean.map_or("n/a".into(), |v| format!("{v:.6}")),
            h.best_mean.map_or("n/a".into(), |v| format!("{v:.6}"))
        ));
    }
    s.push_str(&format!(
        "- Compute: {:.3} of {} CPU-hours, {:.3} of {} GPU-hours; {} trials ({} succeeded, {} failed) of at most {}\n",
        r.spent.cpu_hours, r.budget.cpu_hours, r.spent.gpu_hours, r.budget.gpu_hours, r.trials.total, r.trials.succeeded, r.trials.failed, r.budget.max_trials
    ));
    if let Some(st) = &r.stopping {
        s.push_str(&format!(
            "- Early stopping on {}: {} trial(s) stopped, {:.3} CPU-hours spent on them, about {:.3} CPU-hours saved (each stopped trial's run time short of the completed trials' median, {:.0} s)\n",
            st.metric, st.stopped, st.cpu_hours_spent, st.cpu_hours_saved, st.typical_secs
        ));
    }
    if let Some(n) = &r.note {
        s.push_str(&format!("- Note: {n}\n"));
    }
    if let Some(b) = &r.best {
        s.push_str("\n## Config change vs baseline\n\n");
        for d in &b.diff {
            s.push_str(&format!("- `{d}`\n"));
        }
    }
    s.push_str("\n## Phases\n\n| phase | hypotheses | trials | succeeded | failed | promising | best effect |\n|---|---|---|---|---|---|---|\n");
    for p in &r.phases {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            p.phase,
            p.hypotheses,
            p.trials,
            p.succeeded,
            p.failed,
            p.promising,
            p.best_effect.map_or("–".into(), |e| format!("{e:.6}"))
        ));
    }
    if !r.failures.is_empty() {
        s.push_str("\n## Failures\n\n| trial | hypothesis | class | action | diagnosis |\n|---|---|---|---|---|\n");
        for f in &r.failures {
            s.push_str(&format!(
                "| {} | {} {} | {} | {} | {} |\n",
                f.trial,
                f.hypothesis,
                f.title.replace('|', "/"),
                f.class,
                f.action.replace('|', "/"),
                f.rationale.replace('|', "/").replace('\n', " ")
            ));
        }
    }
    s
}
