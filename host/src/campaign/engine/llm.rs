//! The engine's side of the `llm` capability: what a generator reads in a
//! campaign (the view's data plus, when granted, the campaign's language
//! model) and the token count each call's transcript shows.

use crate::llm::{Gateway, tokens};
use crate::spec::Campaign;
use crate::strategy::data::{StaticData, StrategyData};
use crate::strategy::record::CallRecord;
use crate::strategy::{
    HypothesisPage, InsightPage, InsightQuery, LlmCompletion, LlmMessage, TrialPage,
};

/// A generator's data source in a campaign.
pub(super) struct CampaignData {
    data: StaticData,
    llm: Option<Gateway>,
}

impl CampaignData {
    /// `tokens_used`: what the campaign's earlier calls used.
    pub(super) fn new(data: StaticData, spec: &Campaign, tokens_used: u64) -> CampaignData {
        let llm = match (&spec.llm, spec.strategies.grants.llm) {
            (Some(config), true) => Some(Gateway::new(config.clone(), tokens_used)),
            _ => None,
        };
        CampaignData { data, llm }
    }
}

impl StrategyData for CampaignData {
    fn trial_count(&self) -> u64 {
        self.data.trial_count()
    }
    fn trials(&self, cursor: u64, limit: u32) -> TrialPage {
        self.data.trials(cursor, limit)
    }
    fn hypotheses(&self, cursor: u64, limit: u32) -> HypothesisPage {
        self.data.hypotheses(cursor, limit)
    }
    fn curve(&self, trial: u64, metric: &str) -> Vec<(u32, f64)> {
        self.data.curve(trial, metric)
    }
    fn insights(&self, query: &InsightQuery, cursor: u64, limit: u32) -> InsightPage {
        self.data.insights(query, cursor, limit)
    }
    fn out_of_space_is_a_request(&self) -> bool {
        self.data.out_of_space_is_a_request()
    }
    fn complete(&self, messages: &[LlmMessage], max_tokens: u32) -> Result<LlmCompletion, String> {
        match &self.llm {
            Some(gateway) => gateway.complete(messages, max_tokens),
            None => Err(
                "this campaign has no language model ([llm] and `grants = { llm = true }`)".into(),
            ),
        }
    }
}

/// What one call's transcript shows of the language model.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct LlmUsage {
    pub calls: u32,
    pub tokens: u64,
    /// The reasons of the calls that were answered with an error.
    pub errors: Vec<String>,
}

/// Counts the `llm.complete` answers in a call's transcript.
pub(super) fn usage(record: &CallRecord) -> LlmUsage {
    let mut out = LlmUsage::default();
    for call in record
        .host_calls
        .iter()
        .filter(|c| c.function == "llm.complete")
    {
        out.calls += 1;
        match serde_json::from_value::<Result<LlmCompletion, String>>(call.response.clone()) {
            Ok(Ok(c)) => out.tokens += tokens(&c),
            Ok(Err(reason)) => out.errors.push(reason),
            Err(e) => out.errors.push(format!("unreadable answer: {e}")),
        }
    }
    out
}
