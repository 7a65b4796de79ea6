//! A generator that calls the `llm` import and reports what it was told,
//! so the capability (grant, budget, endpoint failures, recording, replay)
//! can be checked without a real strategy's logic in the way.
//!
//! It makes `calls` completions (a campaign tag `llm-calls=N`, default 1),
//! each with the campaign name as the user message, and returns one
//! hypothesis per knob whose title starts with what the last call gave:
//! `ok <tokens> <content…>` or `err <reason…>`.
use reagent_sdk::llm::{self, message};
use reagent_sdk::{Context, Generator, Hypothesis, log};

struct LlmEcho;

impl Generator for LlmEcho {
    fn propose(ctx: &Context, max: u32) -> Vec<Hypothesis> {
        let calls = ctx
            .tags
            .iter()
            .find_map(|t| t.strip_prefix("llm-calls=")?.parse::<u32>().ok())
            .unwrap_or(1);
        let mut last = String::from("none");
        for i in 0..calls {
            let messages = [
                message("system", "You are a test."),
                message("user", format!("{} #{i}", ctx.campaign)),
            ];
            last = match llm::complete(&messages, 64) {
                Ok(c) => format!(
                    "ok {} {}",
                    c.prompt_tokens + c.completion_tokens,
                    c.content
                ),
                Err(reason) => format!("err {reason}"),
            };
            log::info(&format!("llm call {i}: {last}"));
        }
        let summary: String = last.chars().take(200).collect();
        let mut out = Vec::new();
        for knob in &ctx.knobs {
            if out.len() as u32 >= max {
                break;
            }
            let value = knob.from_unit(0.5 + 0.01 * f64::from(ctx.round % 40));
            if knob.accepts(&value) && value != knob.baseline {
                out.push(
                    Hypothesis::new(format!("{summary} | {} r{}", knob.name, ctx.round))
                        .because("llm-echo")
                        .category("test")
                        .set(knob.name.clone(), value),
                );
            }
        }
        out
    }
}

reagent_sdk::export_generator!(LlmEcho);
