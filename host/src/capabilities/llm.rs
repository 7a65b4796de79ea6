//! `reagent:strategy/llm`: host-mediated language-model completions.
//!
//! Linked for generators. Without the `llm` grant every call answers
//! `Err("… not granted …")` and nothing leaves the host; with it, the
//! campaign's [`crate::llm::Gateway`] sends the messages to the endpoint
//! the operator configured in `[llm]`, with a key the strategy never sees.
//! The request (messages, max-tokens) and the answer go into the call's
//! transcript like every import answer: the audit log holds every prompt
//! and response, and replay answers from it without the network.
//!
//! Time spent waiting for the endpoint does not count against the call's
//! wall-clock deadline (see `sandbox::run_inner`); it is bounded by
//! `llm.timeout` × `llm.max_calls` instead.

use std::time::Instant;

use super::CallState;
use crate::contract::llm::{Completion, Host, Message};

impl Host for CallState {
    fn complete(
        &mut self,
        messages: Vec<Message>,
        max_tokens: u32,
    ) -> wasmtime::Result<Result<Completion, String>> {
        // Each message costs its overhead too: two million empty messages
        // are not 0 bytes.
        let size = super::items_bytes(messages.iter().map(|m| m.role.len() + m.content.len()));
        let granted = self.llm_granted;
        let started = Instant::now();
        let answer = self.answer("llm.complete", (&messages, max_tokens), size, |s| {
            if !granted {
                return Err(
                    "the operator did not grant `llm` to this strategy ([strategies] grants)"
                        .to_string(),
                );
            }
            match s.data() {
                Some(data) => data.complete(&messages, max_tokens),
                None => Err("no language model while replaying".to_string()),
            }
        });
        self.waited += started.elapsed();
        answer
    }
}
