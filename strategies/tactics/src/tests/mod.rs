//! Native tests of the three phases (fixtures in `crate::fixtures`).

use reagent_sdk::testing::{MockHost, install, take};
use reagent_sdk::{Assignment, Context, Hypothesis, HypothesisSummary};

use crate::ThreePhase;
pub use crate::fixtures::*;

mod combine;
mod design;
mod exploit;
mod simulation;
mod validate;

/// Runs one `propose` call against `host`; returns the answer and the host.
pub fn call(host: MockHost, ctx: &Context, max: u32) -> (Vec<Hypothesis>, MockHost) {
    install(host);
    let out = <ThreePhase as reagent_sdk::Generator>::propose(ctx, max);
    (out, take())
}
