//! Floods the log and stdout, then answers normally.
use reagent_sdk::{Context, Generator, Hypothesis, log};

struct Spam;

impl Generator for Spam {
    fn propose(_ctx: &Context, _max: u32) -> Vec<Hypothesis> {
        for i in 0..20_000 {
            log::info(&format!("spam line {i} {}", "z".repeat(100)));
        }
        let chunk = "y".repeat(1024);
        for _ in 0..4096 {
            println!("{chunk}");
        }
        Vec::new()
    }
}

reagent_sdk::export_generator!(Spam);
