//! Returns a valid but enormous answer (~16 MiB of rationale).
use reagent_sdk::{Context, Generator, Hypothesis};

struct Huge;

impl Generator for Huge {
    fn propose(ctx: &Context, max: u32) -> Vec<Hypothesis> {
        let knob = &ctx.knobs[0];
        let value = knob.from_unit(if knob.to_unit(&knob.baseline) == Some(0.0) {
            1.0
        } else {
            0.0
        });
        (0..max.min(4))
            .map(|i| {
                Hypothesis::new(format!("huge {i}"))
                    .because("x".repeat(4 << 20))
                    .set(knob.name.clone(), value.clone())
            })
            .collect()
    }
}

reagent_sdk::export_generator!(Huge);
