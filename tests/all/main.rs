//! Reagent's integration tests: one binary, one module per area.

mod audit;
mod builtins;
mod campaign;
mod chat_server;
mod cli;
mod crash;
mod demo;
mod governance;
mod governance_model;
mod hostile;
mod hostile_bytes;
mod hostile_cache;
mod hostile_jobs;
mod hostile_time;
mod insights;
mod lab;
mod llm;
mod python;
mod recording;
mod researcher;
mod slurm;
mod stopping;
mod support;
mod surface;
mod tidy;
mod trust;
