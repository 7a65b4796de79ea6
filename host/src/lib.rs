//! Reagent: an autonomous ML-experimentation agent whose thinking parts run
//! as sandboxed WebAssembly components.
//!
//! See ARCHITECTURE.md for the code map and the invariants.

pub mod capabilities;
pub mod cli;
pub mod sandbox;
pub mod strategy;
