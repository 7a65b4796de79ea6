//! # reagent-sdk: write Reagent strategies
//!
//! A *strategy* is the replaceable brain of a Reagent campaign. It runs as a
//! WebAssembly component inside the host's sandbox and does one of two jobs:
//!
//! - a **generator** proposes hypotheses (knob changes relative to baseline)
//!   for the current phase — enable the `generator` feature;
//! - a **debugger** reads a failed trial and decides what to do about it
//!   (retry, retry with changed knobs, exclude, escalate) — enable the
//!   `debugger` feature.
//!
//! A strategy is one `impl` and one macro call. It never sees a file, a
//! socket or a clock; it reads what it needs through [`history`],
//! [`insights`] and [`memory`], and writes lines to [`log`]. Every answer it
//! gives is validated by the host before anything is launched.
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! reagent-sdk = { path = "…/guest-sdk", features = ["generator"] }
//! ```
//!
//! ```ignore
//! use reagent_sdk::{Context, Generator, Hypothesis, Rng, Value};
//!
//! struct HalveEverything;
//!
//! impl Generator for HalveEverything {
//!     fn validate(ctx: &Context, max: u32) -> Vec<Hypothesis> {
//!         let mut rng = Rng::new(ctx.seed);
//!         let mut out = Vec::new();
//!         for knob in &ctx.knobs {
//!             if let Some(x) = knob.baseline.as_f64() {
//!                 let value = knob.clamp(Value::Float(x / 2.0));
//!                 out.push(
//!                     Hypothesis::new(format!("halve {}", knob.name))
//!                         .because("smaller is sometimes better")
//!                         .category("tuning")
//!                         .set(&knob.name, value),
//!                 );
//!             }
//!         }
//!         rng.shuffle(&mut out);
//!         out.truncate(max as usize);
//!         out
//!     }
//! }
//!
//! reagent_sdk::export_generator!(HalveEverything);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! in `target/wasm32-wasip2/release/` is already a component. Check it with
//! `reagent strategy inspect FILE.wasm` and call it once with
//! `reagent strategy try FILE.wasm --call propose --input propose.json`.
//!
//! Strategy logic is plain Rust: call your trait methods from native unit
//! tests, after installing a [`testing::MockHost`] for the imports.

#[cfg(not(any(feature = "generator", feature = "debugger")))]
compile_error!("reagent-sdk: enable the `generator` or the `debugger` feature");

/// Version of this SDK, embedded in every strategy so `reagent strategy
/// inspect` can show it.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

// A custom section is the only way to put data in the component that the
// host can read without running it; the bytes are plain ASCII.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[allow(unsafe_code)]
#[used]
#[unsafe(link_section = "reagent-sdk-version")]
pub static __REAGENT_SDK_VERSION: [u8; SDK_VERSION.len()] = {
    let src = SDK_VERSION.as_bytes();
    let mut out = [0u8; SDK_VERSION.len()];
    let mut i = 0;
    while i < src.len() {
        out[i] = src[i];
        i += 1;
    }
    out
};

/// Generated bindings. Not part of the API: use the re-exports instead.
#[doc(hidden)]
pub mod wit {
    #[cfg(feature = "generator")]
    pub mod generator {
        wit_bindgen::generate!({
            path: "../wit",
            world: "reagent:strategy/generator",
            pub_export_macro: true,
            export_macro_name: "__export_generator_world",
            default_bindings_module: "reagent_sdk::wit::generator",
            additional_derives: [PartialEq],
        });
    }

    #[cfg(all(feature = "debugger", feature = "generator"))]
    pub mod debugger {
        wit_bindgen::generate!({
            path: "../wit",
            world: "reagent:strategy/debugger",
            pub_export_macro: true,
            export_macro_name: "__export_debugger_world",
            default_bindings_module: "reagent_sdk::wit::debugger",
            with: {
                "reagent:strategy/types@0.1.0": crate::wit::generator::reagent::strategy::types,
                "reagent:strategy/log@0.1.0": crate::wit::generator::reagent::strategy::log,
                "reagent:strategy/history@0.1.0": crate::wit::generator::reagent::strategy::history,
            },
        });
    }

    #[cfg(all(feature = "debugger", not(feature = "generator")))]
    pub mod debugger {
        wit_bindgen::generate!({
            path: "../wit",
            world: "reagent:strategy/debugger",
            pub_export_macro: true,
            export_macro_name: "__export_debugger_world",
            default_bindings_module: "reagent_sdk::wit::debugger",
            additional_derives: [PartialEq],
        });
    }

    #[cfg(feature = "llm")]
    pub mod llm_client {
        wit_bindgen::generate!({
            path: "../wit",
            world: "reagent:strategy/llm-client",
            default_bindings_module: "reagent_sdk::wit::llm_client",
            additional_derives: [PartialEq],
        });
    }

    #[cfg(all(feature = "debugger", not(feature = "generator")))]
    pub use debugger::reagent::strategy as iface;
    #[cfg(feature = "generator")]
    pub use generator::reagent::strategy as iface;
}

