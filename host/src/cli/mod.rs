//! The `reagent` command line. The only module that prints to the terminal.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod scaffold;
pub mod strategy;

/// Reagent: proposes hypotheses, runs training jobs, debugs failures and
/// hands back an improvement proposal with measured evidence.
#[derive(Debug, Parser)]
#[command(name = "reagent", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect, try and scaffold strategies (sandboxed WebAssembly components).
    #[command(subcommand)]
    Strategy(strategy::StrategyCommand),
}

/// Exit codes: 0 success; 1 the operation failed (a refused component, a
/// strategy call that hit a limit); 2 bad usage or bad input.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Strategy(cmd) => strategy::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
