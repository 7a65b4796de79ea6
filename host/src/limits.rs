//! Every limit a strategy call runs under, in one place.
//!
//! Defaults are generous for a well-behaved strategy (the built-ins use a
//! small fraction of each) and small enough that a hostile one cannot hurt
//! the host. Operators override them per strategy in the campaign file.

use serde::{Deserialize, Serialize};
use wasmtime::ResourceLimiter;

/// The most linear memory any strategy may be configured to use (the
/// pooling allocator's slot size).
pub const MAX_MEMORY_BYTES: u64 = 1 << 30;
/// The most core instances (and memories, tables) per component (the
/// pooling allocator's per-component counts).
pub const MAX_INSTANCES: u32 = 64;

/// The `llm` gateway's caps on what an endpoint's answer may bring in: the
/// response body read, and the completion text handed to a strategy.
pub const LLM_MAX_RESPONSE_BYTES: u64 = 1 << 20;
pub const LLM_MAX_CONTENT_BYTES: usize = 64 << 10;

/// What every import call costs against [`Limits::max_call_bytes`] besides
/// its arguments and answer, so that empty calls are not free.
pub const HOST_CALL_OVERHEAD_BYTES: u64 = 64;

/// What each list element of an import argument (an `llm` message, …)
/// costs on top of its own bytes, against both
/// [`Limits::max_host_call_payload_bytes`] and [`Limits::max_call_bytes`],
/// so that a list of empty items is not free.
pub const ITEM_OVERHEAD_BYTES: u64 = 32;

/// Core instances (and memories, tables: one limit) a componentize-py
/// 0.25.1 (Python) strategy needs: the interpreter, its libc, the WASI
/// adapter and the bindings' glue are separate core modules, 14 in all,
/// where a Rust strategy needs a few. The default `max_instances` (32)
/// covers it; an operator lowering the limit below this refuses every
/// Python strategy with `instance-limit`. Measured, and checked exactly by
/// `tests/all/python.rs::a_python_strategy_needs_exactly_the_instances_and_memory_limits_rs_says`.
pub const PYTHON_MIN_INSTANCES: u32 = 14;

/// Linear memory a Python strategy needs before it does anything: the
/// interpreter's heap as componentize-py snapshotted it, ~12.4 MiB (a Rust
/// strategy starts at well under 1 MiB). The default `memory_bytes`
/// (128 MiB) leaves a Python strategy ~115 MiB of its own. Checked by the
/// same test.
pub const PYTHON_MIN_MEMORY_BYTES: u64 = 16 << 20;

/// Limits for one strategy call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Deterministic CPU budget (wasmtime fuel ≈ wasm instructions).
    pub fuel: u64,
    /// Wall-clock backstop, checked by epoch interruption.
    pub deadline_ms: u64,
    /// Linear memory, summed over the component's memories.
    pub memory_bytes: u64,
    /// Core instances, memories and tables per component instance.
    pub max_instances: u32,
    pub max_table_elements: u64,
    /// Import calls per strategy call (log lines included).
    pub max_host_calls: u64,
    /// Size of any single import argument, each list element counted with
    /// [`ITEM_OVERHEAD_BYTES`] on top of its own bytes.
    pub max_host_call_payload_bytes: u64,
    /// The byte budget of one call: everything that crosses the host
    /// boundary, added up — every import's arguments (with
    /// [`ITEM_OVERHEAD_BYTES`] per list element), every answer (as the JSON
    /// that is recorded), [`HOST_CALL_OVERHEAD_BYTES`] per import call, and
    /// the returned value. Checked before an answer is copied or recorded;
    /// past it the call ends with `byte-budget`.
    pub max_call_bytes: u64,
    /// The call record's transcript (every import's request and answer, as
    /// JSON): what the audit log stores for one call. Checked before an
    /// answer is recorded; past it the call ends with `record-limit`.
    pub max_recorded_bytes: u64,
    /// Items per page the `history` and `insights` imports return.
    pub max_page_items: u32,
    /// The returned value, as JSON.
    pub max_output_bytes: u64,
    pub max_log_lines: u32,
    pub max_log_bytes: u64,
    /// stdout and stderr, each.
    pub max_stdio_bytes: u64,
    /// The `memory` import's store, keys plus values.
    pub max_memory_store_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 4_000_000_000,
            deadline_ms: 10_000,
            memory_bytes: 128 << 20,
            max_instances: 32,
            max_table_elements: 100_000,
            max_host_calls: 100_000,
            max_host_call_payload_bytes: 1 << 20,
            max_call_bytes: 64 << 20,
            max_recorded_bytes: 16 << 20,
            max_page_items: 1_000,
            max_output_bytes: 4 << 20,
            max_log_lines: 1_000,
            max_log_bytes: 256 << 10,
            max_stdio_bytes: 64 << 10,
            max_memory_store_bytes: 1 << 20,
        }
    }
}

