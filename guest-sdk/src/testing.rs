//! A stand-in for the host's imports, so strategy logic runs in native unit
//! tests. Install a [`MockHost`] on the current thread, call your trait
//! methods, then inspect what was logged or stored.
//!
//! ```ignore
//! reagent_sdk::testing::install(MockHost { trials: my_trials, ..Default::default() });
//! let out = MyStrategy::propose(&ctx, 8);
//! let host = reagent_sdk::testing::take();
//! assert!(host.logs.iter().any(|(_, line)| line.contains("validate")));
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use crate::{HypothesisSummary, Level, TrialSummary};

/// What the imports answer with while testing natively.
#[derive(Default, Debug, Clone)]
pub struct MockHost {
    pub trials: Vec<TrialSummary>,
    pub hypotheses: Vec<HypothesisSummary>,
    pub curves: HashMap<(u64, String), Vec<(u32, f64)>>,
    #[cfg(feature = "generator")]
    pub insights: Vec<crate::Insight>,
    pub memory: BTreeMap<String, Vec<u8>>,
    pub logs: Vec<(Level, String)>,
    /// Answers `llm::complete` gives, in order (an error once they run out).
    #[cfg(feature = "llm")]
    pub llm_replies: std::collections::VecDeque<Result<crate::llm::Completion, String>>,
    /// What the strategy sent to `llm::complete`: (messages, max_tokens).
    #[cfg(feature = "llm")]
    pub llm_prompts: Vec<(Vec<crate::llm::Message>, u32)>,
}

thread_local! {
    static HOST: RefCell<MockHost> = RefCell::new(MockHost::default());
}

/// Makes `host` answer this thread's import calls.
pub fn install(host: MockHost) {
    HOST.with(|h| *h.borrow_mut() = host);
}

/// Takes back the host (with what the strategy logged and stored).
pub fn take() -> MockHost {
    HOST.with(|h| std::mem::take(&mut *h.borrow_mut()))
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn with_host<R>(f: impl FnOnce(&mut MockHost) -> R) -> R {
    HOST.with(|h| f(&mut h.borrow_mut()))
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn page<T: Clone>(items: &[T], cursor: u64, limit: u32) -> (Vec<T>, Option<u64>) {
    let start = (cursor as usize).min(items.len());
    let end = start.saturating_add(limit.max(1) as usize).min(items.len());
    let next = (end < items.len()).then_some(end as u64);
    (items[start..end].to_vec(), next)
}

#[cfg(feature = "generator")]
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn insight_matches(i: &crate::Insight, q: &crate::InsightQuery) -> bool {
    use crate::InsightQuery;
    match q {
        InsightQuery::ByKnob(k) => i.assignments.iter().any(|a| &a.knob == k),
        InsightQuery::ByTag(t) => i.tags.contains(t),
        InsightQuery::TopEffects => i.failure.is_none(),
        InsightQuery::KnownFailures => i.failure.is_some(),
    }
}
