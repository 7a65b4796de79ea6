//! The rows the store keeps for campaigns, hypotheses and trials, and the
//! events that change them. Rows are derived state; events are the source
//! of truth and the audit log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::approval::{ApprovalKind, ApprovalState};
use crate::jobs::{JobHandle, JobOutcome};
use crate::spec::{Budget, Campaign};
use crate::strategy::{Assignment, Diagnosis, FailureClass, Hypothesis, Phase};

/// `draft → awaiting-approval → running ⇄ hibernating → finished | halted | cancelled`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CampaignState {
    Draft,
    AwaitingApproval,
    Running,
    Hibernating,
    Finished,
    Halted,
    Cancelled,
}

impl CampaignState {
    pub fn name(self) -> &'static str {
        match self {
            CampaignState::Draft => "draft",
            CampaignState::AwaitingApproval => "awaiting-approval",
            CampaignState::Running => "running",
            CampaignState::Hibernating => "hibernating",
            CampaignState::Finished => "finished",
            CampaignState::Halted => "halted",
            CampaignState::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CampaignState::Finished | CampaignState::Halted | CampaignState::Cancelled
        )
    }

    /// Running or hibernating: the engine drives it.
    pub fn is_active(self) -> bool {
        matches!(self, CampaignState::Running | CampaignState::Hibernating)
    }
}

/// Where the phase machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Plan,
    Validate,
    Combine,
    Exploit,
    Confirm,
    Done,
}

impl Stage {
    /// The phase a strategy is asked for in this stage (confirmation and
    /// the end are exploitation's continuation; planning is validation's).
    pub fn phase(self) -> Phase {
        match self {
            Stage::Combine => Phase::Combine,
            Stage::Exploit | Stage::Confirm | Stage::Done => Phase::Exploit,
            Stage::Plan | Stage::Validate => Phase::Validate,
        }
    }
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Plan => "plan",
            Stage::Validate => "validate",
            Stage::Combine => "combine",
            Stage::Exploit => "exploit",
            Stage::Confirm => "confirm",
            Stage::Done => "done",
        }
    }
}

/// The budget ledger, in CPU- and GPU-hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub reserved_cpu: f64,
    pub reserved_gpu: f64,
    pub spent_cpu: f64,
    pub spent_gpu: f64,
    /// Trials launched (journaled), ever.
    pub launched: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    pub by: String,
    pub at_ms: u64,
    pub note: String,
    /// The approval request this answers.
    #[serde(default)]
    pub request: Option<u64>,
    /// The plan payload's hash it approved: launches stop if the plan no
    /// longer hashes to it.
    #[serde(default)]
    pub payload_hash: String,
}

/// Budget added by an approved budget-increase request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetIncrease {
    pub request: u64,
    pub cpu_hours: f64,
    pub gpu_hours: f64,
    pub max_trials: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignRow {
    pub id: u64,
    pub spec: Campaign,
    /// The campaign file it was registered from.
    pub file: String,
    pub state: CampaignState,
    pub stage: Stage,
    pub created_ms: u64,
    /// The OS user who registered it (`reagent plan`).
    #[serde(default)]
    pub planned_by: String,
    pub approved: Option<ApprovalRecord>,
    /// Approved budget increases, on top of `spec.budget`.
    #[serde(default)]
    pub budget_increases: Vec<BudgetIncrease>,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub ledger: Ledger,
    pub next_hypothesis: u64,
    pub next_trial: u64,
    /// Calls made to each strategy role, for `ctx.round`.
    pub generator_calls: u32,
    pub debugger_calls: u32,
    /// Strategy failures (traps, limits, invalid answers).
    pub strikes: u32,
    /// Per stage: the generator answered with nothing new last time.
    pub exhausted: BTreeMap<String, bool>,
    pub paused: bool,
    /// Why the campaign halted or finished early, in words.
    pub note: Option<String>,
    /// The hypothesis chosen for confirmation.
    pub winner: Option<u64>,
    /// Language-model tokens used so far (prompt + completion).
    #[serde(default)]
    pub llm_tokens: u64,
    /// The top candidates were raced before the winner was chosen.
    #[serde(default)]
    pub raced: bool,
    /// What `status` shows of the trials, refreshed by the engine with each
    /// pass that changed something and each change of state; `None` on
    /// rows written before it existed (then `status` reads the trials).
    #[serde(default)]
    pub tally: Option<Tally>,
}

