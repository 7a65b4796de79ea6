//! `tactics`: the logic of Reagent's default hypothesis generator,
//! `builtin:three-phase`, as a library that other built-ins reuse
//! (`builtin:researcher` delegates its combine and exploit phases here and
//! explores with [`validate`]'s single steps).
//!
//! - **validate** tries single changes from baseline, one knob at a time,
//!   covering as many knobs as the slate allows, and when the slate has
//!   room after every knob's first step, a space-filling design over all
//!   knobs at once so interactions show early ([`validate`], [`design`]);
//! - **combine** merges the changes that helped: their union, pairs, and
//!   leave-one-out variants ([`combine`]);
//! - **exploit** ranks candidates with a Gaussian-process surrogate (one
//!   length scale per knob) by expected improvement: random neighbours of
//!   the best configurations, lines through the best one, and points
//!   anywhere in the space ([`exploit`]).
//!
//! Every phase lists only knobs that differ from baseline, clamps values
//! into range, never re-proposes a configuration already in history, and
//! writes one info line to the strategy log per call. All randomness comes
//! from `ctx.seed`, so a call replays identically.
//!
//! This crate exports no component: a component that linked a crate
//! calling `export_generator!` would export `propose` twice. The thin
//! crates `three-phase` and `researcher` do the export.

use reagent_sdk::{Context, Generator, Hypothesis};

pub mod combine;
pub mod common;
pub mod design;
pub mod exploit;
mod surrogate;
pub mod validate;

#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
#[cfg(test)]
mod tests;

/// The three-phase generator; `three-phase` exports it as its `propose`.
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
