//! `reagent:strategy/insights`: read-only queries over effects recorded in
//! past campaigns of this workspace.
//!
//! Grants: linked for generators; a strategy whose grants exclude insights
//! is refused at load if it imports this interface. Page sizes are capped.

use super::CallState;
use crate::contract::insights::{Host, InsightPage, Query};

impl Host for CallState {
    fn find(&mut self, q: Query, cursor: u64, limit: u32) -> wasmtime::Result<InsightPage> {
        let limit = self.page_limit(limit);
        let size = match &q {
            Query::ByKnob(s) | Query::ByTag(s) => s.len() as u64,
            Query::TopEffects | Query::KnownFailures => 0,
        };
        self.answer("insights.find", (&q, cursor, limit), size, |s| {
            s.data().map_or(
                InsightPage {
                    items: Vec::new(),
                    next: None,
                },
                |d| d.insights(&q, cursor, limit),
            )
        })
    }
}
