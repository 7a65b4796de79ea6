//! The data a strategy may read during a call, behind one trait.
//!
//! The campaign engine answers from the store; `reagent strategy try` and
//! the tests answer from a [`StaticData`] loaded from JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    HypothesisPage, HypothesisSummary, Insight, InsightPage, InsightQuery, LlmCompletion,
    LlmMessage, TrialPage, TrialSummary,
};

/// Read-only answers to the `history` and `insights` imports.
pub trait StrategyData: Send + Sync {
    fn trial_count(&self) -> u64;
    fn trials(&self, cursor: u64, limit: u32) -> TrialPage;
    fn hypotheses(&self, cursor: u64, limit: u32) -> HypothesisPage;
    fn curve(&self, trial: u64, metric: &str) -> Vec<(u32, f64)>;
    fn insights(&self, query: &InsightQuery, cursor: u64, limit: u32) -> InsightPage;
    /// Answers the `llm` import for a strategy granted it. Only campaigns
    /// with `[llm]` configured have a language model.
    fn complete(
        &self,
        _messages: &[LlmMessage],
        _max_tokens: u32,
    ) -> Result<LlmCompletion, String> {
        Err("no language model is configured here (a campaign needs an [llm] section and `grants = { llm = true }`)".into())
    }
    /// Whether a knob value of the right kind but outside the approved
    /// space is a request for a human (in a campaign) rather than an
    /// invalid answer (everywhere else).
    fn out_of_space_is_a_request(&self) -> bool {
        false
    }
}

/// One metric curve of one trial.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Curve {
    pub trial: u64,
    pub metric: String,
    /// (step, value) pairs.
    pub points: Vec<(u32, f64)>,
}

/// Strategy data held in memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticData {
    pub trials: Vec<TrialSummary>,
    pub hypotheses: Vec<HypothesisSummary>,
    pub curves: Vec<Curve>,
    pub insights: Vec<Insight>,
    /// See [`StrategyData::out_of_space_is_a_request`]; set by campaigns.
    #[serde(skip)]
    pub out_of_space_requests: bool,
}

fn page<T: Clone>(items: &[T], cursor: u64, limit: u32) -> (Vec<T>, Option<u64>) {
    let start = usize::try_from(cursor)
        .unwrap_or(usize::MAX)
        .min(items.len());
    let end = start.saturating_add(limit as usize).min(items.len());
    let next = (end < items.len()).then_some(end as u64);
    (items[start..end].to_vec(), next)
}

impl StrategyData for StaticData {
    fn out_of_space_is_a_request(&self) -> bool {
        self.out_of_space_requests
    }

    fn trial_count(&self) -> u64 {
        self.trials.len() as u64
    }

    fn trials(&self, cursor: u64, limit: u32) -> TrialPage {
        let (items, next) = page(&self.trials, cursor, limit);
        TrialPage { items, next }
    }

    fn hypotheses(&self, cursor: u64, limit: u32) -> HypothesisPage {
        let (items, next) = page(&self.hypotheses, cursor, limit);
        HypothesisPage { items, next }
    }

    fn curve(&self, trial: u64, metric: &str) -> Vec<(u32, f64)> {
        self.curves
            .iter()
            .find(|c| c.trial == trial && c.metric == metric)
            .map(|c| c.points.clone())
            .unwrap_or_default()
    }

    fn insights(&self, query: &InsightQuery, cursor: u64, limit: u32) -> InsightPage {
        let mut matching: Vec<Insight> = self
            .insights
            .iter()
            .filter(|i| match query {
                InsightQuery::ByKnob(k) => i.assignments.iter().any(|a| &a.knob == k),
                InsightQuery::ByTag(t) => i.tags.contains(t),
                InsightQuery::TopEffects => i.failure.is_none(),
                InsightQuery::KnownFailures => i.failure.is_some(),
            })
            .cloned()
            .collect();
        if matches!(query, InsightQuery::TopEffects) {
            matching.sort_by(|a, b| b.effect.total_cmp(&a.effect));
        }
        let (items, next) = page(&matching, cursor, limit);
        InsightPage { items, next }
    }
}

/// A strategy's private key-value store (the `memory` import). The host
/// loads it before a call and saves it after; the quota is in `Limits`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemoryStore {
    pub entries: BTreeMap<String, Vec<u8>>,
}

impl MemoryStore {
    /// Bytes counted against the quota: keys plus values.
    pub fn size(&self) -> u64 {
        self.entries
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }
}
