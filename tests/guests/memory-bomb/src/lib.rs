//! Allocates until something stops it.
use reagent_sdk::{Context, Generator, Hypothesis};

struct Bomb;

impl Generator for Bomb {
    fn propose(_ctx: &Context, _max: u32) -> Vec<Hypothesis> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![0xAB; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

reagent_sdk::export_generator!(Bomb);
