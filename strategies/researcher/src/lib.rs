//! `researcher`: Reagent's evidence-led generator, `builtin:researcher`.
//!
//! In the validate phase it reads this campaign's baseline against what
//! past campaigns of the workspace recorded (the `insights` import) and
//! proposes, in order of preference: the language model's suggestions
//! when the operator granted `llm` (each checked here against the knob
//! space; a bad one is dropped with a warning), transfers of significant
//! improvements, knobs far from values that helped elsewhere, interactions
//! seen before, then three-phase's single steps for what the records say
//! nothing about; changes recorded as failures come last. Every hypothesis
//! says where it comes from. It works fully without a language model.
//!
//! Combine and exploit are three-phase's (`tactics`). All of it is
//! deterministic given the host's answers, which the host records, so a
//! call replays identically.

use reagent_sdk::{Context, Generator, Hypothesis};

mod evidence;
mod json;
mod model;
mod text;
mod validate;

#[cfg(test)]
mod tests;

pub struct Researcher;

impl Generator for Researcher {
    fn validate(ctx: &Context, max: u32) -> Vec<Hypothesis> {
        validate::propose(ctx, max)
    }

    fn combine(ctx: &Context, max: u32) -> Vec<Hypothesis> {
        tactics::combine::propose(ctx, max)
    }

    fn exploit(ctx: &Context, max: u32) -> Vec<Hypothesis> {
        tactics::exploit::propose(ctx, max)
    }
}

reagent_sdk::export_generator!(Researcher);
