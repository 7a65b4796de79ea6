//! Reads the clocks and the WASI random source, and reports them, so tests
//! can check they are virtual and seeded.
use reagent_sdk::{Context, Generator, Hypothesis};

struct Clock;

impl Generator for Clock {
    fn propose(ctx: &Context, _max: u32) -> Vec<Hypothesis> {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let start = std::time::Instant::now();
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = std::hint::black_box(x ^ i);
        }
        let elapsed = start.elapsed().as_nanos();
        let mut map = std::collections::HashMap::new();
        for i in 0..16 {
            map.insert(i, i);
        }
        let order: Vec<i32> = map.keys().copied().collect();
        let knob = &ctx.knobs[0];
        vec![
            Hypothesis::new(format!("wall={wall} elapsed={elapsed} order={order:?}"))
                .set(knob.name.clone(), knob.from_unit(0.9)),
        ]
    }
}

reagent_sdk::export_generator!(Clock);
