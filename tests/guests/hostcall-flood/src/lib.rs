//! Hammers the host: an endless stream of calls (campaign "flood"), or a
//! single oversized argument (campaign "payload").
use reagent_sdk::{Context, Generator, Hypothesis, history, log};

struct Flood;

impl Generator for Flood {
    fn propose(ctx: &Context, _max: u32) -> Vec<Hypothesis> {
        if ctx.campaign == "payload" {
            log::info(&"p".repeat(8 << 20));
        } else {
            let mut total = 0u64;
            loop {
                total = total.wrapping_add(history::trial_count());
                std::hint::black_box(total);
            }
        }
        Vec::new()
    }
}

reagent_sdk::export_generator!(Flood);
