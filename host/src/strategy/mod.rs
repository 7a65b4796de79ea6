//! What the host knows about strategies, independent of how they run:
//! the contract's data types, where strategies come from, the data they may
//! read, the record of a call, and validation of what they return.
//!
//! Nothing here touches wasmtime; `sandbox` runs the calls.

pub mod builtin;
pub mod data;
pub mod record;
pub mod validate;

pub use crate::contract::history::{HypothesisPage, TrialPage};
pub use crate::contract::insights::{Insight, InsightPage, Query as InsightQuery};
pub use crate::contract::llm::{Completion as LlmCompletion, Message as LlmMessage};
pub use crate::contract::log::Level;
pub use crate::contract::types::{
    Action, Assignment, Context, Diagnosis, Direction, Estimate, FailureClass, FailureReport,
    FloatRange, Hypothesis, HypothesisSummary, IntRange, KnobKind, KnobSpec, Objective, Phase,
    TrialStatus, TrialSummary, Value,
};

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which of the two worlds a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    Generator,
    Debugger,
}

impl World {
    pub fn name(self) -> &'static str {
        match self {
            World::Generator => "generator",
            World::Debugger => "debugger",
        }
    }

    /// The export that identifies the world.
    pub fn export(self) -> &'static str {
        match self {
            World::Generator => "propose",
            World::Debugger => "diagnose",
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reagent:strategy/{}@0.1.0", self.name())
    }
}

/// Where a strategy's component comes from: `builtin:NAME` or a file path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum StrategySource {
    Builtin(String),
    File(PathBuf),
}

impl StrategySource {
    /// Parses `builtin:NAME` or a path.
    pub fn parse(text: &str) -> StrategySource {
        match text.strip_prefix("builtin:") {
            Some(name) => StrategySource::Builtin(name.to_string()),
            None => StrategySource::File(PathBuf::from(text)),
        }
    }
}

impl fmt::Display for StrategySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrategySource::Builtin(name) => write!(f, "builtin:{name}"),
            StrategySource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

impl From<StrategySource> for String {
    fn from(s: StrategySource) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for StrategySource {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty strategy source; expected builtin:NAME or a .wasm path".into());
        }
        Ok(StrategySource::parse(&s))
    }
}

/// Which optional imports the operator granted a strategy. `log` and
/// `history` are always available; the rest must be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grants {
    pub insights: bool,
    pub memory: bool,
    pub llm: bool,
}

impl Grants {
    /// The granted optional capabilities, by import name.
    pub fn names(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.insights {
            out.push("insights");
        }
        if self.memory {
            out.push("memory");
        }
        if self.llm {
            out.push("llm");
        }
        out
    }
}

impl Default for Grants {
    fn default() -> Self {
        Grants {
            insights: true,
            memory: true,
            llm: false,
        }
    }
}

/// The arguments of one strategy call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "kebab-case")]
pub enum CallInput {
    Propose {
        context: Context,
        max: u32,
    },
    Diagnose {
        context: Context,
        failure: FailureReport,
    },
}

impl CallInput {
    pub fn world(&self) -> World {
        match self {
            CallInput::Propose { .. } => World::Generator,
            CallInput::Diagnose { .. } => World::Debugger,
        }
    }

    pub fn context(&self) -> &Context {
        match self {
            CallInput::Propose { context, .. } | CallInput::Diagnose { context, .. } => context,
        }
    }
}

/// What a strategy call returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallOutput {
    Hypotheses(Vec<Hypothesis>),
    Diagnosis(Diagnosis),
}

/// The stable kebab-case name of a failure class (as in the WIT).
pub fn failure_class_name(class: FailureClass) -> &'static str {
    match class {
        FailureClass::OutOfMemory => "out-of-memory",
        FailureClass::Divergence => "divergence",
        FailureClass::TimeLimit => "time-limit",
        FailureClass::Killed => "killed",
        FailureClass::Infrastructure => "infrastructure",
        FailureClass::ProgramError => "program-error",
        FailureClass::MissingMetrics => "missing-metrics",
        FailureClass::Unknown => "unknown",
    }
}

/// A value as plain JSON (number, string or boolean), for params files and
/// reports.
pub fn value_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Float(x) => serde_json::json!(x),
        Value::Int(i) => serde_json::json!(i),
        Value::Choice(s) => serde_json::json!(s),
        Value::Flag(b) => serde_json::json!(b),
    }
}

/// Renders a value the way it appears in configs and reports.
pub fn render_value(value: &Value) -> String {
    match value {
        Value::Float(x) => format!("{x}"),
        Value::Int(i) => format!("{i}"),
        Value::Choice(s) => s.clone(),
        Value::Flag(b) => format!("{b}"),
    }
}
