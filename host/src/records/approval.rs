//! Approval requests as the store keeps them: what is asked, its state,
//! its payload and the payload's hash that every decision is bound to.
//! (Who may decide, and how, is `governance`.)

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::spec::DEFAULT_EXPIRY_MS;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalKind {
    /// The campaign's plan: nothing launches before it is approved.
    Plan,
    /// More budget than the plan approved.
    BudgetIncrease,
    /// A hypothesis with knob values outside the approved space.
    OutOfSpace,
    /// The debugger escalated a failure to a human.
    Escalation,
    /// An operator's change of a running campaign's strategies or grants
    /// (`reagent amend`).
    StrategyChange,
}

impl ApprovalKind {
    pub fn name(self) -> &'static str {
        match self {
            ApprovalKind::Plan => "plan",
            ApprovalKind::BudgetIncrease => "budget-increase",
            ApprovalKind::OutOfSpace => "out-of-space",
            ApprovalKind::Escalation => "escalation",
            ApprovalKind::StrategyChange => "strategy-change",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalState {
    Pending,
    Approved,
    Rejected,
    /// Nobody answered in time: denied.
    Expired,
}

impl ApprovalState {
    pub fn name(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Rejected => "rejected",
            ApprovalState::Expired => "expired",
        }
    }
}

/// One approval request and, once decided, its decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRow {
    pub id: u64,
    pub campaign: u64,
    pub kind: ApprovalKind,
    pub state: ApprovalState,
    pub created_ms: u64,
    pub expires_ms: u64,
    /// `agent` for requests the engine raises, else the OS user.
    pub requested_by: String,
    /// One line for humans.
    pub summary: String,
    /// What exactly is asked for (kind-specific JSON).
    pub payload: serde_json::Value,
    /// sha256 of the payload's canonical JSON; decisions are bound to it.
    pub payload_hash: String,
    pub decided_by: Option<String>,
    pub decided_ms: Option<u64>,
    /// The approval note, the rejection reason, or why it expired.
    pub note: Option<String>,
    /// The engine has acted on the decision.
    pub applied: bool,
    /// The hypothesis this request holds back, if it holds back one.
    pub hypothesis: Option<u64>,
}

impl ApprovalRow {
    /// Whether the payload still hashes to the recorded hash.
    pub fn payload_intact(&self) -> bool {
        payload_hash(&self.payload) == self.payload_hash
    }
}

/// sha256 of the canonical JSON of `payload` (object keys sorted at every
/// level, no whitespace).
pub fn payload_hash(payload: &serde_json::Value) -> String {
    let mut bytes = Vec::new();
    canonical(payload, &mut bytes);
    hex::encode(Sha256::digest(&bytes))
}

fn canonical(v: &serde_json::Value, out: &mut Vec<u8>) {
    match v {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(serde_json::to_vec(k).unwrap_or_default());
                out.push(b':');
                canonical(&map[k], out);
            }
            out.push(b'}');
        }
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend(serde_json::to_vec(scalar).unwrap_or_default()),
    }
}
