//! The engine's read model of one campaign: its rows as stored, and the
//! statistics derived from them (the baseline, the noise, which
//! hypotheses are promising, the best so far, what each stage has left).
//! Strategies, the report and the CLI read campaigns through it.

use std::collections::HashMap;

use anyhow::Context as _;

use super::stats::{self, Summary};
use crate::records::campaign::{
    Best, CampaignRow, Estimate as TallyEstimate, HypothesisRow, HypothesisStatus, Stage, Tally,
    TrialRow, TrialStatus,
};
use crate::spec::Campaign;
use crate::store::Store;
use crate::strategy::data::StaticData;
use crate::strategy::{Context, Estimate, HypothesisSummary, Objective, TrialSummary};

/// Trial allotments per stage, from `max_trials` and the phase split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allotment {
    pub baseline: u32,
    pub validate: u32,
    pub combine: u32,
    pub exploit: u32,
    /// One more run each for the best few candidates before the winner is
    /// chosen (see `RACE`).
    pub race: u32,
    pub confirm: u32,
}

/// Trials spent racing the top candidates when exploration has at least
/// `RACE_FROM` trials: the best few single results are each run once more
/// (their second seed), so the winner is chosen on two runs, not on one
/// lucky draw.
pub const RACE: u32 = 3;
pub const RACE_FROM: u32 = 30;

pub fn allotment(spec: &Campaign) -> Allotment {
    let b = &spec.budget;
    let total = b.max_trials;
    let baseline = b.baseline_replicates;
    let confirm = if total >= baseline + 2 * b.confirm_replicates + 3 {
        2 * b.confirm_replicates
    } else {
        0
    };
    let mut explore = total.saturating_sub(baseline + confirm);
    let race = if confirm > 0 && explore >= RACE_FROM {
        RACE
    } else {
        0
    };
    explore -= race;
    let validate = ((explore as f64 * b.phases.validate).floor() as u32)
        .max(1)
        .min(explore);
    let combine = ((explore as f64 * b.phases.combine).floor() as u32).min(explore - validate);
    let exploit = explore - validate - combine;
    Allotment {
        baseline,
        validate,
        combine,
        exploit,
        race,
        confirm,
    }
}

/// Per-hypothesis objective values and what `judge` compares them with.
pub struct Judging {
    values: HashMap<u64, Vec<f64>>,
    guarded: std::collections::HashSet<u64>,
    pub(crate) baseline: Option<Summary>,
    /// The per-run noise σ the promising threshold uses.
    pub(crate) sigma: f64,
}

/// Host-side view of a campaign's rows, with the statistics derived from them.
pub struct View {
    pub row: CampaignRow,
    pub hypotheses: Vec<HypothesisRow>,
    pub trials: Vec<TrialRow>,
}

impl View {
    pub fn load(store: &Store, id: u64) -> anyhow::Result<View> {
        let row = store
            .campaign(id)?
            .with_context(|| format!("no campaign {id} in this workspace"))?;
        Ok(View {
            row,
            hypotheses: store.hypotheses(id)?,
            trials: store.trials(id)?,
        })
    }

    pub(crate) fn spec(&self) -> &Campaign {
        &self.row.spec
    }

    /// Objective values of succeeded trials of `hypothesis` in `stages`.
    pub fn values(&self, hypothesis: u64, confirm: bool) -> Vec<f64> {
        self.trials
            .iter()
            .filter(|t| {
                t.hypothesis == hypothesis
                    && t.status == TrialStatus::Succeeded
                    && (t.stage == Stage::Confirm) == confirm
            })
            .filter_map(|t| t.objective)
            .collect()
    }

    pub fn baseline(&self) -> Option<Summary> {
        stats::summarize(&self.values(0, false))
    }

