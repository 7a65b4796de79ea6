//! Reagent: an autonomous ML-experimentation agent whose thinking parts run
//! as sandboxed WebAssembly components.
//!
//! See ARCHITECTURE.md for the code map and the invariants.

pub mod campaign;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod contract;
pub mod crash;
pub mod export;
pub mod files;
pub mod fuzz;
pub mod governance;
pub mod insights;
pub mod jobs;
pub mod lab;
pub mod limits;
pub mod llm;
pub mod notify;
pub mod quota;
pub mod records;
pub mod sandbox;
pub mod serve;
pub mod spec;
pub mod store;
pub mod strategy;
pub mod time;
pub mod workspace;
