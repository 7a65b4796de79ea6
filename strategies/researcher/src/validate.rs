//! Validate: what to test against the baseline, in order of preference.
//!
//! 1. the language model's suggestions, when one is granted and answers,
//!    each checked against the knob space ([`crate::model`]), at most half
//!    the slate (at least one);
//! 2. leads from past campaigns ([`crate::evidence`]): transfers of
//!    significant improvements, knobs far from values that helped,
//!    interactions seen before; a quarter of the slate is held back for
//!    exploration while some knob has no record at all;
//! 3. exploration: three-phase's single steps (`tactics::validate`), knobs
//!    that no record and no proposal so far touches first;
//! 4. last, leads whose change a past campaign recorded as a failure, with
//!    a note.

use reagent_sdk::{Context, Hypothesis};
use tactics::common::{Past, Slate, baseline, config_key};
use tactics::validate::{KnobSteps, deal, steps_for};

use crate::evidence::{self, Evidence, Source};
use crate::model::{self, Known};
use crate::text::cut;

pub fn propose(ctx: &Context, max: u32) -> Vec<Hypothesis> {
    let past = Past::load(ctx);
    let mut slate = Slate::new(ctx, &past, max);
    let evidence = Evidence::load(ctx);
    let failures = evidence.failure_notes(ctx);
    let max = max as usize;

    // a. The language model, checked.
    let model_cap = if max == 0 { 0 } else { (max / 2).max(1) };
    let known = Known {
        past: &past,
        failures: &failures,
    };
    let report = model::consult(ctx, &evidence, &known, &mut slate, model_cap);
    let from_model = slate.items.len();

    // b–d. Leads from past campaigns, within what exploration leaves them.
    let plans = exploration(ctx, &evidence, &slate);
    let reserve = if max >= 3 && plans.iter().any(|p| p.unexplored) {
        (max / 4).max(1)
    } else {
        0
    };
    let mut last = Vec::new();
    let mut by_source = [0usize; 3];
    for lead in evidence::leads(ctx, &evidence) {
        if slate.items.len() + reserve >= max {
            break;
        }
        match failures.get(&config_key(ctx, &lead.config)) {
            // e. Known failures wait until everything else is placed.
            Some(note) => last.push((lead, note)),
            None => {
                if slate.push(&lead.config, lead.hypothesis) {
                    by_source[lead.source as usize] += 1;
                }
            }
        }
    }
    let from_insights = slate.items.len() - from_model;

    // f. Exploration, then the known failures. Knobs that neither a record
    // nor a proposal so far touches go first.
    let touched: Vec<bool> = (0..ctx.knobs.len())
        .map(|i| {
            evidence.mentioned[i]
                || slate
                    .items
                    .iter()
                    .any(|h| h.get(&ctx.knobs[i].name).is_some())
        })
        .collect();
    let mut plans: Vec<KnobSteps> = plans.into_iter().map(|p| p.steps).collect();
    plans.sort_by_key(|p| (touched[p.knob], p.knob));
    let failure_keys = failures.keys().cloned().collect();
    deal(ctx, &mut slate, &plans, &failure_keys);
    let exploratory = slate.items.len() - from_model - from_insights;
    for (lead, note) in last {
        let mut hypothesis = lead.hypothesis;
        hypothesis.rationale.push_str(&format!(
            " A past campaign recorded this change as a failure ({note}), so it comes last."
        ));
        slate.push(&lead.config, hypothesis);
    }
    let failures_last = slate.items.len() - from_model - from_insights - exploratory;

    let mut insights = format!("{} from insights", from_insights + failures_last);
    if from_insights > 0 {
        insights.push_str(&format!(
            " ({} transferred, {} far from a value that helped, {} interactions)",
            by_source[Source::Transfer as usize],
            by_source[Source::Far as usize],
            by_source[Source::Interaction as usize],
        ));
    }
    if failures_last > 0 {
        insights.push_str(&format!(", {failures_last} recorded failures last"));
    }
    reagent_sdk::log::info(&format!(
        "researcher validate: {insights}, {from_model} from the language model ({}), {exploratory} exploratory (max {max}, {} configurations in history, {} insight records read, {} not applicable here)",
        report.summary(),
        past.tried.len().saturating_sub(1),
        evidence.read,
        evidence.outside,
    ));
    let mut items = slate.items;
    for h in &mut items {
        fit(&mut h.title, MAX_TITLE_BYTES);
        fit(&mut h.category, MAX_CATEGORY_BYTES);
    }
    items
}

/// The host refuses a whole answer over a title of more than 1024 bytes or
/// a category of more than 128; knob names are the campaign's and could
/// make ours that long.
const MAX_TITLE_BYTES: usize = 512;
const MAX_CATEGORY_BYTES: usize = 128;

fn fit(text: &mut String, max: usize) {
    if text.len() > max {
        let kept = cut(text, max - '…'.len_utf8()).len();
        text.truncate(kept);
        text.push('…');
    }
}

/// One knob's exploration plan.
struct Plan {
    /// No past record sets this knob, and a step of it is still untried.
    unexplored: bool,
    steps: KnobSteps,
}

/// Three-phase's single steps for every knob, in `ctx.knobs` order; those
/// of knobs no record mentions say so.
fn exploration(ctx: &Context, evidence: &Evidence, slate: &Slate) -> Vec<Plan> {
    let base = baseline(ctx);
    ctx
        .knobs
        .iter()
        .enumerate()
        .map(|(i, knob)| {
            let mut steps = steps_for(knob);
            let mentioned = evidence.mentioned[i];
            if !mentioned {
                for step in &mut steps {
                    step.evidence = Some(format!(
                        "No past campaign in this workspace recorded a change of {}, so this explores it.",
                        knob.name
                    ));
                }
            }
            let untried = steps.iter().any(|s| {
                let mut config = base.clone();
                config[i] = s.value.clone();
                slate.admits(&config)
            });
            Plan {
                unexplored: !mentioned && untried,
                steps: KnobSteps { knob: i, steps },
            }
        })
        .collect()
}
