//! Tries to read a host file: imports wasi:filesystem.
use reagent_sdk::{Context, Generator, Hypothesis};

struct Snoop;

impl Generator for Snoop {
    fn propose(_ctx: &Context, _max: u32) -> Vec<Hypothesis> {
        let secret = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        vec![Hypothesis::new(secret)]
    }
}

reagent_sdk::export_generator!(Snoop);