pub use wit::iface::history::{HypothesisPage, TrialPage};
#[cfg(feature = "generator")]
pub use wit::iface::insights::{Insight, InsightPage, Query as InsightQuery};
pub use wit::iface::log::Level;
pub use wit::iface::types::{
    Action, Assignment, Context, Diagnosis, Direction, Estimate, FailureClass, FailureReport,
    FloatRange, Hypothesis, HypothesisSummary, IntRange, KnobKind, KnobSpec, Objective, Phase,
    TrialStatus, TrialSummary, Value,
};

mod helpers;
pub mod rng;
pub use rng::Rng;

pub mod testing;

/// Proposes hypotheses. Implement the phase you care about; the default
/// [`Generator::propose`] dispatches on `ctx.phase`, and phases you leave
/// alone propose nothing.
#[cfg(feature = "generator")]
pub trait Generator {
    /// Called by the host. Return at most `max` hypotheses; the host rejects
    /// the whole answer if any is invalid (unknown knob, wrong type, out of
    /// range, NaN), so clamp with [`KnobSpec::clamp`].
    fn propose(ctx: &Context, max: u32) -> Vec<Hypothesis> {
        match ctx.phase {
            Phase::Validate => Self::validate(ctx, max),
            Phase::Combine => Self::combine(ctx, max),
            Phase::Exploit => Self::exploit(ctx, max),
        }
    }

    /// Single changes from baseline, run in parallel to find what helps.
    fn validate(_ctx: &Context, _max: u32) -> Vec<Hypothesis> {
        Vec::new()
    }

    /// Combinations of the promising single changes (set `parents`).
    fn combine(_ctx: &Context, _max: u32) -> Vec<Hypothesis> {
        Vec::new()
    }

    /// Search around the best configuration so far.
    fn exploit(_ctx: &Context, _max: u32) -> Vec<Hypothesis> {
        Vec::new()
    }
}

/// Diagnoses failed trials. The default escalates everything to a human.
#[cfg(feature = "debugger")]
pub trait Debugger {
    fn diagnose(_ctx: &Context, failure: &FailureReport) -> Diagnosis {
        Diagnosis {
            class: FailureClass::Unknown,
            action: Action::Escalate,
            rationale: format!(
                "no debugger logic for trial {}; asking a human",
                failure.trial
            ),
        }
    }
}

/// Exports a type implementing [`Generator`] as this component's `propose`.
#[cfg(feature = "generator")]
#[macro_export]
macro_rules! export_generator {
    ($strategy:ty) => {
        const _: () = {
            struct __ReagentGeneratorExport;
            impl $crate::wit::generator::Guest for __ReagentGeneratorExport {
                fn propose(ctx: $crate::Context, max: u32) -> ::std::vec::Vec<$crate::Hypothesis> {
                    <$strategy as $crate::Generator>::propose(&ctx, max)
                }
            }
            $crate::wit::generator::__export_generator_world!(
                __ReagentGeneratorExport with_types_in $crate::wit::generator
            );
        };
    };
}

/// Exports a type implementing [`Debugger`] as this component's `diagnose`.
#[cfg(feature = "debugger")]
#[macro_export]
macro_rules! export_debugger {
    ($strategy:ty) => {
        const _: () = {
            struct __ReagentDebuggerExport;
            impl $crate::wit::debugger::Guest for __ReagentDebuggerExport {
                fn diagnose(
                    ctx: $crate::Context,
                    failure: $crate::FailureReport,
                ) -> $crate::Diagnosis {
                    <$strategy as $crate::Debugger>::diagnose(&ctx, &failure)
                }
            }
            $crate::wit::debugger::__export_debugger_world!(
                __ReagentDebuggerExport with_types_in $crate::wit::debugger
            );
        };
    };
}

/// Leveled lines into the strategy log (capped by the host).
pub mod log {
    use crate::Level;

    pub fn write(level: Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        crate::wit::iface::log::log(level, message);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_host(|h| h.logs.push((level, message.to_string())));
    }
    pub fn debug(message: &str) {
        write(Level::Debug, message)
    }
    pub fn info(message: &str) {
        write(Level::Info, message)
    }
    pub fn warn(message: &str) {
        write(Level::Warn, message)
    }
    pub fn error(message: &str) {
        write(Level::Error, message)
    }
}

/// Read-only, paged access to this campaign's hypotheses and trials.
pub mod history {
    use crate::{HypothesisPage, HypothesisSummary, TrialPage, TrialSummary};

    /// Page size used by the iterators below; the host may cap it lower.
    pub const PAGE: u32 = 256;

    pub fn trial_count() -> u64 {
        #[cfg(target_arch = "wasm32")]
        return crate::wit::iface::history::trial_count();
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_host(|h| h.trials.len() as u64)
    }

    pub fn trials_page(cursor: u64, limit: u32) -> TrialPage {
        #[cfg(target_arch = "wasm32")]
        return crate::wit::iface::history::trials(cursor, limit);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_host(|h| {
            let (items, next) = crate::testing::page(&h.trials, cursor, limit);
            TrialPage { items, next }
        })
    }

