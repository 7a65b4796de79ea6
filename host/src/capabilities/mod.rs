//! The imports a strategy can call, one file per interface, each the same
//! shape: an `impl Host for CallState` whose every function goes through
//! [`CallState::answer`], which counts the call against the host-call limit,
//! caps the argument size, charges the arguments and the answer to the
//! call's byte budget and the record cap *before* the answer is copied
//! anywhere, and records the response (or, when replaying, answers from the
//! recorded transcript).
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

use crate::limits::Limits;
use crate::limits::{CallLimiter, HOST_CALL_OVERHEAD_BYTES, ITEM_OVERHEAD_BYTES};
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
    /// Bytes that crossed the boundary so far (see `Limits::max_call_bytes`).
    pub(crate) boundary_bytes: u64,
    /// Bytes of `transcript` as JSON (see `Limits::max_recorded_bytes`).
    pub(crate) recorded_bytes: u64,
    pub(crate) log: StrategyLog,
    pub(crate) log_bytes: u64,
    /// The limit a capability enforced by trapping, so the sandbox can
    /// report it as a typed error rather than a generic trap.
    pub(crate) fault: Option<CallError>,
    /// Whether the operator granted `llm` (otherwise it answers an error).
    pub(crate) llm_granted: bool,
    /// Whether the operator granted `insights` (otherwise every query
    /// answers an empty page).
    pub(crate) insights_granted: bool,
    /// Whether the operator granted `memory` (otherwise nothing is kept:
    /// `get` answers nothing and `set` an error).
    pub(crate) memory_granted: bool,
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
            boundary_bytes: 0,
            recorded_bytes: 0,
            log: StrategyLog::default(),
            log_bytes: 0,
            fault: None,
            llm_granted: false,
            insights_granted: false,
            memory_granted: false,
            waited: Duration::ZERO,
        }
    }

    /// Traps the guest with a typed error.
    pub(crate) fn fail<T>(&mut self, error: CallError) -> wasmtime::Result<T> {
        let message = error.to_string();
        self.fault.get_or_insert(error);
        Err(wasmtime::Error::msg(message))
    }

    /// Counts one import call, checks its argument size and charges it to
    /// the call's byte budget. `payload_bytes` is the arguments' size with
    /// `ITEM_OVERHEAD_BYTES` per list element (see [`items_bytes`]).
    pub(crate) fn admit(&mut self, function: &str, payload_bytes: u64) -> wasmtime::Result<()> {
        self.host_calls += 1;
        if self.host_calls > self.limits.max_host_calls {
            let limit = self.limits.max_host_calls;
            return self.fail(CallError::HostCallLimit { limit });
        }
        if payload_bytes > self.limits.max_host_call_payload_bytes {
            let limit = self.limits.max_host_call_payload_bytes;
            return self.fail(CallError::PayloadTooLarge {
                function: function.to_string(),
                size: payload_bytes,
                limit,
            });
        }
        self.charge(HOST_CALL_OVERHEAD_BYTES.saturating_add(payload_bytes))
    }

    /// Adds `bytes` to what crossed the boundary in this call; past the
    /// budget the call ends with `byte-budget`.
    pub(crate) fn charge(&mut self, bytes: u64) -> wasmtime::Result<()> {
        self.boundary_bytes = self.boundary_bytes.saturating_add(bytes);
        if self.boundary_bytes > self.limits.max_call_bytes {
            let error = CallError::ByteBudget {
                used: self.boundary_bytes,
                limit: self.limits.max_call_bytes,
            };
            return self.fail(error);
        }
        Ok(())
    }

    /// Answers one import call: live from `live`, or from the transcript
    /// when replaying. Either way the answer is recorded.
    pub(crate) fn answer<Req, Resp>(
        &mut self,
        function: &str,
        request: Req,
        payload_bytes: u64,
        live: impl FnOnce(&mut CallState) -> Resp,
    ) -> wasmtime::Result<Resp>
    where
        Req: Serialize,
        Resp: Serialize + DeserializeOwned,
    {
        self.admit(function, payload_bytes)?;
        let request = serde_json::to_value(&request)?;
        // The answer and its size as JSON. When replaying a call that was
        // stopped at a limit, the recording has only the size.
        let (response, answer_bytes): (Option<Resp>, u64) = if let Answers::Live(_) = self.answers {
            let response = live(self);
            let bytes = json_len(&response);
            (Some(response), bytes)
        } else {
            let next = match &mut self.answers {
                Answers::Replay(calls) => calls.pop_front(),
                Answers::Live(_) => None,
            };
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
            match recorded.withheld {
                Some(bytes) => (None, bytes),
                None => match serde_json::from_value::<Resp>(recorded.response) {
                    Ok(r) => {
                        let bytes = json_len(&r);
                        (Some(r), bytes)
                    }
                    Err(e) => {
                        return self.fail(CallError::ReplayDiverged {
                            reason: format!("recorded answer to {function} is unreadable: {e}"),
                        });
                    }
                },
            }
        };
        // Weigh the answer before it is copied into the record or the guest:
        // it counts against the byte budget, and the request and answer
        // against the record cap. A call stopped here is recorded with the
        // answer's size only, so replay stops at the same place.
        if let Err(limit) = self.weigh(function, &request, answer_bytes) {
            self.transcript.push(HostCall {
                function: function.to_string(),
                request,
                response: serde_json::Value::Null,
                withheld: Some(answer_bytes),
            });
            return Err(limit);
        }
        let Some(response) = response else {
            return self.fail(CallError::ReplayDiverged {
                reason: format!(
                    "the recorded answer to {function} was withheld at a limit, but it fits now"
                ),
            });
        };
        self.transcript.push(HostCall {
            function: function.to_string(),
            request,
            response: serde_json::to_value(&response)?,
            withheld: None,
        });
        Ok(response)
    }

    /// Charges an answer of `answer_bytes` to the byte budget and the call
    /// and its answer to the record cap.
    fn weigh(
        &mut self,
        function: &str,
        request: &serde_json::Value,
        answer_bytes: u64,
    ) -> wasmtime::Result<()> {
        self.charge(answer_bytes)?;
        let recorded = self
            .recorded_bytes
            .saturating_add(function.len() as u64)
            .saturating_add(json_len(request))
            .saturating_add(answer_bytes);
        if recorded > self.limits.max_recorded_bytes {
            let limit = self.limits.max_recorded_bytes;
            return self.fail(CallError::RecordLimit {
                size: recorded,
                limit,
            });
        }
        self.recorded_bytes = recorded;
        Ok(())
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

/// The size of `value` as JSON, counted without building the text.
fn json_len<T: Serialize + ?Sized>(value: &T) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serialising our own answer types cannot fail; if it did, the
    // record would fail the same way right after.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// The argument size of a list: each element's bytes plus
/// `ITEM_OVERHEAD_BYTES`, so a list of empty items is not free.
pub(crate) fn items_bytes<I: IntoIterator<Item = usize>>(items: I) -> u64 {
    items.into_iter().fold(0u64, |sum, len| {
        sum.saturating_add(len as u64)
            .saturating_add(ITEM_OVERHEAD_BYTES)
    })
}

/// `types` declares no functions, but the generated trait must exist.
impl crate::contract::types::Host for CallState {}
