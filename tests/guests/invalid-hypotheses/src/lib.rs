//! Returns an invalid answer; which one is chosen by the campaign name.
use reagent_sdk::{Context, Generator, Hypothesis, Value};

struct Invalid;

impl Generator for Invalid {
    fn propose(ctx: &Context, max: u32) -> Vec<Hypothesis> {
        let first = &ctx.knobs[0].name;
        let one = |h: Hypothesis| vec![h];
        match ctx.campaign.as_str() {
            "unknown-knob" => one(Hypothesis::new("t").set("no_such_knob", Value::Float(1.0))),
            "wrong-type" => {
                one(Hypothesis::new("t").set(first.clone(), Value::Choice("fast".into())))
            }
            "out-of-range" => one(Hypothesis::new("t").set(first.clone(), Value::Float(1e9))),
            "nan" => one(Hypothesis::new("t").set(first.clone(), Value::Float(f64::NAN))),
            "empty" => one(Hypothesis::new("nothing changes")),
            "bad-parent" => one(Hypothesis::new("t")
                .set(first.clone(), Value::Float(0.2))
                .parents([999_999])),
            "too-many" => (0..=max)
                .map(|i| {
                    Hypothesis::new(format!("h{i}"))
                        .set(first.clone(), Value::Float(0.1 + i as f64 * 1e-6))
                })
                .collect(),
            "million" => (0..1_000_000)
                .map(|_| Hypothesis::new("m").set(first.clone(), Value::Float(0.2)))
                .collect(),
            _ => Vec::new(),
        }
    }
}

reagent_sdk::export_generator!(Invalid);
