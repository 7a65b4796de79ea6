//! The phase machine. One `advance` is one pass over a campaign: reconcile
//! jobs with the backend, settle what finished (diagnosing failures with
//! the debugger strategy), move through the stages, ask the generator for
//! hypotheses when a stage needs them, and launch what the budget allows.
//!
//! Every state change is one store transaction; a launch is journaled
//! (`Launching`, with its idempotency key and reservation) before it is
//! submitted, so a crash at any point is reconciled by key on the next pass.

mod guardrails;
mod llm;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Context as _;

use super::stats::{self, Summary};
use crate::governance;
use crate::jobs::{Backend, JobOutcome, JobSpec, JobState, WakeCommand};
use crate::records::campaign::{
    CampaignRow, CampaignState, EventBody, HypothesisRow, HypothesisStatus, Origin, Stage,
    TrialRow, TrialStatus,
};
use crate::sandbox::{Sandbox, Strategy};
use crate::spec::{self, Campaign};
use crate::store::{Store, Tx, now_ms};
use crate::strategy::data::StaticData;
use crate::strategy::record::CallRecord;
use crate::strategy::{
    Action, Assignment, CallInput, CallOutput, Context, Estimate, FailureClass, FailureReport,
    Hypothesis, HypothesisSummary, Objective, Phase, StrategySource, TrialSummary, Value,
    render_value, validate,
};
use sha2::Digest as _;

/// The seed every single-run trial uses: hypotheses share it with the first
/// baseline replicate (common random numbers make comparisons sharper).
const FIRST_SEED: u64 = 1;
/// Confirmation runs use fresh seeds from here.
const CONFIRM_SEED: u64 = 1001;
/// Strategy failures before the campaign halts.
const MAX_STRIKES: u32 = 3;

/// What the engine tells the terminal about.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Stage {
        campaign: u64,
        stage: Stage,
        reason: String,
    },
    Proposed {
        campaign: u64,
        count: usize,
        stage: Stage,
    },
    Launched {
        campaign: u64,
        trial: u64,
        title: String,
    },
    Finished {
        campaign: u64,
        trial: u64,
        title: String,
        objective: Option<f64>,
        status: TrialStatus,
    },
    Diagnosed {
        campaign: u64,
        trial: u64,
        class: FailureClass,
        action: String,
    },
    Note {
        campaign: u64,
        text: String,
    },
    /// A one-line summary after a pass that changed something.
    Summary {
        campaign: u64,
        text: String,
    },
    Done {
        campaign: u64,
        state: CampaignState,
        summary: String,
    },
}

/// The result of one pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pass {
    pub state: CampaignState,
    pub in_flight: usize,
    pub changed: bool,
}

pub struct Engine<'a> {
    pub store: &'a Store,
    pub sandbox: &'a Sandbox,
    pub backend: &'a dyn Backend,
    pub wake: Option<WakeCommand>,
    progress: Box<dyn FnMut(Progress) + 'a>,
    strategies: LoadedStrategies,
    /// Campaign views kept across passes, each valid while the store's head
    /// is the seq it was taken at (any commit by anyone moves the head).
    views: CachedViews,
    /// Submissions recorded in memory, written with the next commit.
    submitted: std::cell::RefCell<Vec<(u64, TrialRow, crate::jobs::JobHandle)>>,
    /// Now, in Unix milliseconds, for approval expiry (tests move it).
    clock: Box<dyn Fn() -> u64 + 'a>,
}

/// Strategies loaded by source, reused across passes.
pub type LoadedStrategies = HashMap<String, Arc<Strategy>>;
/// Campaign id → (store head seq when taken, view).
pub type CachedViews = HashMap<u64, (u64, View)>;

/// The full configuration of a trial: baseline overridden by `changes`.
pub fn full_config(spec: &Campaign, changes: &[Assignment]) -> Vec<(String, Value)> {
    spec.knobs
        .iter()
        .map(|k| {
            let v = changes
                .iter()
                .find(|a| a.knob == k.name)
                .map_or_else(|| k.baseline.clone(), |a| a.value.clone());
            (k.name.clone(), v)
        })
        .collect()
}

/// Substitutes `{knob}`, `{seed}` and `{trial}` in one argument.
pub fn render_arg(arg: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut name = String::new();
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                    name.push(c);
                }
                out.push_str(values.get(&name).map_or("", String::as_str));
            }
            c => out.push(c),
        }
    }
    out
}

fn phase_of(stage: Stage) -> Phase {
    match stage {
        Stage::Combine => Phase::Combine,
        Stage::Exploit | Stage::Confirm | Stage::Done => Phase::Exploit,
        Stage::Plan | Stage::Validate => Phase::Validate,
    }
}