    /// Mean evaluation-set standard error reported over succeeded trials.
    pub fn eval_stderr(&self) -> Option<f64> {
        let v: Vec<f64> = self
            .trials
            .iter()
            .filter(|t| t.status == TrialStatus::Succeeded)
            .filter_map(|t| t.objective_stderr)
            .filter(|x| x.is_finite() && *x >= 0.0)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    pub fn sigma(&self) -> Option<f64> {
        let b = self.baseline()?;
        Some(stats::noise_sigma(b.sd, self.eval_stderr()))
    }

    /// What judging hypotheses needs, computed in one pass over the trials.
    pub fn judging(&self) -> Judging {
        let mut values: HashMap<u64, Vec<f64>> = HashMap::new();
        let mut guarded = std::collections::HashSet::new();
        for t in &self.trials {
            if t.guard_violation.is_some() {
                guarded.insert(t.hypothesis);
            }
            if t.status == TrialStatus::Succeeded
                && t.stage != Stage::Confirm
                && let Some(v) = t.objective
            {
                values.entry(t.hypothesis).or_default().push(v);
            }
        }
        let baseline = values.get(&0).and_then(|v| stats::summarize(v));
        let sigma = baseline
            .map(|b| stats::noise_sigma(b.sd, self.eval_stderr()))
            .unwrap_or(0.0);
        Judging {
            values,
            guarded,
            baseline,
            sigma,
        }
    }

    /// (summary, effect, promising) for one hypothesis, given `judging()`
    /// (compute it once for many hypotheses: it is a pass over all trials).
    pub fn judge_with(
        &self,
        j: &Judging,
        h: &HypothesisRow,
    ) -> (Option<Summary>, Option<f64>, bool) {
        let s = j.values.get(&h.id).and_then(|v| stats::summarize(v));
        let (Some(s), Some(b)) = (s, j.baseline) else {
            return (s, None, false);
        };
        let effect = stats::improvement(self.spec().objective.direction, b.mean, s.mean);
        let promising = h.id != 0
            && !j.guarded.contains(&h.id)
            && h.status == HypothesisStatus::Active
            && effect > 0.0
            && effect > stats::threshold(j.sigma, s.n, b.n);
        (Some(s), Some(effect), promising)
    }

    pub(crate) fn used(&self, stage: Stage) -> u32 {
        self.trials
            .iter()
            .filter(|t| t.stage == stage && t.hypothesis != 0 && t.status != TrialStatus::Dropped)
            .count() as u32
    }

    /// Trials the stage may still queue (its allotment plus what earlier
    /// stages left unspent).
    pub fn left(&self, stage: Stage) -> u32 {
        let a = allotment(self.spec());
        let (cap, used) = match stage {
            Stage::Validate => (a.validate, self.used(Stage::Validate)),
            Stage::Combine => (
                a.validate + a.combine,
                self.used(Stage::Validate) + self.used(Stage::Combine),
            ),
            Stage::Exploit => (
                a.validate + a.combine + a.exploit,
                self.used(Stage::Validate) + self.used(Stage::Combine) + self.used(Stage::Exploit),
            ),
            _ => (0, 0),
        };
        cap.saturating_sub(used)
    }

    pub(crate) fn count(&self, stage: Stage, pred: impl Fn(TrialStatus) -> bool) -> usize {
        self.trials
            .iter()
            .filter(|t| t.stage == stage && pred(t.status))
            .count()
    }

    pub fn in_flight(&self) -> usize {
        self.trials.iter().filter(|t| t.status.in_flight()).count()
    }

    pub(crate) fn hypothesis(&self, id: u64) -> Option<&HypothesisRow> {
        self.hypotheses.iter().find(|h| h.id == id)
    }

    /// A hypothesis as progress lines show it: `baseline`, or `hN` and its
    /// title (trials are `tN`, so the two numbers cannot be mixed up).
    pub(crate) fn labelled_title(&self, id: u64) -> String {
        match (id, self.hypothesis(id)) {
            (0, _) => "baseline".into(),
            (_, Some(h)) => format!("h{id} {}", h.hypothesis.title),
            (_, None) => format!("h{id}"),
        }
    }

    /// The data strategies may read: trials and hypothesis summaries. The
    /// holdout metric is not part of it.
    pub fn strategy_data(&self) -> StaticData {
        let judging = self.judging();
        let trials = self
            .trials
            .iter()
            .filter(|t| t.status != TrialStatus::Queued && t.status != TrialStatus::Dropped)
            .map(|t| TrialSummary {
                id: t.id,
                hypothesis: t.hypothesis,
                phase: t.stage.phase(),
                assignments: t.assignments.clone(),
                seed: t.seed,
                status: match t.status {
                    TrialStatus::Queued | TrialStatus::Launching => {
                        crate::strategy::TrialStatus::Pending
                    }
                    TrialStatus::Running => crate::strategy::TrialStatus::Running,
                    TrialStatus::Succeeded => crate::strategy::TrialStatus::Succeeded,
                    TrialStatus::Failed => crate::strategy::TrialStatus::Failed,
                    TrialStatus::Dropped => crate::strategy::TrialStatus::Excluded,
                    // A stopped trial reads as cancelled, its objective the
                    // best intermediate value it reached (a lower-fidelity
                    // result).
                    TrialStatus::Cancelled | TrialStatus::Stopped => {
                        crate::strategy::TrialStatus::Cancelled
                    }
                },
                objective: t.objective,
                objective_stderr: t.objective_stderr,
                failure: t.failure,
            })
            .collect();
        let hypotheses = self
            .hypotheses
            .iter()
            .map(|h| {
                let (s, effect, promising) = self.judge_with(&judging, h);
                HypothesisSummary {
                    id: h.id,
                    title: h.hypothesis.title.clone(),
                    category: h.hypothesis.category.clone(),
                    phase: h.stage.phase(),
                    assignments: h.hypothesis.assignments.clone(),
                    parents: h.hypothesis.parents.clone(),
                    outcome: s.map(|s| Estimate {
                        mean: s.mean,
                        sd: s.sd,
                        n: s.n,
                    }),
                    effect,
                    promising,
                    trials: self.trials.iter().filter(|t| t.hypothesis == h.id).count() as u32,
                    failed: self
                        .trials
                        .iter()
                        .filter(|t| t.hypothesis == h.id && t.status == TrialStatus::Failed)
                        .count() as u32,
                }
            })
            .collect();
        StaticData {
            trials,
            hypotheses,
            curves: Vec::new(),
            insights: Vec::new(),
            out_of_space_requests: true,
        }
    }

    /// The hypotheses `best` chooses among, with their mean: active,
    /// not baseline, within the guards, and beating the baseline.
    pub fn candidates(&self) -> Vec<(u64, f64)> {
        let judging = self.judging();
        self.hypotheses
            .iter()
            .filter(|h| h.id != 0 && h.status == HypothesisStatus::Active)
            .filter(|h| !judging.guarded.contains(&h.id))
            .filter_map(|h| match self.judge_with(&judging, h) {
                (Some(s), Some(effect), _) if effect > 0.0 => Some((h.id, s.mean)),
                _ => None,
            })
            .collect()
    }

    /// The best non-baseline hypothesis that beats the baseline, if any.
    /// What `status` shows of the trials (see `records::campaign::Tally`).
    pub fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for trial in &self.trials {
            let count = match trial.status {
                TrialStatus::Queued => &mut t.queued,
                TrialStatus::Launching | TrialStatus::Running => &mut t.running,
                TrialStatus::Succeeded => &mut t.succeeded,
                TrialStatus::Failed => &mut t.failed,
                TrialStatus::Stopped => &mut t.stopped,
                _ => continue,
            };
            *count += 1;
        }
        let estimate = |s: Summary| TallyEstimate {
            mean: s.mean,
            sd: s.sd,
            n: s.n,
        };
        t.baseline = self.baseline().map(estimate);
        t.best = self.best().map(|(h, s, e)| Best {
            hypothesis: h,
            mean: s.mean,
            n: s.n,
            improvement: e,
        });
        t
    }

