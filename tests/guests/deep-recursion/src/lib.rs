//! Recurses without bound on the wasm call stack (scalars only, so the
//! frames live on the engine's stack, not in linear memory).
use reagent_sdk::{Context, Generator, Hypothesis};

struct Deep;

#[allow(unconditional_recursion)]
#[inline(never)]
fn dive(n: u64) -> u64 {
    std::hint::black_box(dive(std::hint::black_box(n + 1))).wrapping_add(n)
}

impl Generator for Deep {
    fn propose(_ctx: &Context, _max: u32) -> Vec<Hypothesis> {
        std::hint::black_box(dive(0));
        Vec::new()
    }
}

reagent_sdk::export_generator!(Deep);
