//! Campaigns: the campaign file, the phase machine, budgets and statistics.

pub mod config;
pub mod engine;
pub mod report;
pub mod state;
pub mod stats;
