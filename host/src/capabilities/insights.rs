//! `reagent:strategy/insights`: read-only queries over effects recorded in
//! past campaigns of this workspace.
//!
//! Grants: linked for generators. Without the grant a component importing
//! it still loads (so one component serves a workspace that keeps
//! campaigns blind to each other) and every query answers an empty page.
//! Page sizes are capped.

use super::CallState;
use crate::contract::insights::{Host, InsightPage, Query};

impl Host for CallState {
    fn find(&mut self, q: Query, cursor: u64, limit: u32) -> wasmtime::Result<InsightPage> {
        let limit = self.page_limit(limit);
        let size = match &q {
            Query::ByKnob(s) | Query::ByTag(s) => s.len() as u64,
            Query::TopEffects | Query::KnownFailures => 0,
        };
        let granted = self.insights_granted;
        self.answer("insights.find", (&q, cursor, limit), size, |s| {
            s.data().filter(|_| granted).map_or(
                InsightPage {
                    items: Vec::new(),
                    next: None,
                },
                |d| d.insights(&q, cursor, limit),
            )
        })
    }
}
