//! Tries to make the host hold, record or store far more than the guest's
//! own limits allow, by moving bytes across the boundary. The mode is the
//! campaign name:
//!
//! - `trials-flood`: reads the same full `history.trials` page forever
//!   (every answer used to be copied into the call record);
//! - `llm-one-call`: one `llm.complete` with 2,000,000 empty messages
//!   (each used to count as 0 bytes);
//! - `llm-flood`: `llm.complete` with 20,000 empty messages, forever;
//! - `huge-choice`: a hypothesis whose categorical value is a 30 MB string
//!   (the output size check used to ignore choice values);
//! - `big-choice`: the same with a 100 KB string, under the output limit.
use reagent_sdk::llm::{self, message};
use reagent_sdk::{Context, Generator, Hypothesis, KnobKind, Value, history};

struct Flood;

fn choice_hypothesis(ctx: &Context, bytes: usize) -> Vec<Hypothesis> {
    let knob = ctx
        .knobs
        .iter()
        .find(|k| matches!(k.kind, KnobKind::Categorical(_)))
        .expect("a categorical knob");
    vec![Hypothesis::new("a long choice").set(knob.name.clone(), Value::Choice("c".repeat(bytes)))]
}

impl Generator for Flood {
    fn propose(ctx: &Context, _max: u32) -> Vec<Hypothesis> {
        match ctx.campaign.as_str() {
            "trials-flood" => {
                let mut seen = 0usize;
                loop {
                    seen = seen.wrapping_add(history::trials_page(0, 1_000).items.len());
                    std::hint::black_box(seen);
                }
            }
            "llm-one-call" => {
                let messages = vec![message("", ""); 2_000_000];
                let _ = std::hint::black_box(llm::complete(&messages, 1));
                Vec::new()
            }
            "llm-flood" => {
                let messages = vec![message("", ""); 20_000];
                loop {
                    let _ = std::hint::black_box(llm::complete(&messages, 1));
                }
            }
            "huge-choice" => choice_hypothesis(ctx, 30 << 20),
            "big-choice" => choice_hypothesis(ctx, 100 << 10),
            other => panic!("unknown mode {other}"),
        }
    }
}

reagent_sdk::export_generator!(Flood);