fn mix(a: u64, b: u64) -> u64 {
    let mut z = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_add(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Stores a newly queued trial with its event.
fn put_queued(tx: &mut Tx, campaign: u64, t: &TrialRow) -> anyhow::Result<()> {
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

/// Stores a new hypothesis with its event.
/// Why a hypothesis may not run, if one of its values would be pasted into
/// shell or interpreter code (`in_code`: [`Campaign::knobs_in_code`]) and
/// is not inert there.
fn code_injection(in_code: &[String], h: &Hypothesis) -> Option<String> {
    h.assignments.iter().find_map(|a| match &a.value {
        Value::Choice(v) if in_code.contains(&a.knob) && !spec::inert_in_code(v) => {
            Some(format!(
                "refused: the value of `{}` ({} bytes, sha256 {}) would be pasted into shell or interpreter code in the job command, and it holds characters beyond letters, digits and ._+-=,:/@%",
                a.knob,
                v.len(),
                &governance::payload_hash(&serde_json::Value::String(v.clone()))[..16]
            ))
        }
        _ => None,
    })
}

fn put_new_hypothesis(tx: &mut Tx, campaign: u64, h: &HypothesisRow) -> anyhow::Result<()> {
    tx.append(
        Some(campaign),
        EventBody::HypothesisAdded {
            id: h.id,
            stage: h.stage,
            origin: h.origin,
            title: h.hypothesis.title.clone(),
            assignments: h.hypothesis.assignments.clone(),
            parents: h.hypothesis.parents.clone(),
        },
    )?;
    tx.put_hypothesis(campaign, h)
}

/// Trial allotments per stage, from `max_trials` and the phase split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allotment {
    pub baseline: u32,
    pub validate: u32,
    pub combine: u32,
    pub exploit: u32,
    pub confirm: u32,
}

pub fn allotment(spec: &Campaign) -> Allotment {
    let b = &spec.budget;
    let total = b.max_trials;
    let baseline = b.baseline_replicates;
    let confirm = if total >= baseline + 2 * b.confirm_replicates + 3 {
        2 * b.confirm_replicates
    } else {
        0
    };
    let explore = total.saturating_sub(baseline + confirm);
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
        confirm,
    }
}

/// Per-hypothesis objective values and what `judge` compares them with.
pub struct Judging {
    values: HashMap<u64, Vec<f64>>,
    guarded: std::collections::HashSet<u64>,
    baseline: Option<Summary>,
    sigma: f64,
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

    fn spec(&self) -> &Campaign {
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

    fn used(&self, stage: Stage) -> u32 {
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

    fn count(&self, stage: Stage, pred: impl Fn(TrialStatus) -> bool) -> usize {
        self.trials
            .iter()
            .filter(|t| t.stage == stage && pred(t.status))
            .count()
    }

    pub fn in_flight(&self) -> usize {
        self.trials.iter().filter(|t| t.status.in_flight()).count()
    }

    fn hypothesis(&self, id: u64) -> Option<&HypothesisRow> {
        self.hypotheses.iter().find(|h| h.id == id)
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
                phase: phase_of(t.stage),
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
                    TrialStatus::Cancelled => crate::strategy::TrialStatus::Cancelled,
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
                    phase: phase_of(h.stage),
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

    /// The best non-baseline hypothesis that beats the baseline, if any.
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

impl<'a> Engine<'a> {
    pub fn new(
        store: &'a Store,
        sandbox: &'a Sandbox,
        backend: &'a dyn Backend,
        wake: Option<WakeCommand>,
        progress: impl FnMut(Progress) + 'a,
    ) -> Self {
        Engine {
            store,
            sandbox,
            backend,
            wake,
            progress: Box::new(progress),
            strategies: HashMap::new(),
            views: HashMap::new(),
            submitted: std::cell::RefCell::new(Vec::new()),
            clock: Box::new(now_ms),
        }
    }

    /// Uses `clock` for "now" when deciding which requests have expired.
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + 'a) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Reuses strategies loaded by an earlier engine (a driver keeps them
    /// across passes; loading from the compile cache still costs ~1 ms).
    pub fn with_strategies(mut self, strategies: LoadedStrategies) -> Self {
        self.strategies = strategies;
        self
    }

    /// Reuses campaign views from an earlier engine (see `views`).
    pub fn with_views(mut self, views: CachedViews) -> Self {
        self.views = views;
        self
    }

    /// Takes the strategies and views, to hand to the next engine.
    pub fn into_parts(self) -> (LoadedStrategies, CachedViews) {
        (self.strategies, self.views)
    }

    /// The campaign's view: the cached one if nothing was committed since,
    /// else read from the store.
    fn view(&mut self, id: u64) -> anyhow::Result<View> {
        let head = self.store.head()?.0;
        match self.views.remove(&id) {
            Some((at, view)) if at == head => Ok(view),
            _ => View::load(self.store, id),
        }
    }

    fn say(&mut self, p: Progress) {
        (self.progress)(p);
    }

    fn strategy(
        &mut self,
        source: &StrategySource,
        spec: &Campaign,
    ) -> anyhow::Result<Arc<Strategy>> {
        // Grants are part of what was loaded: the same component under other
        // grants is another strategy.
        let key = format!("{source}|{}", spec.strategies.grants.names().join(","));
        if let Some(s) = self.strategies.get(&key) {
            return Ok(Arc::clone(s));
        }
        let s = Arc::new(self.sandbox.load(source, &spec.strategies.grants)?);
        self.strategies.insert(key, Arc::clone(&s));
        Ok(s)
    }

    /// Drives one campaign as far as it can go without waiting.
    pub fn advance(&mut self, id: u64) -> anyhow::Result<Pass> {
        // On error the view is not kept: it may hold uncommitted changes.
        let mut view = self.view(id)?;
        let pass = self.advance_view(&mut view)?;
        let head = self.store.head()?.0;
        self.views.insert(id, (head, view));
        Ok(pass)
    }

    fn advance_view(&mut self, view: &mut View) -> anyhow::Result<Pass> {
        let id = view.row.id;
        let mut changed = false;
        if !view.row.state.is_active() {
            return Ok(Pass {
                state: view.row.state,
                in_flight: view.in_flight(),
                changed,
            });
        }
        changed |= self.reconcile(view)?;
        changed |= self.govern(view)?;
        if !view.row.state.is_active() {
            self.flush(view)?;
            return Ok(Pass {
                state: view.row.state,
                in_flight: view.in_flight(),
                changed,
            });
        }
        if view.row.paused {
            // Paused: results are still recorded, nothing new starts.
            self.flush(view)?;
            return Ok(Pass {
                state: view.row.state,
                in_flight: view.in_flight(),
                changed,
            });
        }
        // A bounded number of rounds: each either changes something or stops.
        for _ in 0..64 {
            let step = self.step(view)?;
            changed |= step;
            if !step || view.row.state.is_terminal() {
                break;
            }
        }
        self.flush(view)?;
        if changed && view.row.state.is_active() {
            let text = summary_line(view);
            self.say(Progress::Summary { campaign: id, text });
        }
        Ok(Pass {
            state: view.row.state,
            in_flight: view.in_flight(),
            changed,
        })
    }

    /// Launching trials are found or submitted; running ones are polled.
    fn reconcile(&mut self, view: &mut View) -> anyhow::Result<bool> {
        let mut changed = false;
        let ids: Vec<u64> = view
            .trials
            .iter()
            .filter(|t| t.status.in_flight())
            .map(|t| t.id)
            .collect();
        for tid in ids {
            let trial = view.trials.iter().find(|t| t.id == tid).cloned().unwrap();
            if trial.status == TrialStatus::Launching {
                // Journaled but maybe never submitted (or submitted and not
                // recorded): the key tells.
                match self.backend.find(&trial.key)? {
                    Some(handle) => self.mark_submitted(view, tid, handle)?,
                    None => self.submit(view, tid)?,
                }
                changed = true;
                continue;
            }
            let Some(handle) = trial.handle.clone() else {
                continue;
            };
            match self.backend.status(&handle)? {
                JobState::Pending | JobState::Running => {}
                JobState::Finished(outcome) => {
                    self.finish(view, tid, outcome)?;
                    changed = true;
                }
                JobState::Lost(why) => {
                    let outcome = JobOutcome {
                        log_tail: format!("reagent: the job was lost: {why}"),
                        ..JobOutcome::default()
                    };
                    self.finish(view, tid, outcome)?;
                    changed = true;
                }
            }
        }
        Ok(changed)
    }

    fn commit(
        &self,
        view: &View,
        f: impl FnOnce(&mut Tx) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let pending = std::mem::take(&mut *self.submitted.borrow_mut());
        self.store.write(|tx| {
            // Submissions recorded since the last commit go first, so any
            // later change to the same trial in `f` wins.
            for (campaign, row, handle) in pending {
                tx.put_trial(campaign, &row)?;
                tx.append(
                    Some(campaign),
                    EventBody::TrialSubmitted { id: row.id, handle },
                )?;
            }
            f(tx)?;
            tx.put_campaign(&view.row)?;
            Ok(())
        })
    }

    /// Commits recorded submissions not yet written.
    fn flush(&self, view: &View) -> anyhow::Result<()> {
        if self.submitted.borrow().is_empty() {
            return Ok(());
        }
        self.commit(view, |_| Ok(()))
    }

    fn set_state(
        &mut self,
        view: &mut View,
        to: CampaignState,
        reason: &str,
    ) -> anyhow::Result<()> {
        let from = view.row.state;
        if from == to {
            return Ok(());
        }
        view.row.state = to;
        // What the campaign learned is recorded with its end (halted or
        // cancelled here; finished in `finish_campaign`).
        let mut insights = Vec::new();
        if to.is_terminal() {
            let now = now_ms();
            view.row.finished_ms = Some(now);
            insights = super::learned::derive(view, now);
        }
        let id = view.row.id;
        let reason = reason.to_string();
        self.commit(view, |tx| {
            tx.append(Some(id), EventBody::StateChanged { from, to, reason })?;
            if to.is_terminal() {
                self.close_requests(tx, id, &format!("the campaign is {}", to.name()))?;
                crate::insights::record(tx, id, &view.row.spec.name, &insights)?;
            }
            Ok(())
        })
    }

    /// Marks the campaign hibernating when jobs are in flight (the process
    /// driving it is about to exit).
    pub fn hibernate(&mut self, id: u64) -> anyhow::Result<()> {
        let mut view = View::load(self.store, id)?;
        if view.row.state == CampaignState::Running && view.in_flight() > 0 {
            self.set_state(
                &mut view,
                CampaignState::Hibernating,
                "waiting for jobs; no host process",
            )?;
        }
        Ok(())
    }

    /// Marks a hibernating campaign running again.
    pub fn resume_running(&mut self, id: u64) -> anyhow::Result<()> {
        let mut view = View::load(self.store, id)?;
        if view.row.state == CampaignState::Hibernating {
            self.set_state(&mut view, CampaignState::Running, "woken")?;
        }
        Ok(())
    }

    fn stage_to(&mut self, view: &mut View, stage: Stage, reason: String) -> anyhow::Result<()> {
        view.row.stage = stage;
        let id = view.row.id;
        let r = reason.clone();
        self.commit(view, |tx| {
            tx.append(Some(id), EventBody::StageStarted { stage, reason: r })?;
            Ok(())
        })?;
        self.say(Progress::Stage {
            campaign: id,
            stage,
            reason,
        });
        Ok(())
    }

    fn cpu_left(&self, view: &View) -> (f64, f64) {
        let b = &view.row.budget();
        let l = &view.row.ledger;
        (
            b.cpu_hours - l.reserved_cpu - l.spent_cpu,
            b.gpu_hours - l.reserved_gpu - l.spent_gpu,
        )
    }

    /// Whether one more trial fits the budget, holding back `hold` trials'
    /// worth of reservation (for confirmation).
    fn affordable(&self, view: &View, hold: u32) -> bool {
        let spec = &view.row.spec;
        let (cpu_left, gpu_left) = self.cpu_left(view);
        let (rc, rg) = (spec.cpu_reservation(), spec.gpu_reservation());
        let eps = 1e-9;
        // A budget of 0 CPU-hours means CPU time is not budgeted (a
        // GPU-only budget); the file must budget at least one of the two.
        let budget = view.row.budget();
        let cpu_ok = budget.cpu_hours <= 0.0 || rc * (1 + hold) as f64 <= cpu_left + eps;
        let gpu_ok = rg <= 0.0 || rg * (1 + hold) as f64 <= gpu_left + eps;
        // Trials held for confirmation count against max_trials too.
        let trials_ok = view.row.ledger.launched + hold < budget.max_trials;
        cpu_ok && gpu_ok && trials_ok
    }

    /// Confirmation runs to keep budget for while exploring: all of them
    /// when the budget can cover the baseline, confirmation and a little
    /// exploration; none otherwise (exploration matters more, and the
    /// report then says the result is unconfirmed).
    fn confirm_hold(&self, view: &View) -> u32 {
        let spec = &view.row.spec;
        let a = allotment(spec);
        let needed = (a.baseline + a.confirm + 2) as f64;
        let budget = view.row.budget();
        let cpu_fits =
            budget.cpu_hours <= 0.0 || spec.cpu_reservation() * needed <= budget.cpu_hours + 1e-9;
        let gpu_fits = spec.gpu_reservation() <= 0.0
            || spec.gpu_reservation() * needed <= budget.gpu_hours + 1e-9;
        if cpu_fits && gpu_fits { a.confirm } else { 0 }
    }

    fn past_deadline(&self, view: &View) -> bool {
        let start = view
            .row
            .approved
            .as_ref()
            .map(|a| a.at_ms)
            .or(view.row.started_ms);
        match (view.row.spec.budget.deadline, start) {
            (Some(d), Some(start)) => now_ms() > start + d.as_millis() as u64,
            _ => false,
        }
    }

    /// One step of the stage machine; true if anything changed.
    fn step(&mut self, view: &mut View) -> anyhow::Result<bool> {
        let id = view.row.id;
        let a = allotment(&view.row.spec);
        match view.row.stage {
            Stage::Plan => {
                view.row.started_ms.get_or_insert(now_ms());
                for r in 0..a.baseline {
                    self.queue_trial(view, 0, Stage::Validate, FIRST_SEED + r as u64, 1, None)?;
                }
                self.stage_to(
                    view,
                    Stage::Validate,
                    format!(
                        "measuring the baseline ({} seeds) and single changes",
                        a.baseline
                    ),
                )?;
                Ok(true)
            }
            stage @ (Stage::Validate | Stage::Combine | Stage::Exploit) => {
                if self.launch(view)? {
                    return Ok(true);
                }
                let queued = view.count(stage, |s| s == TrialStatus::Queued);
                let in_flight = view.count(stage, TrialStatus::in_flight);
                let exhausted = view
                    .row
                    .exhausted
                    .get(stage.name())
                    .copied()
                    .unwrap_or(false);
                let hold = if stage < Stage::Confirm {
                    self.confirm_hold(view)
                } else {
                    0
                };
                let can_spend = self.affordable(view, hold) && !self.past_deadline(view);
                let left = view.left(stage);
                // Ask for more when nothing of this stage waits for a slot.
                // Validate and combine ask once everything in flight is
                // back; exploit asks when a slot is free, for a batch of
                // `max_parallel` (the rest wait in the queue, so the
                // generator is called about once per batch, not per trial).
                let slots = view.row.spec.budget.max_parallel as usize;
                let ready = match stage {
                    Stage::Exploit => view.in_flight() < slots,
                    _ => in_flight == 0,
                };
                let baseline_ready = stage != Stage::Combine || view.baseline().is_some();
                if queued == 0 && left > 0 && !exhausted && can_spend && ready && baseline_ready {
                    let max = match stage {
                        Stage::Exploit => left.min(slots.max(1) as u32),
                        _ => left,
                    };
                    return self.propose(view, stage, max);
                }
                if queued == 0 && in_flight == 0 {
                    let next = match stage {
                        Stage::Validate => Stage::Combine,
                        Stage::Combine => Stage::Exploit,
                        _ => Stage::Confirm,
                    };
                    let why = if !can_spend {
                        "the exploration budget is spent".to_string()
                    } else if exhausted {
                        format!("the generator has nothing more for {}", stage.name())
                    } else {
                        format!("{} is done", stage.name())
                    };
                    if stage == Stage::Validate {
                        let judging = view.judging();
                        let promising = view
                            .hypotheses
                            .iter()
                            .filter(|h| view.judge_with(&judging, h).2)
                            .count();
                        let note = format!("{why}; {promising} promising change(s)");
                        self.stage_to(view, next, note)?;
                    } else {
                        self.stage_to(view, next, why)?;
                    }
                    return Ok(true);
                }
                Ok(false)
            }
            Stage::Confirm => {
                if self.launch(view)? {
                    return Ok(true);
                }
                let confirm_trials = view
                    .trials
                    .iter()
                    .filter(|t| t.stage == Stage::Confirm)
                    .count();
                if confirm_trials == 0 {
                    // A branch waiting for a human may hold the winner:
                    // wait for its answer (or expiry) and its trials.
                    if view.in_flight() > 0
                        || view.trials.iter().any(|t| t.status == TrialStatus::Queued)
                        || self.branches_waiting(id)?
                    {
                        return Ok(false);
                    }
                    let Some((winner, s, effect)) = view.best() else {
                        self.finish_campaign(view, "nothing beat the baseline".into())?;
                        return Ok(true);
                    };
                    view.row.winner = Some(winner);
                    let reps = view.row.spec.budget.confirm_replicates;
                    if a.confirm == 0 || !self.affordable(view, 2 * reps - 1) {
                        let mut note = format!(
                            "best: hypothesis {winner} (mean {:.6}, +{effect:.6} vs baseline); no budget left to confirm it with fresh seeds",
                            s.mean
                        );
                        if a.confirm > 0 && view.row.spec.policy.ask_for_budget {
                            match self.budget_request(id)? {
                                None => return self.ask_for_budget(view, winner, 2 * reps),
                                Some(r) if r.state == governance::ApprovalState::Pending => {
                                    return Ok(false);
                                }
                                Some(r) => {
                                    note = format!(
                                        "{note} (budget-increase request {} was {})",
                                        r.id,
                                        r.state.name()
                                    );
                                }
                            }
                        }
                        self.finish_campaign(view, note)?;
                        return Ok(true);
                    }
                    for r in 0..reps {
                        self.queue_trial(
                            view,
                            winner,
                            Stage::Confirm,
                            CONFIRM_SEED + r as u64,
                            1,
                            None,
                        )?;
                        self.queue_trial(
                            view,
                            0,
                            Stage::Confirm,
                            CONFIRM_SEED + r as u64,
                            1,
                            None,
                        )?;
                    }
                    self.say(Progress::Note {
                        campaign: id,
                        text: format!("confirming hypothesis {winner} against the baseline with {reps} fresh seeds each"),
                    });
                    return Ok(true);
                }
                let open = view.count(Stage::Confirm, |s| {
                    s == TrialStatus::Queued || s.in_flight()
                });
                if open == 0 {
                    self.finish_campaign(view, "confirmation done".into())?;
                    return Ok(true);
                }
                Ok(false)
            }
            Stage::Done => Ok(false),
        }
    }

    /// Marks a queued trial as never to run.
    fn drop_trial(&mut self, view: &mut View, tid: u64, reason: &str) -> anyhow::Result<()> {
        let id = view.row.id;
        let t = view.trials.iter_mut().find(|t| t.id == tid).unwrap();
        t.status = TrialStatus::Dropped;
        let row = t.clone();
        self.commit(view, |tx| {
            tx.put_trial(id, &row)?;
            tx.append(
                Some(id),
                EventBody::TrialDropped {
                    id: tid,
                    reason: reason.into(),
                },
            )?;
            Ok(())
        })
    }

    fn finish_campaign(&mut self, view: &mut View, note: String) -> anyhow::Result<()> {
        // Queued trials will never run.
        let dropped: Vec<u64> = view
            .trials
            .iter()
            .filter(|t| t.status == TrialStatus::Queued)
            .map(|t| t.id)
            .collect();
        let id = view.row.id;
        for tid in dropped {
            self.drop_trial(view, tid, "the campaign finished")?;
        }
        view.row.stage = Stage::Done;
        view.row.note = Some(note.clone());
        let summary = super::report::headline(view);
        let from = view.row.state;
        view.row.state = CampaignState::Finished;
        let now = now_ms();
        view.row.finished_ms = Some(now);
        let insights = super::learned::derive(view, now);
        let s = summary.clone();
        self.commit(view, |tx| {
            tx.append(
                Some(id),
                EventBody::StageStarted {
                    stage: Stage::Done,
                    reason: note,
                },
            )?;
            tx.append(
                Some(id),
                EventBody::StateChanged {
                    from,
                    to: CampaignState::Finished,
                    reason: "all stages done".into(),
                },
            )?;
            tx.append(
                Some(id),
                EventBody::CampaignFinished {
                    state: CampaignState::Finished,
                    summary: s,
                },
            )?;
            self.close_requests(tx, id, "the campaign finished")?;
            crate::insights::record(tx, id, &view.row.spec.name, &insights)?;
            Ok(())
        })?;
        self.say(Progress::Done {
            campaign: id,
            state: CampaignState::Finished,
            summary,
        });
        Ok(())
    }

    fn halt(&mut self, view: &mut View, reason: String) -> anyhow::Result<()> {
        view.row.note = Some(reason.clone());
        self.set_state(view, CampaignState::Halted, &reason)?;
        self.say(Progress::Done {
            campaign: view.row.id,
            state: CampaignState::Halted,
            summary: reason,
        });
        Ok(())
    }

    fn context(&self, view: &View, stage: Stage, round: u32, left: u32) -> Context {
        let spec = &view.row.spec;
        Context {
            campaign: spec.name.clone(),
            tags: spec.tags.clone(),
            objective: Objective {
                metric: spec.objective.metric.clone(),
                direction: spec.objective.direction,
            },
            knobs: spec.knobs.clone(),
            phase: phase_of(stage),
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

    /// Counts the call's language-model tokens and tells the operator.
    fn note_llm(&mut self, view: &mut View, record: &CallRecord) {
        let used = llm::usage(record);
        if used.calls == 0 {
            return;
        }
        view.row.llm_tokens += used.tokens;
        let budget = view.row.spec.llm.as_ref().map_or(0, |l| l.token_budget);
        let mut text = format!(
            "language model: {} call{}, {} tokens ({} of {budget} used)",
            used.calls,
            if used.calls == 1 { "" } else { "s" },
            used.tokens,
            view.row.llm_tokens
        );
        for e in &used.errors {
            text.push_str(&format!("; unavailable: {e}"));
        }
        if !used.errors.is_empty() {
            text.push_str(" (the generator went on without it)");
        }
        let campaign = view.row.id;
        self.say(Progress::Note { campaign, text });
    }

    /// Records a strategy call (event + full record) and its memory.
    fn record_call(
        &self,
        tx: &mut Tx,
        campaign: u64,
        role: &str,
        record: &CallRecord,
    ) -> anyhow::Result<u64> {
        let bytes = serde_json::to_vec(record)?;
        let seq = tx.append(
            Some(campaign),
            EventBody::StrategyCalled {
                role: role.to_string(),
                component_sha256: record.component_sha256.clone(),
                outcome: match &record.outcome {
                    Ok(_) => "ok".into(),
                    Err(e) => e.kind().into(),
                },
                fuel: record.usage.fuel,
                record: true,
                record_sha256: hex::encode(sha2::Sha256::digest(&bytes)),
                llm_tokens: llm::usage(record).tokens,
            },
        )?;
        tx.put_call_bytes(seq, &bytes)?;
        Ok(seq)
    }

    fn propose(&mut self, view: &mut View, stage: Stage, max: u32) -> anyhow::Result<bool> {
        let id = view.row.id;
        let spec = view.row.spec.clone();
        let generator = match self.strategy(&spec.strategies.generator, &spec) {
            Ok(g) => g,
            Err(e) => {
                self.halt(
                    view,
                    format!(
                        "cannot load the generator {}: {e}",
                        spec.strategies.generator
                    ),
                )?;
                return Ok(true);
            }
        };
        let round = view.row.generator_calls;
        let ctx = self.context(view, stage, round, view.left(stage));
        let mut data = view.strategy_data();
        if spec.strategies.grants.insights {
            // Other campaigns' records that apply to this one.
            data.insights = crate::insights::served(self.store, &spec, Some(id))?;
        }
        let data = Arc::new(llm::CampaignData::new(data, &spec, view.row.llm_tokens));
        let memory = self.store.memory(id, "generator")?;
        let (record, memory) = self.sandbox.call(
            &generator,
            CallInput::Propose { context: ctx, max },
            data,
            memory,
            &spec.strategies.limits,
        );
        view.row.generator_calls += 1;
        self.note_llm(view, &record);
        let proposed = match &record.outcome {
            Ok(CallOutput::Hypotheses(h)) => Some(h.clone()),
            _ => None,
        };
        let Some(proposed) = proposed else {
            view.row.strikes += 1;
            let err = record
                .outcome
                .as_ref()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            self.commit(view, |tx| {
                self.record_call(tx, id, "generator", &record)?;
                Ok(())
            })?;
            self.say(Progress::Note {
                campaign: id,
                text: format!(
                    "generator call failed ({} of {MAX_STRIKES} strikes): {err}",
                    view.row.strikes
                ),
            });
            if view.row.strikes >= MAX_STRIKES {
                self.halt(
                    view,
                    format!("the generator failed {MAX_STRIKES} times; last error: {err}"),
                )?;
            }
            return Ok(true);
        };
        // Drop anything already tried (same change set).
        let known: Vec<String> = view
            .hypotheses
            .iter()
            .map(|h| validate::key(&h.hypothesis))
            .collect();
        let fresh: Vec<Hypothesis> = proposed
            .into_iter()
            .filter(|h| !known.contains(&validate::key(h)))
            .collect();

        let mut rows = Vec::new();
        // Values outside the approved space wait for a human; the rest of
        // the batch goes ahead.
        let mut room =
            guardrails::MAX_PENDING_OUT_OF_SPACE.saturating_sub(self.pending_out_of_space(id)?);
        let mut requests = Vec::new();
        let in_code = spec.knobs_in_code();
        let mut refused: Vec<(u64, String)> = Vec::new();
        for h in fresh {
            let hid = view.row.next_hypothesis.max(1);
            view.row.next_hypothesis = hid + 1;
            let outside = validate::outside_space_all(&spec.knobs, &h);
            let status = if outside.is_empty() {
                HypothesisStatus::Active
            } else if let Some(why) = code_injection(&in_code, &h) {
                // No approval can make this safe to paste into code: it is
                // refused, not put to a person.
                refused.push((hid, why));
                HypothesisStatus::Excluded
            } else if room > 0 {
                room -= 1;
                let changes: serde_json::Map<String, serde_json::Value> = h
                    .assignments
                    .iter()
                    .map(|a| (a.knob.clone(), crate::strategy::value_json(&a.value)))
                    .collect();
                let payload = self.trial_payload(
                    view,
                    serde_json::json!({
                        "hypothesis": hid,
                        "title": h.title,
                        "changes": changes,
                        "outside": outside,
                    }),
                );
                requests.push(self.new_request(
                    view,
                    governance::ApprovalKind::OutOfSpace,
                    format!("hypothesis {hid} \"{}\": {}", h.title, outside.join("; ")),
                    payload,
                    Some(hid),
                ));
                HypothesisStatus::AwaitingApproval
            } else {
                HypothesisStatus::Excluded
            };
            rows.push(HypothesisRow {
                id: hid,
                stage,
                hypothesis: h,
                origin: Origin::Generator,
                status,
                call_seq: None,
            });
        }
        let mut trials = Vec::new();
        for h in rows.iter().filter(|h| h.status == HypothesisStatus::Active) {
            trials.push(self.new_trial(
                view,
                h.id,
                stage,
                FIRST_SEED,
                1,
                None,
                h.hypothesis.assignments.clone(),
            ));
        }
        if trials.is_empty() {
            // Nothing new to run (all known, or all waiting for a human):
            // don't ask again in this stage.
            view.row.exhausted.insert(stage.name().to_string(), true);
        }
        let count = rows.len();
        let rows_for_tx = rows.clone();
        let trials_for_tx = trials.clone();
        let mut call_seq = None;
        self.commit(view, |tx| {
            let seq = self.record_call(tx, id, "generator", &record)?;
            call_seq = Some(seq);
            tx.put_memory(id, "generator", &memory)?;
            for mut h in rows_for_tx {
                h.call_seq = Some(seq);
                put_new_hypothesis(tx, id, &h)?;
                if let Some((_, why)) = refused.iter().find(|(r, _)| *r == h.id) {
                    tx.append(
                        Some(id),
                        EventBody::HypothesisStatus {
                            id: h.id,
                            status: h.status,
                            reason: why.clone(),
                        },
                    )?;
                }
            }
            for t in &trials_for_tx {
                put_queued(tx, id, t)?;
            }
            let now = (self.clock)();
            for r in requests {
                governance::request(tx, r, now)?;
            }
            Ok(())
        })?;
        for h in &mut rows {
            h.call_seq = call_seq;
        }
        view.hypotheses.extend(rows);
        view.trials.extend(trials);
        self.say(Progress::Proposed {
            campaign: id,
            count,
            stage,
        });
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    fn new_trial(
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

    fn queue_trial(
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
    fn launch(&mut self, view: &mut View) -> anyhow::Result<bool> {
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
            if view.in_flight() >= view.row.spec.budget.max_parallel as usize {
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
    fn journal_launch(&mut self, view: &mut View, tid: u64) -> anyhow::Result<()> {
        let id = view.row.id;
        let (rc, rg) = (
            view.row.spec.cpu_reservation(),
            view.row.spec.gpu_reservation(),
        );
        view.row.ledger.reserved_cpu += rc;
        view.row.ledger.reserved_gpu += rg;
        view.row.ledger.launched += 1;
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

    fn job_spec(&self, view: &View, t: &TrialRow) -> JobSpec {
        let spec = &view.row.spec;
        let config = full_config(spec, &t.assignments);
        let mut values: BTreeMap<String, String> = config
            .iter()
            .map(|(k, v)| (k.clone(), render_value(v)))
            .collect();
        values.insert("seed".into(), t.seed.to_string());
        values.insert("trial".into(), t.id.to_string());
        let argv = spec
            .job
            .command
            .iter()
            .map(|a| render_arg(a, &values))
            .collect();
        let mut env: Vec<(String, String)> = spec.job.env.clone();
        env.push(("REAGENT_SEED".into(), t.seed.to_string()));
        env.push(("REAGENT_TRIAL".into(), t.id.to_string()));
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
        params.insert("seed".into(), serde_json::json!(t.seed));
        params.insert("trial".into(), serde_json::json!(t.id));
        JobSpec {
            key: t.key.clone(),
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
            wake: self.wake.clone(),
        }
    }

    /// Step 2 of a launch: submit, then record the handle.
    fn submit(&mut self, view: &mut View, tid: u64) -> anyhow::Result<()> {
        let t = view.trials.iter().find(|t| t.id == tid).cloned().unwrap();
        let spec = self.job_spec(view, &t);
        match self.backend.submit(&spec) {
            Ok(handle) => {
                self.mark_submitted(view, tid, handle)?;
                let title = view
                    .hypothesis(t.hypothesis)
                    .map(|h| h.hypothesis.title.clone())
                    .unwrap_or_default();
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

    fn mark_submitted(
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

    /// Settles a finished job: ledger, metrics, status; failures go to the
    /// debugger and its action is applied.
    fn finish(&mut self, view: &mut View, tid: u64, mut outcome: JobOutcome) -> anyhow::Result<()> {
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
        let t = view.trials.iter_mut().find(|t| t.id == tid).unwrap();
        // Settle to actual use, never above the reservation: the supervisor
        // enforces the time limit, and its kill grace is not the job's to pay.
        let cap = |reserved: f64, used: f64| {
            if reserved > 0.0 {
                used.min(reserved)
            } else {
                used
            }
        };
        // Never negative, whatever a record said (a negative spend would
        // give budget back).
        let (spent_cpu, spent_gpu) = (
            cap(t.reserved_cpu, spec.job.resources.cpus * hours).max(0.0),
            cap(t.reserved_gpu, spec.job.resources.gpus * hours).max(0.0),
        );
        view.row.ledger.reserved_cpu = (view.row.ledger.reserved_cpu - t.reserved_cpu).max(0.0);
        view.row.ledger.reserved_gpu = (view.row.ledger.reserved_gpu - t.reserved_gpu).max(0.0);
        view.row.ledger.spent_cpu += spent_cpu;
        view.row.ledger.spent_gpu += spent_gpu;
        t.reserved_cpu = 0.0;
        t.reserved_gpu = 0.0;
        t.spent_cpu = spent_cpu;
        t.spent_gpu = spent_gpu;
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
        let title = view
            .hypothesis(row.hypothesis)
            .map(|h| h.hypothesis.title.clone())
            .unwrap_or_default();
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

    fn diagnose(&mut self, view: &mut View, tid: u64, outcome: &JobOutcome) -> anyhow::Result<()> {
        let id = view.row.id;
        let spec = view.row.spec.clone();
        let trial = view.trials.iter().find(|t| t.id == tid).cloned().unwrap();
        let max_attempts = spec.budget.max_retries + 1;
        let report = FailureReport {
            trial: tid,
            hypothesis: trial.hypothesis,
            assignments: full_config(&spec, &trial.assignments)
                .into_iter()
                .map(|(knob, value)| Assignment { knob, value })
                .collect(),
            exit_code: outcome.exit_code,
            signal: outcome.signal,
            timed_out: outcome.timed_out,
            stopped_early: outcome.stopped_early.is_some(),
            log_tail: {
                // The holdout metric is never shown to strategies: drop
                // lines of the log that mention it.
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
                    tail.push_str("\nreagent: killed: out of memory (resident memory passed the job's memory limit)");
                }
                if outcome.exit_code == Some(0) && trial.objective.is_none() {
                    tail.push_str(&format!(
                        "\nreagent: the job exited 0 but never reported `{}`",
                        spec.objective.metric
                    ));
                }
                // Strategies never see where things are on this machine.
                crate::jobs::redact_paths(&tail, Some(&spec.job.workdir))
            },
            attempt: trial.attempt,
            max_attempts,
            last_metrics: outcome
                .metrics
                .iter()
                .filter(|(k, _)| spec.objective.holdout.as_deref() != Some(k.as_str()))
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        };
        let debugger = self.strategy(&spec.strategies.debugger, &spec);
        let round = view.row.debugger_calls;
        view.row.debugger_calls += 1;
        let (diagnosis, record) = match debugger {
            Ok(d) => {
                let ctx = self.context(
                    view,
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
        // Apply the action within the retry bound.
        let retries_left = trial.attempt < max_attempts;
        let mut new_trial: Option<TrialRow> = None;
        let mut new_hypothesis: Option<HypothesisRow> = None;
        let mut status_change: Option<(u64, HypothesisStatus, String)> = None;
        let mut escalation = None;
        let action_text;
        match (&diagnosis.action, retries_left) {
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
                action_text = format!("retry as trial {}", t.id);
                new_trial = Some(t);
            }
            (Action::RetryWith(changes), true) => {
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
                let parent_title = view
                    .hypothesis(trial.hypothesis)
                    .map(|h| h.hypothesis.title.clone())
                    .unwrap_or_default();
                let hid = view.row.next_hypothesis.max(1);
                view.row.next_hypothesis = hid + 1;
                let h = HypothesisRow {
                    id: hid,
                    stage: trial.stage,
                    hypothesis: Hypothesis {
                        title: format!("{parent_title} (retry with {})", what.join(", ")),
                        rationale: diagnosis.rationale.clone(),
                        category: view
                            .hypothesis(trial.hypothesis)
                            .map(|h| h.hypothesis.category.clone())
                            .unwrap_or_default(),
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
                    Some(tid),
                    assignments,
                );
                action_text = format!("retry with {} as trial {}", what.join(", "), t.id);
                if trial.hypothesis != 0 {
                    status_change = Some((
                        trial.hypothesis,
                        HypothesisStatus::Replaced,
                        format!("replaced by hypothesis {hid}"),
                    ));
                }
                new_hypothesis = Some(h);
                new_trial = Some(t);
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
                escalation = Some(self.new_request(
                    view,
                    governance::ApprovalKind::Escalation,
                    format!(
                        "trial {tid} failed ({}); the debugger asks a human whether to retry it",
                        crate::strategy::failure_class_name(diagnosis.class)
                    ),
                    payload,
                    Some(trial.hypothesis),
                ));
                action_text =
                    "escalated to a human (an approval request); the hypothesis is parked".into();
                status_change = Some((
                    trial.hypothesis,
                    HypothesisStatus::Escalated,
                    diagnosis.rationale.clone(),
                ));
            }
            (_, false) => {
                action_text = format!("excluded: {} attempts used", trial.attempt);
                status_change = Some((
                    trial.hypothesis,
                    HypothesisStatus::Excluded,
                    action_text.clone(),
                ));
            }
            (Action::Exclude, _) => {
                action_text = "excluded".into();
                status_change = Some((
                    trial.hypothesis,
                    HypothesisStatus::Excluded,
                    diagnosis.rationale.clone(),
                ));
            }
        }
        // The baseline is never excluded: its failure halts nothing but is
        // retried if the debugger allows; otherwise other replicates carry it.
        if let Some((0, _, _)) = status_change {
            status_change = None;
        }
        {
            let t = view.trials.iter_mut().find(|t| t.id == tid).unwrap();
            t.failure = Some(diagnosis.class);
            t.diagnosis = Some(diagnosis.clone());
            t.action_taken = Some(action_text.clone());
        }
        if let Some((hid, status, _)) = &status_change
            && let Some(h) = view.hypotheses.iter_mut().find(|h| h.id == *hid)
        {
            h.status = *status;
        }
        let trial_row = view.trials.iter().find(|t| t.id == tid).cloned().unwrap();
        let changed_h = status_change
            .as_ref()
            .and_then(|(hid, _, _)| view.hypotheses.iter().find(|h| h.id == *hid).cloned());
        let d2 = diagnosis.clone();
        let a2 = action_text.clone();
        let nh = new_hypothesis.clone();
        let nt = new_trial.clone();
        let sc = status_change.clone();
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
        })?;
        if let Some(h) = new_hypothesis {
            view.hypotheses.push(h);
        }
        if let Some(t) = new_trial {
            view.trials.push(t);
        }
        self.say(Progress::Diagnosed {
            campaign: id,
            trial: tid,
            class: diagnosis.class,
            action: action_text,
        });
        if view.row.strikes >= MAX_STRIKES {
            let reason = format!("strategies failed {MAX_STRIKES} times");
            self.halt(view, reason)?;
        }
        Ok(())
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

/// Stage, trials running/done/failed, best so far vs baseline, budget used.
pub fn summary_line(view: &View) -> String {
    let count = |s: TrialStatus| view.trials.iter().filter(|t| t.status == s).count();
    let best = match (view.baseline(), view.best()) {
        (Some(b), Some((h, s, e))) => format!(
            "best h{h} {:.6} vs baseline {:.6} ({e:+.6})",
            s.mean, b.mean
        ),
        (Some(b), None) => format!("baseline {:.6}, nothing better yet", b.mean),
        _ => "baseline not measured yet".into(),
    };
    let l = &view.row.ledger;
    format!(
        "{}: {} running, {} done, {} failed | {best} | CPU-h {:.3} spent + {:.3} reserved of {}",
        view.row.stage.name(),
        view.in_flight(),
        count(TrialStatus::Succeeded),
        count(TrialStatus::Failed),
        l.spent_cpu,
        l.reserved_cpu,
        view.row.budget().cpu_hours
    )
}

/// Slack on top of the time limit and the kill grace for a run time to be
/// believed: the supervisor's own scheduling, a busy machine.
const WALL_SLACK_SECS: f64 = 60.0;

/// The run time to settle: the outcome's when it is a plausible one
/// (finite, not negative, at most the time limit + kill grace + slack);
/// otherwise the most the trial could have run (the top of that range;
/// 0 without a time limit), with a note in the outcome's log tail. The
/// supervisor measures it, but an unconfined job could have rewritten its
/// record: a forged time must never give budget back or run for free.
fn plausible_wall_secs(outcome: &mut JobOutcome, time_limit: std::time::Duration) -> f64 {
    let limit = time_limit.as_secs_f64();
    let max = if limit > 0.0 {
        limit + crate::jobs::local::KILL_GRACE.as_secs_f64() + WALL_SLACK_SECS
    } else {
        f64::INFINITY
    };
    let reported = outcome.wall_secs;
    let settled = if (0.0..=max).contains(&reported) {
        reported
    } else if max.is_finite() {
        max
    } else {
        0.0
    };
    if settled != reported {
        outcome.log_tail.push_str(&format!(
            "\nreagent: the recorded run time {reported} s is not plausible (0 to {max} s); settled as {settled} s"
        ));
        outcome.wall_secs = settled;
    }
    settled
}

/// 64 random bits in hex, for a launch's job folder name.
fn launch_nonce() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 8];
    let from_os = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !from_os {
        // SipHash with the process's random keys over the time and pid.
        use std::hash::{BuildHasher as _, Hasher as _};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        bytes = h.finish().to_le_bytes();
    }
    hex::encode(bytes)
}

fn describe_failure(o: &JobOutcome, metric: &str) -> String {
    if o.timed_out {
        "timed out".into()
    } else if let Some(r) = &o.stopped_early {
        format!("stopped early: {r}")
    } else if o.memory_exceeded {
        "killed: over its memory limit".into()
    } else if let Some(s) = o.signal {
        format!("killed by signal {s}")
    } else if o.exit_code == Some(0) {
        format!("exited 0 without reporting `{metric}`")
    } else if let Some(c) = o.exit_code {
        format!("exited with code {c}")
    } else {
        "lost".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implausible_run_times_are_clamped_and_noted() {
        let limit = std::time::Duration::from_secs(5);
        for (reported, settled) in [
            (-36_000_000.0, 68.0),
            (-0.5, 68.0),
            (f64::NEG_INFINITY, 68.0),
            (f64::INFINITY, 68.0),
            (f64::NAN, 68.0),
            (1e12, 68.0),
        ] {
            let mut o = JobOutcome {
                wall_secs: reported,
                ..JobOutcome::default()
            };
            assert_eq!(plausible_wall_secs(&mut o, limit), settled, "{reported}");
            assert_eq!(o.wall_secs, settled);
            assert!(
                o.log_tail.contains("is not plausible"),
                "{reported}: {}",
                o.log_tail
            );
        }
        let mut o = JobOutcome {
            wall_secs: 4.5,
            ..JobOutcome::default()
        };
        assert_eq!(plausible_wall_secs(&mut o, limit), 4.5);
        assert!(o.log_tail.is_empty());
    }

    #[test]
    fn launch_nonces_differ() {
        let (a, b) = (launch_nonce(), launch_nonce());
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
    }

    #[test]
    fn placeholders_render_and_braces_escape() {
        let mut v = BTreeMap::new();
        v.insert("lr".to_string(), "0.1".to_string());
        v.insert("seed".to_string(), "3".to_string());
        assert_eq!(render_arg("--lr={lr}", &v), "--lr=0.1");
        assert_eq!(render_arg("{{x}}-{seed}", &v), "{x}-3");
    }
}
