//! Logs, then panics halfway through.
use reagent_sdk::{Context, Generator, Hypothesis, log};

struct Oops;

impl Generator for Oops {
    fn propose(ctx: &Context, _max: u32) -> Vec<Hypothesis> {
        log::info("about to fail");
        let knobs = std::hint::black_box(ctx.knobs.len());
        if knobs < 1_000_000 {
            panic!("strategy bug: index {knobs} out of range");
        }
        Vec::new()
    }
}

reagent_sdk::export_generator!(Oops);
