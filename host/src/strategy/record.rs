//! The record of one strategy call: enough to audit it and to replay it
//! bit-identically (component hash, inputs, every host-call response, the
//! output, fuel and memory used).

use serde::{Deserialize, Serialize};

use super::{CallInput, CallOutput, Level, World};
use crate::limits::Limits;

/// One import call the strategy made, with the host's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostCall {
    /// `interface.function`, e.g. `history.trials`.
    pub function: String,
    pub request: serde_json::Value,
    pub response: serde_json::Value,
    /// Set when the answer was not given because it would have passed the
    /// call's byte budget or record cap: its size as JSON, in place of the
    /// answer (`response` is null), so replay stops at the same limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<u64>,
}

/// One line the strategy wrote to the `log` import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub level: Level,
    pub message: String,
}

/// What the strategy wrote, capped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StrategyLog {
    pub lines: Vec<LogLine>,
    /// Lines dropped once the line or byte cap was reached.
    pub dropped_lines: u64,
    /// Captured stdout and stderr (lossy UTF-8), and bytes dropped past the cap.
    pub stdout: String,
    pub stderr: String,
    pub dropped_stdio_bytes: u64,
}

/// Why a call produced no usable output. Every limit is named with its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CallError {
    #[error("out of fuel: the call used its whole budget of {limit} fuel units")]
    OutOfFuel { limit: u64 },
    #[error("deadline: the call ran past its wall-clock limit of {limit_ms} ms")]
    Deadline { limit_ms: u64 },
    #[error(
        "memory limit: the strategy tried to grow its memory to {requested} bytes; the limit is {limit} bytes"
    )]
    MemoryLimit { limit: u64, requested: u64 },
    #[error(
        "table limit: the strategy tried to grow a table to {requested} elements; the limit is {limit}"
    )]
    TableLimit { limit: u64, requested: u64 },
    #[error(
        "instance limit: the component needs more than {limit} core instances, memories or tables"
    )]
    InstanceLimit { limit: u64 },
    #[error("stack overflow: the strategy recursed past the wasm stack limit")]
    StackOverflow,
    #[error("host-call limit: the strategy made more than {limit} import calls")]
    HostCallLimit { limit: u64 },
    #[error("payload too large: an argument to {function} is {size} bytes; the limit is {limit}")]
    PayloadTooLarge {
        function: String,
        size: u64,
        limit: u64,
    },
    #[error(
        "byte budget: the call moved {used} bytes across the host boundary (arguments, answers, output); the limit is {limit}"
    )]
    ByteBudget { used: u64, limit: u64 },
    #[error(
        "record limit: the call's recorded host calls would take {size} bytes; the limit is {limit}"
    )]
    RecordLimit { size: u64, limit: u64 },
    #[error("output too large: {size} bytes; the limit is {limit}")]
    OutputTooLarge { size: u64, limit: u64 },
    #[error("invalid output: {reason}")]
    InvalidOutput { reason: String },
    #[error("trap: {message}{}", if backtrace.is_empty() { String::new() } else { format!("\nguest backtrace:\n{backtrace}") })]
    Trap { message: String, backtrace: String },
    #[error("replay diverged: {reason}")]
    ReplayDiverged { reason: String },
}

impl CallError {
    /// A short stable name for the error kind (`out-of-fuel`, `trap`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::OutOfFuel { .. } => "out-of-fuel",
            CallError::Deadline { .. } => "deadline",
            CallError::MemoryLimit { .. } => "memory-limit",
            CallError::TableLimit { .. } => "table-limit",
            CallError::InstanceLimit { .. } => "instance-limit",
            CallError::StackOverflow => "stack-overflow",
            CallError::HostCallLimit { .. } => "host-call-limit",
            CallError::PayloadTooLarge { .. } => "payload-too-large",
            CallError::ByteBudget { .. } => "byte-budget",
            CallError::RecordLimit { .. } => "record-limit",
            CallError::OutputTooLarge { .. } => "output-too-large",
            CallError::InvalidOutput { .. } => "invalid-output",
            CallError::Trap { .. } => "trap",
            CallError::ReplayDiverged { .. } => "replay-diverged",
        }
    }

    /// True when the strategy misbehaved (the campaign gives it a strike).
    pub fn is_strike(&self) -> bool {
        !matches!(self, CallError::ReplayDiverged { .. })
    }
}

/// Resources one call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub fuel: u64,
    /// Peak linear memory, summed over the component's memories.
    pub peak_memory_bytes: u64,
    pub host_calls: u64,
    /// Wall time in microseconds (informational; not part of replay).
    pub wall_us: u64,
}

/// Everything about one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub component_sha256: String,
    pub world: World,
    pub input: CallInput,
    pub limits: Limits,
    pub host_calls: Vec<HostCall>,
    pub outcome: Result<CallOutput, CallError>,
    /// sha256 of the raw output as JSON, before validation (None when the
    /// call trapped or the output was too large).
    pub output_sha256: Option<String>,
    pub usage: Usage,
    pub log: StrategyLog,
}

impl CallRecord {
    /// The part of the record replay must reproduce exactly: the outcome,
    /// the raw output hash and the host calls, as canonical JSON bytes.
    pub fn decision_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&(&self.outcome, &self.output_sha256, &self.host_calls))
            .unwrap_or_default()
    }
}

impl From<crate::limits::LimitHit> for CallError {
    fn from(hit: crate::limits::LimitHit) -> Self {
        use crate::limits::LimitHit;
        match hit {
            LimitHit::Memory { limit, requested } => CallError::MemoryLimit { limit, requested },
            LimitHit::Table { limit, requested } => CallError::TableLimit { limit, requested },
        }
    }
}