    pub fn best(&self) -> Option<(u64, Summary, f64)> {
        let judging = self.judging();
        let direction = self.spec().objective.direction;
        let mut best: Option<(u64, Summary, f64)> = None;
        for h in &self.hypotheses {
            if h.id == 0 || h.status != HypothesisStatus::Active {
                continue;
            }
            if judging.guarded.contains(&h.id) {
                continue;
            }
            let (Some(s), Some(effect), _) = self.judge_with(&judging, h) else {
                continue;
            };
            if effect <= 0.0 {
                continue;
            }
            let better = match &best {
                None => true,
                Some((_, b, _)) => stats::improvement(direction, b.mean, s.mean) > 0.0,
            };
            if better {
                best = Some((h.id, s, effect));
            }
        }
        best
    }
}

impl View {
    pub fn context(&self, stage: Stage, round: u32, left: u32) -> Context {
        let view = self;
        let spec = &view.row.spec;
        Context {
            campaign: spec.name.clone(),
            tags: spec.tags.clone(),
            objective: Objective {
                metric: spec.objective.metric.clone(),
                direction: spec.objective.direction,
            },
            knobs: spec.knobs.clone(),
            phase: stage.phase(),
            baseline: view.baseline().map(|s| Estimate {
                mean: s.mean,
                sd: s.sd,
                n: s.n,
            }),
            noise: view.sigma(),
            // The campaign's salt is 0 unless its file sets [strategies] seed.
            seed: mix(
                view.row.id ^ spec.strategies.seed.wrapping_mul(0x9E37_79B9),
                u64::from(round) << 8 | stage as u64,
            ),
            round,
            trials_done: view
                .trials
                .iter()
                .filter(|t| matches!(t.status, TrialStatus::Succeeded | TrialStatus::Failed))
                .count() as u32,
            trials_left: left,
        }
    }
}

/// Mixes two numbers into a well-spread seed (SplitMix64's finalizer).
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_add(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
