//! Recurses without bound.
use reagent_sdk::{Context, Generator, Hypothesis};

struct Deep;

#[allow(unconditional_recursion)]
fn dive(n: u64, pad: [u64; 16]) -> u64 {
    let pad = std::hint::black_box(pad);
    std::hint::black_box(dive(n + 1, pad)) + pad[(n % 16) as usize]
}

impl Generator for Deep {
    fn propose(_ctx: &Context, _max: u32) -> Vec<Hypothesis> {
        std::hint::black_box(dive(0, [1; 16]));
        Vec::new()
    }
}

reagent_sdk::export_generator!(Deep);
