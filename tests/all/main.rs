//! Reagent's integration tests: one binary, one module per area.

mod builtins;
mod cli;
mod hostile;
mod recording;
mod support;
mod surface;
