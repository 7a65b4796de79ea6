//! Never returns.
use reagent_sdk::{Context, Generator, Hypothesis};

struct Spin;

impl Generator for Spin {
    fn propose(_ctx: &Context, _max: u32) -> Vec<Hypothesis> {
        let mut x: u64 = 1;
        loop {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

reagent_sdk::export_generator!(Spin);
