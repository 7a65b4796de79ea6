//! `reagent:strategy/log`: leveled lines into the strategy log.
//!
//! Grants: always linked. Reads nothing. Each line counts as a host call;
//! lines past `max_log_lines` or `max_log_bytes` are dropped and counted,
//! never an error. Lines are output, so they are not in the replay
//! transcript.

use super::CallState;
use crate::contract::log::{Host, Level};
use crate::strategy::record::LogLine;

impl Host for CallState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.admit("log.log", message.len() as u64)?;
        let fits = self.log.lines.len() < self.limits.max_log_lines as usize
            && self.log_bytes + message.len() as u64 <= self.limits.max_log_bytes;
        if fits {
            self.log_bytes += message.len() as u64;
            self.log.lines.push(LogLine { level, message });
        } else {
            self.log.dropped_lines += 1;
        }
        Ok(())
    }
}