/// A campaign's trials as `status` shows them, kept on its row so that
/// `status` reads one row instead of every trial (100,000 trials took
/// 616 ms and 263 MiB).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Tally {
    pub queued: u32,
    /// Launching and running.
    pub running: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub stopped: u32,
    /// The baseline's exploration runs.
    pub baseline: Option<Estimate>,
    /// The best hypothesis so far, as the engine judges it.
    pub best: Option<Best>,
}

/// Mean, sample standard deviation and count of some runs' objective.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub mean: f64,
    pub sd: f64,
    pub n: u32,
}

/// The best hypothesis so far: its mean, runs, and improvement over the
/// baseline (positive = better).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub hypothesis: u64,
    pub mean: f64,
    pub n: u32,
    pub improvement: f64,
}

impl CampaignRow {
    /// The approved budget: the plan's, plus approved increases.
    pub fn budget(&self) -> Budget {
        let mut b = self.spec.budget.clone();
        for inc in &self.budget_increases {
            b.cpu_hours += inc.cpu_hours;
            b.gpu_hours += inc.gpu_hours;
            b.max_trials += inc.max_trials;
        }
        b
    }
}

/// Where a hypothesis came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    Baseline,
    Generator,
    Debugger,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HypothesisStatus {
    Active,
    /// Given up on (debugger said exclude, or retries ran out).
    Excluded,
    /// Waiting for a human (debugger said escalate).
    Escalated,
    /// Outside the approved knob space: waits for an approval request.
    AwaitingApproval,
    /// Superseded by a retry-with hypothesis.
    Replaced,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HypothesisRow {
    pub id: u64,
    pub stage: Stage,
    pub hypothesis: Hypothesis,
    pub origin: Origin,
    pub status: HypothesisStatus,
    /// The event seq of the strategy call that proposed it.
    pub call_seq: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrialStatus {
    /// Waiting for a slot and budget.
    Queued,
    /// Journaled; submission in progress (reconciled by key after a crash).
    Launching,
    Running,
    Succeeded,
    Failed,
    /// Never launched: its hypothesis was excluded, or the campaign ended.
    Dropped,
    Cancelled,
    /// Stopped early by the campaign's `[stopping]` rule: it was losing.
    /// Its best intermediate value is kept as a lower-fidelity result; it
    /// is never a winner.
    Stopped,
}

impl TrialStatus {
    pub fn name(self) -> &'static str {
        match self {
            TrialStatus::Queued => "queued",
            TrialStatus::Launching => "launching",
            TrialStatus::Running => "running",
            TrialStatus::Succeeded => "succeeded",
            TrialStatus::Failed => "failed",
            TrialStatus::Dropped => "dropped",
            TrialStatus::Cancelled => "cancelled",
            TrialStatus::Stopped => "stopped",
        }
    }

    /// Holds a reservation (launched and not settled).
    pub fn in_flight(self) -> bool {
        matches!(self, TrialStatus::Launching | TrialStatus::Running)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRow {
    pub id: u64,
    pub hypothesis: u64,
    pub stage: Stage,
    pub seed: u64,
    /// The full change set vs baseline (the hypothesis' assignments).
    pub assignments: Vec<Assignment>,
    /// Idempotency key for the backend.
    pub key: String,
    pub status: TrialStatus,
    /// 1 for a first attempt; retries count up.
    pub attempt: u32,
    /// The failed trial this one retries.
    pub retry_of: Option<u64>,
    pub handle: Option<JobHandle>,
    pub reserved_cpu: f64,
    pub reserved_gpu: f64,
    pub spent_cpu: f64,
    pub spent_gpu: f64,
    pub objective: Option<f64>,
    pub objective_stderr: Option<f64>,
    /// Holdout metric: recorded and reported, never shown to strategies.
    pub holdout: Option<f64>,
    pub metrics: BTreeMap<String, f64>,
    pub outcome: Option<JobOutcome>,
    pub failure: Option<FailureClass>,
    pub diagnosis: Option<Diagnosis>,
    /// What the host did about the diagnosis, in words.
    pub action_taken: Option<String>,
    pub guard_violation: Option<String>,
    pub launched_ms: Option<u64>,
    pub finished_ms: Option<u64>,
}

/// One appended event. `hash = sha256(prev_hash ‖ seq ‖ canonical body)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at_ms: u64,
    pub campaign: Option<u64>,
    pub body: EventBody,
    pub prev_hash: String,
    pub hash: String,
}

/// What happened. Each state change appends one or more of these in the
/// same transaction that updates the rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EventBody {
    WorkspaceCreated {
        schema: u32,
    },
    CampaignRegistered {
        name: String,
        file: String,
        spec: Box<Campaign>,
    },
    /// Written by databases from before approval requests; read only.
    PlanApproved {
        by: String,
        note: String,
    },
    ApprovalRequested {
        id: u64,
        kind: ApprovalKind,
        requested_by: String,
        summary: String,
        payload_hash: String,
        expires_ms: u64,
    },
    /// An approved change to a running campaign's strategies or grants.
    CampaignAmended {
        request: u64,
        what: String,
        spec_sha256: String,
    },
    ApprovalDecided {
        id: u64,
        state: ApprovalState,
        by: String,
        note: String,
        payload_hash: String,
    },
    StateChanged {
        from: CampaignState,
        to: CampaignState,
        reason: String,
    },
    StageStarted {
        stage: Stage,
        reason: String,
    },
    StrategyCalled {
        role: String,
        component_sha256: String,
        /// `ok`, or the error kind.
        outcome: String,
        fuel: u64,
        /// The full record is stored under this event's seq.
        record: bool,
        /// sha256 of the stored record's bytes: the record is covered by
        /// the chain through this hash.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        record_sha256: String,
        /// Language-model tokens the call used (its transcript has each
        /// prompt and answer).
        #[serde(default, skip_serializing_if = "is_zero")]
        llm_tokens: u64,
    },
    HypothesisAdded {
        id: u64,
        stage: Stage,
        origin: Origin,
        title: String,
        assignments: Vec<Assignment>,
        parents: Vec<u64>,
    },
    HypothesisStatus {
        id: u64,
        status: HypothesisStatus,
        reason: String,
    },
    TrialQueued {
        id: u64,
        hypothesis: u64,
        seed: u64,
        attempt: u32,
    },
    TrialLaunching {
        id: u64,
        key: String,
        reserved_cpu: f64,
        reserved_gpu: f64,
    },
    TrialSubmitted {
        id: u64,
        handle: JobHandle,
    },
    TrialFinished {
        id: u64,
        status: TrialStatus,
        objective: Option<f64>,
        spent_cpu: f64,
        spent_gpu: f64,
        summary: String,
    },
    TrialDiagnosed {
        id: u64,
        diagnosis: Diagnosis,
        action: String,
    },
    TrialDropped {
        id: u64,
        reason: String,
    },
    /// The `[stopping]` rule stopped a running trial. The inputs of the
    /// decision are recorded so that it replays: the trial's best value so
    /// far of `metric` at `step`, and each completed trial's report at that
    /// step (`references`: trial id and value), whose median it lost to.
    TrialStopped {
        id: u64,
        metric: String,
        step: u32,
        value: f64,
        references: Vec<(u64, f64)>,
        median: f64,
        /// Seconds it had run, and the median run time of the completed
        /// trials: their difference times its CPUs is the CPU saved.
        ran_secs: f64,
        typical_secs: f64,
    },
    CampaignFinished {
        state: CampaignState,
        summary: String,
    },
    /// Insight records derived from an ending campaign's trials, written in
    /// the transaction that ends it.
    InsightsRecorded {
        /// The campaign's name (the event carries its id).
        campaign: String,
        /// Records stored (a record already present is not counted).
        count: u64,
        /// sha256 of the stored records' JSON bytes, each followed by `\n`:
        /// the chain covers the records through it.
        sha256: String,
    },
    /// `reagent insights import`: records read from a file.
    InsightsImported {
        /// The file as named on the command line.
        file: String,
        /// sha256 of the file's bytes.
        sha256: String,
        imported: u64,
        /// Records already present (same id).
        skipped: u64,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