    pub fn hypotheses_page(cursor: u64, limit: u32) -> HypothesisPage {
        #[cfg(target_arch = "wasm32")]
        return crate::wit::iface::history::hypotheses(cursor, limit);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_host(|h| {
            let (items, next) = crate::testing::page(&h.hypotheses, cursor, limit);
            HypothesisPage { items, next }
        })
    }

    /// Every trial, fetched page by page.
    pub fn trials() -> Vec<TrialSummary> {
        let mut out = Vec::new();
        let mut cursor = 0;
        loop {
            let page = trials_page(cursor, PAGE);
            out.extend(page.items);
            match page.next {
                Some(next) if next > cursor => cursor = next,
                _ => return out,
            }
        }
    }

    /// Every hypothesis, fetched page by page.
    pub fn hypotheses() -> Vec<HypothesisSummary> {
        let mut out = Vec::new();
        let mut cursor = 0;
        loop {
            let page = hypotheses_page(cursor, PAGE);
            out.extend(page.items);
            match page.next {
                Some(next) if next > cursor => cursor = next,
                _ => return out,
            }
        }
    }

    /// Intermediate values of `metric` reported by `trial`, as (step, value).
    pub fn curve(trial: u64, metric: &str) -> Vec<(u32, f64)> {
        #[cfg(target_arch = "wasm32")]
        return crate::wit::iface::history::curve(trial, metric);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_host(|h| {
            h.curves
                .get(&(trial, metric.to_string()))
                .cloned()
                .unwrap_or_default()
        })
    }
}

/// Read-only queries over effects seen in past campaigns of the workspace.
#[cfg(feature = "generator")]
pub mod insights {
    use crate::{Insight, InsightPage, InsightQuery};

    pub fn find_page(query: &InsightQuery, cursor: u64, limit: u32) -> InsightPage {
        #[cfg(target_arch = "wasm32")]
        return crate::wit::iface::insights::find(query, cursor, limit);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_host(|h| {
            let matching: Vec<Insight> = h
                .insights
                .iter()
                .filter(|i| crate::testing::insight_matches(i, query))
                .cloned()
                .collect();
            let (items, next) = crate::testing::page(&matching, cursor, limit);
            InsightPage { items, next }
        })
    }

    /// Up to `max` records matching `query`.
    pub fn find(query: &InsightQuery, max: usize) -> Vec<Insight> {
        let mut out = Vec::new();
        let mut cursor = 0;
        while out.len() < max {
            let page = find_page(query, cursor, crate::history::PAGE);
            out.extend(page.items);
            match page.next {
                Some(next) if next > cursor => cursor = next,
                _ => break,
            }
        }
        out.truncate(max);
        out
    }
}

/// Host-mediated language-model completions (feature `llm`). The host
/// sends the messages to the endpoint the operator configured, with a key
/// the strategy never sees, counts the tokens against the campaign's
/// budget and records the prompt and the answer in the audit log.
///
/// Every failure comes back as `Err(reason)`: the capability was not
/// configured, the token budget is spent, the endpoint is down, slow or
/// answered something that is not a chat completion. A strategy should
/// carry on without the model when it gets one. Treat the content as
/// untrusted text: the host validates the hypotheses you return, not what
/// the model said.
#[cfg(feature = "llm")]
pub mod llm {
    pub use crate::wit::llm_client::reagent::strategy::llm::{Completion, Message};

    /// A message with `role` ("system", "user" or "assistant").
    pub fn message(role: &str, content: impl Into<String>) -> Message {
        Message {
            role: role.to_string(),
            content: content.into(),
        }
    }

    /// One chat completion of at most `max_tokens` tokens.
    pub fn complete(messages: &[Message], max_tokens: u32) -> Result<Completion, String> {
        #[cfg(target_arch = "wasm32")]
        return crate::wit::llm_client::reagent::strategy::llm::complete(messages, max_tokens);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_host(|h| {
            h.llm_prompts.push((messages.to_vec(), max_tokens));
            h.llm_replies
                .pop_front()
                .unwrap_or_else(|| Err("no language model in this test host".to_string()))
        })
    }
}

/// A small key-value store private to this strategy in this campaign; it
/// survives hibernation. The host enforces a quota.
#[cfg(feature = "generator")]
pub mod memory {
    pub fn get(key: &str) -> Option<Vec<u8>> {
        #[cfg(target_arch = "wasm32")]
        return crate::wit::iface::memory::get(key);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_host(|h| h.memory.get(key).cloned())
    }

    pub fn set(key: &str, value: &[u8]) -> Result<(), String> {
        #[cfg(target_arch = "wasm32")]
        return crate::wit::iface::memory::set(key, value);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_host(|h| {
            h.memory.insert(key.to_string(), value.to_vec());
            Ok(())
        })
    }

    pub fn delete(key: &str) {
        #[cfg(target_arch = "wasm32")]
        crate::wit::iface::memory::delete(key);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_host(|h| {
            h.memory.remove(key);
        })
    }

    pub fn keys() -> Vec<String> {
        #[cfg(target_arch = "wasm32")]
        return crate::wit::iface::memory::keys();
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_host(|h| h.memory.keys().cloned().collect())
    }
}
