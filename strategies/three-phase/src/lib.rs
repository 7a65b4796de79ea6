//! `three-phase`: Reagent's default hypothesis generator.
//!
//! - **validate** tries single changes from baseline, one knob at a time,
//!   covering as many knobs as the slate allows ([`validate`]);
//! - **combine** merges the changes that helped: their union, pairs, and
//!   leave-one-out variants ([`combine`]);
//! - **exploit** searches locally around the best configuration, ranking
//!   random neighbours with a Gaussian-process surrogate ([`exploit`]).
//!
//! Every phase lists only knobs that differ from baseline, clamps values
//! into range, never re-proposes a configuration already in history, and
//! writes one info line to the strategy log per call. All randomness comes
//! from `ctx.seed`, so a call replays identically.

use reagent_sdk::{Context, Generator, Hypothesis};

mod combine;
mod common;
mod exploit;
mod surrogate;
mod validate;

#[cfg(test)]
mod tests;

pub struct ThreePhase;

impl Generator for ThreePhase {
    fn validate(ctx: &Context, max: u32) -> Vec<Hypothesis> {
        validate::propose(ctx, max)
    }

    fn combine(ctx: &Context, max: u32) -> Vec<Hypothesis> {
        combine::propose(ctx, max)
    }

    fn exploit(ctx: &Context, max: u32) -> Vec<Hypothesis> {
        exploit::propose(ctx, max)
    }
}

reagent_sdk::export_generator!(ThreePhase);
