//! The imports a strategy can call, one file per interface, each the same
//! shape: an `impl Host for CallState` whose every function goes through
//! [`CallState::answer`], which counts the call against the host-call limit,
//! caps the argument size, and records the response (or, when replaying,
//! answers from the recorded transcript).
//!
//! A security reviewer audits one file per capability:
//! `log.rs`, `history.rs`, `insights.rs`, `memory.rs`, `llm.rs` (the
//! language-model gateway, answered only under the `llm` grant), and
//! `wasi.rs` (the empty virtual WASI).

pub mod history;
pub mod insights;
pub mod llm;
pub mod log;
pub mod memory;
pub mod wasi;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::sandbox::Limits;
use crate::sandbox::limits::CallLimiter;
use crate::strategy::data::{MemoryStore, StrategyData};
use crate::strategy::record::{CallError, HostCall, StrategyLog};

/// Where import answers come from.
pub enum Answers {
    /// From the campaign's data, recorded as they are given.
    Live(Arc<dyn StrategyData>),
    /// From a recorded transcript, in order; any mismatch is divergence.
    Replay(VecDeque<HostCall>),
}

/// The per-call state every import sees. Built fresh for each call and
/// dropped with the store after it.
pub struct CallState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    /// The call's virtual monotonic clock (also in `wasi`).
    pub(crate) time: wasi::VirtualTime,
    pub(crate) limiter: CallLimiter,
    pub(crate) limits: Limits,
    pub(crate) answers: Answers,
    pub(crate) memory: MemoryStore,
    pub(crate) transcript: Vec<HostCall>,
    pub(crate) host_calls: u64,
    pub(crate) log: StrategyLog,
    pub(crate) log_bytes: u64,
    /// The limit a capability enforced by trapping, so the sandbox can
    /// report it as a typed error rather than a generic trap.
    pub(crate) fault: Option<CallError>,
    /// Whether the operator granted `llm` (otherwise it answers an error).
    pub(crate) llm_granted: bool,
    /// Time spent waiting on the language-model endpoint; not charged to
    /// the call's wall-clock deadline.
    pub(crate) waited: Duration,
}

impl CallState {
    pub(crate) fn new(
        wasi: WasiCtx,
        time: wasi::VirtualTime,
        limits: Limits,
        answers: Answers,
        memory: MemoryStore,
    ) -> Self {
        CallState {
            wasi,
            table: ResourceTable::new(),
            time,
            limiter: CallLimiter::new(&limits),
            limits,
            answers,
            memory,
            transcript: Vec::new(),
            host_calls: 0,
            log: StrategyLog::default(),
            log_bytes: 0,
            fault: None,
            llm_granted: false,
            waited: Duration::ZERO,
        }
    }

    /// Traps the guest with a typed error.
    pub(crate) fn fail<T>(&mut self, error: CallError) -> wasmtime::Result<T> {
        let message = error.to_string();
        self.fault.get_or_insert(error);
        Err(wasmtime::Error::msg(message))
    }

    /// Counts one import call and checks its argument size.
    pub(crate) fn admit(&mut self, function: &str, payload_bytes: usize) -> wasmtime::Result<()> {
        self.host_calls += 1;
        if self.host_calls > self.limits.max_host_calls {
            let limit = self.limits.max_host_calls;
            return self.fail(CallError::HostCallLimit { limit });
        }
        if payload_bytes as u64 > self.limits.max_host_call_payload_bytes {
            let limit = self.limits.max_host_call_payload_bytes;
            return self.fail(CallError::PayloadTooLarge {
                function: function.to_string(),
                size: payload_bytes as u64,
                limit,
            });
        }
        Ok(())
    }

    /// Answers one import call: live from `live`, or from the transcript
    /// when replaying. Either way the answer is recorded.
    pub(crate) fn answer<Req, Resp>(
        &mut self,
        function: &str,
        request: Req,
        payload_bytes: usize,
        live: impl FnOnce(&mut CallState) -> Resp,
    ) -> wasmtime::Result<Resp>
    where
        Req: Serialize,
        Resp: Serialize + DeserializeOwned,
    {
        self.admit(function, payload_bytes)?;
        let request = serde_json::to_value(&request)?;
        let response = if let Answers::Live(_) = self.answers {
            live(self)
        } else {
            let next = match &mut self.answers {
                Answers::Replay(calls) => calls.pop_front(),
                Answers::Live(_) => None,
            };
            {
                let Some(recorded) = next else {
                    return self.fail(CallError::ReplayDiverged {
                        reason: format!("the strategy called {function} beyond the recorded calls"),
                    });
                };
                if recorded.function != function || recorded.request != request {
                    return self.fail(CallError::ReplayDiverged {
                        reason: format!(
                            "host call {} was {} {}; the recording has {} {}",
                            self.transcript.len(),
                            function,
                            request,
                            recorded.function,
                            recorded.request
                        ),
                    });
                }
                match serde_json::from_value(recorded.response) {
                    Ok(r) => r,
                    Err(e) => {
                        return self.fail(CallError::ReplayDiverged {
                            reason: format!("recorded answer to {function} is unreadable: {e}"),
                        });
                    }
                }
            }
        };
        self.transcript.push(HostCall {
            function: function.to_string(),
            request,
            response: serde_json::to_value(&response)?,
        });
        Ok(response)
    }

    /// The live data source (None while replaying).
    pub(crate) fn data(&self) -> Option<&Arc<dyn StrategyData>> {
        match &self.answers {
            Answers::Live(data) => Some(data),
            Answers::Replay(_) => None,
        }
    }

    /// Page sizes the guest asks for are capped by the host.
    pub(crate) fn page_limit(&self, asked: u32) -> u32 {
        asked.clamp(1, self.limits.max_page_items)
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// `types` declares no functions, but the generated trait must exist.
impl crate::sandbox::bindings::types::Host for CallState {}
