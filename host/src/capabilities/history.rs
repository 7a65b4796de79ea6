//! `reagent:strategy/history`: paged, read-only queries over this
//! campaign's hypotheses and trials.
//!
//! Grants: always linked. Reads only the campaign data the host passed in
//! (never the holdout metric, which the host leaves out of summaries).
//! Page sizes are capped at `max_page_items`.

use super::CallState;
use crate::contract::history::{Host, HypothesisPage, TrialPage};

impl Host for CallState {
    fn trial_count(&mut self) -> wasmtime::Result<u64> {
        self.answer("history.trial-count", (), 0, |s| {
            s.data().map_or(0, |d| d.trial_count())
        })
    }

    fn trials(&mut self, cursor: u64, limit: u32) -> wasmtime::Result<TrialPage> {
        let limit = self.page_limit(limit);
        self.answer("history.trials", (cursor, limit), 12, |s| {
            s.data().map_or(
                TrialPage {
                    items: Vec::new(),
                    next: None,
                },
                |d| d.trials(cursor, limit),
            )
        })
    }

    fn hypotheses(&mut self, cursor: u64, limit: u32) -> wasmtime::Result<HypothesisPage> {
        let limit = self.page_limit(limit);
        self.answer("history.hypotheses", (cursor, limit), 12, |s| {
            s.data().map_or(
                HypothesisPage {
                    items: Vec::new(),
                    next: None,
                },
                |d| d.hypotheses(cursor, limit),
            )
        })
    }

    fn curve(&mut self, trial: u64, metric: String) -> wasmtime::Result<Vec<(u32, f64)>> {
        let size = metric.len() as u64;
        self.answer("history.curve", (trial, &metric), size, |s| {
            s.data().map_or(Vec::new(), |d| d.curve(trial, &metric))
        })
    }
}
