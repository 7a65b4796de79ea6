//! The phase machine. One `advance` is one pass over a campaign: reconcile
//! jobs with the backend, settle what finished (diagnosing failures with
//! the debugger strategy), move through the stages, ask the generator for
//! hypotheses when a stage needs them, and launch what the budget allows.
//!
//! Every state change is one store transaction; a launch is journaled
//! (`Launching`, with its idempotency key and reservation) before it is
//! submitted, so a crash at any point is reconciled by key on the next pass.

mod early;
mod gate;
mod guardrails;
mod launch;
mod llm;
mod propose;
mod quota;
mod settle;
mod stages;

pub use super::view::{Allotment, Judging, View, allotment};
pub(crate) use gate::closest as closest_name;
pub use gate::outcome_cause;
pub use launch::job_spec_for;

use launch::put_queued;
use propose::put_new_hypothesis;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::governance;
use crate::jobs::{Backend, JobOutcome, JobSpec, JobState, WakeCommand};
use crate::records::campaign::{
    CampaignState, EventBody, HypothesisRow, HypothesisStatus, Origin, Stage, TrialRow, TrialStatus,
};
use crate::sandbox::{Sandbox, Strategy};
use crate::spec::{self, Campaign};
use crate::store::{Store, Tx, now_ms};
use crate::strategy::record::CallRecord;
use crate::strategy::{
    Action, Assignment, CallInput, CallOutput, FailureClass, FailureReport, Hypothesis,
    StrategySource, Value, render_value, validate,
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
    /// The workspace quota, when one is set (`with_quota`).
    quota: Option<quota::QuotaGate>,
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
    // Templates are checked when the campaign file is read; an argument
    // that no longer parses is passed as it is.
    let Ok(pieces) = spec::template(arg) else {
        return arg.to_string();
    };
    pieces
        .into_iter()
        .map(|piece| match piece {
            spec::Piece::Text(t) => t,
            spec::Piece::Placeholder(name) => values.get(&name).cloned().unwrap_or_default(),
        })
        .collect()
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
            quota: None,
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
        let before = self.store.head()?.0;
        let mut view = self.view(id)?;
        let pass = self.advance_view(&mut view)?;
        self.keep_views(id, view, before)?;
        Ok(pass)
    }

    /// Caches campaign `id`'s view at the store's head, after commits made
    /// since `before` by this engine for that campaign alone. Other views
    /// that were current at `before` stay current: those commits wrote
    /// none of their rows, and nobody else can write while this process
    /// holds the store. (Without this, each campaign's commits made every
    /// other campaign reload all its rows at the next pass.)
    fn keep_views(&mut self, id: u64, view: View, before: u64) -> anyhow::Result<()> {
        let head = self.store.head()?.0;
        for (at, _) in self.views.values_mut() {
            if *at == before {
                *at = head;
            }
        }
        self.views.insert(id, (head, view));
        Ok(())
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
            self.close_pass(view, changed)?;
            return Ok(Pass {
                state: view.row.state,
                in_flight: view.in_flight(),
                changed,
            });
        }
        if view.row.paused {
            // Paused: results are still recorded, nothing new starts.
            self.close_pass(view, changed)?;
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
        self.close_pass(view, changed)?;
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
        let mut refs: Option<early::References> = None;
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
                JobState::Pending => {}
                JobState::Running => {
                    // The baseline and confirmation runs are the measuring
                    // stick: never stopped.
                    let exploring = trial.hypothesis != 0 && trial.stage != Stage::Confirm;
                    if let Some(rule) = view.row.spec.stopping.as_ref().filter(|_| exploring) {
                        if refs.is_none() {
                            let metric = rule.metric.clone();
                            refs = Some(self.references(view, &metric)?);
                        }
                        if let Some(r) = &refs
                            && self.consider_stopping(view, tid, &handle, r)?
                        {
                            changed = true;
                        }
                    }
                }
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

    /// Ends a pass over a campaign: after a pass that changed something,
    /// the row's tally (what `status` reads) is refreshed and committed
    /// with the submissions not yet written; else those are flushed.
    fn close_pass(&mut self, view: &mut View, changed: bool) -> anyhow::Result<()> {
        if changed {
            let tally = view.tally();
            if view.row.tally.as_ref() != Some(&tally) {
                view.row.tally = Some(tally);
                return self.commit(view, |_| Ok(()));
            }
        }
        self.flush(view)
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
            view.row.tally = Some(view.tally());
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

    /// Marks a hibernating campaign running again. Reads the campaign
    /// through the cached view (it loaded every row of the campaign at each
    /// pass only to read its state).
    pub fn resume_running(&mut self, id: u64) -> anyhow::Result<()> {
        let before = self.store.head()?.0;
        let mut view = self.view(id)?;
        if view.row.state == CampaignState::Hibernating {
            self.set_state(&mut view, CampaignState::Running, "woken")?;
        }
        self.keep_views(id, view, before)
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
}

/// Stage, trials running/done/failed, best so far vs baseline, budget used.
/// (From the row's tally when it is current, as after `close_pass`.)
pub fn summary_line(view: &View) -> String {
    let tally = match &view.row.tally {
        Some(t) => t.clone(),
        None => view.tally(),
    };
    let best = match (tally.baseline, tally.best) {
        (Some(b), Some(best)) => format!(
            "best h{} {:.6} vs baseline {:.6} ({:+.6})",
            best.hypothesis, best.mean, b.mean, best.improvement
        ),
        (Some(b), None) => format!("baseline {:.6}, nothing better yet", b.mean),
        _ => "baseline not measured yet".into(),
    };
    let l = &view.row.ledger;
    format!(
        "{}: {} running, {} done, {} failed | {best} | CPU-h {:.3} spent + {:.3} reserved of {}",
        view.row.stage.name(),
        tally.running,
        tally.succeeded,
        tally.failed,
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
pub(crate) fn launch_nonce() -> String {
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