impl Limits {
    /// Checks the values make sense; the message names the field.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("fuel", self.fuel),
            ("deadline_ms", self.deadline_ms),
            ("memory_bytes", self.memory_bytes),
            ("max_instances", u64::from(self.max_instances)),
            ("max_host_calls", self.max_host_calls),
            ("max_page_items", u64::from(self.max_page_items)),
            ("max_output_bytes", self.max_output_bytes),
            ("max_call_bytes", self.max_call_bytes),
            ("max_recorded_bytes", self.max_recorded_bytes),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("limits.{name} must be greater than 0"));
            }
        }
        if self.memory_bytes > MAX_MEMORY_BYTES {
            return Err(format!(
                "limits.memory_bytes = {} exceeds the host's ceiling of {} bytes",
                self.memory_bytes, MAX_MEMORY_BYTES
            ));
        }
        if self.max_instances > MAX_INSTANCES {
            return Err(format!(
                "limits.max_instances = {} exceeds the host's ceiling of {}",
                self.max_instances, MAX_INSTANCES
            ));
        }
        Ok(())
    }
}

/// Which cap of the [`CallLimiter`] a call ran into (`strategy::record`
/// turns it into the call's `CallError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitHit {
    /// Linear memory, in bytes.
    Memory { limit: u64, requested: u64 },
    /// Table elements.
    Table { limit: u64, requested: u64 },
}

/// The per-store resource limiter: enforces the memory, table and instance
/// caps, remembers which one was hit, and tracks peak memory.
#[derive(Debug)]
pub struct CallLimiter {
    memory_cap: usize,
    table_cap: usize,
    instances: usize,
    /// Linear memory in use, summed over memories: every creation or growth
    /// goes through `memory_growing` as (current → desired).
    total_memory: usize,
    pub(crate) peak_memory: usize,
    pub(crate) hit: Option<LimitHit>,
}

impl CallLimiter {
    pub fn new(limits: &Limits) -> Self {
        CallLimiter {
            memory_cap: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
            table_cap: usize::try_from(limits.max_table_elements).unwrap_or(usize::MAX),
            instances: limits.max_instances as usize,
            total_memory: 0,
            peak_memory: 0,
            hit: None,
        }
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total_after = self.total_memory.saturating_sub(current) + desired;
        if total_after > self.memory_cap {
            self.hit.get_or_insert(LimitHit::Memory {
                limit: self.memory_cap as u64,
                requested: total_after as u64,
            });
            // Trap rather than let the guest see a failed grow: a strategy
            // that cannot allocate would abort anyway, and a typed error is
            // clearer than an `unreachable` trap.
            return Err(wasmtime::Error::msg("strategy memory limit reached"));
        }
        self.total_memory = total_after;
        self.peak_memory = self.peak_memory.max(self.total_memory);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_cap {
            self.hit.get_or_insert(LimitHit::Table {
                limit: self.table_cap as u64,
                requested: desired as u64,
            });
            return Err(wasmtime::Error::msg("strategy table limit reached"));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.instances
    }

    fn memories(&self) -> usize {
        self.instances
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_leave_room_for_a_python_strategy() {
        let limits = Limits::default();
        assert!(limits.max_instances >= PYTHON_MIN_INSTANCES);
        assert!(limits.memory_bytes >= 4 * PYTHON_MIN_MEMORY_BYTES);
        const { assert!(PYTHON_MIN_INSTANCES <= super::MAX_INSTANCES) };
    }
}
