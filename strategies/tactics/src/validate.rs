//! Validate: single changes from baseline, one knob at a time.
//!
//! Each knob gets an ordered list of steps that respect its kind (factors of
//! 3 on log scales, quarter-range moves on linear ones, every other choice of
//! a categorical knob, a flipped flag). Steps are dealt round-robin: the
//! first step of every knob, then the second of every knob, and so on, so a
//! small slate still touches as many knobs as it can. Knobs that helped in
//! past campaigns go first, led by the value that helped; changes recorded
//! as known failures go last. Anything already in history is skipped, which
//! is what carries later rounds on to the next steps.

use std::collections::BTreeSet;

use reagent_sdk::{Context, Hypothesis, InsightQuery, KnobKind, KnobSpec, Value};

use crate::common::{
    Config, Past, Slate, baseline, config_key, config_of, num, round_sig, same_value, show, tidy,
};

/// How many insight records to read per query.
const INSIGHT_LIMIT: usize = 64;

/// One candidate single change of one knob.
#[derive(Clone)]
pub struct Step {
    pub value: Value,
    /// Why this value, when there is evidence for it (appended to the
    /// rationale), e.g. a past campaign where it helped.
    pub evidence: Option<String>,
}

/// One knob's single changes, in the order to try them.
pub struct KnobSteps {
    /// Index into `ctx.knobs`.
    pub knob: usize,
    pub steps: Vec<Step>,
}

/// What past campaigns say about one knob.
struct Hint {
    /// The best positive effect recorded for a change of this knob.
    effect: f64,
    value: Value,
    campaign: String,
    metric: String,
}

/// Three-phase's validate: every knob's first step, a space-filling
/// design when the slate has room (see [`design_size`]), then the other
/// steps.
pub fn propose(ctx: &Context, max: u32) -> Vec<Hypothesis> {
    slate(ctx, max, true)
}

/// Single changes only, dealt as [`propose`] deals them.
pub fn single_changes(ctx: &Context, max: u32) -> Vec<Hypothesis> {
    slate(ctx, max, false)
}

fn slate(ctx: &Context, max: u32, with_design: bool) -> Vec<Hypothesis> {
    let past = Past::load(ctx);
    let mut slate = Slate::new(ctx, &past, max);
    let failures = known_failures(ctx);

    // Per knob: its steps in preference order, and its insight hint.
    let mut plans: Vec<(Option<Hint>, KnobSteps)> = ctx
        .knobs
        .iter()
        .enumerate()
        .map(|(i, knob)| {
            let hint = hint_for(ctx, knob);
            let steps = order_by_hint(knob, steps_for(knob), hint.as_ref());
            (hint, KnobSteps { knob: i, steps })
        })
        .collect();
    // Knobs with a positive record first, strongest first; stable otherwise.
    plans.sort_by(|a, b| {
        let ea = a.0.as_ref().map_or(f64::NEG_INFINITY, |h| h.effect);
        let eb = b.0.as_ref().map_or(f64::NEG_INFINITY, |h| h.effect);
        eb.total_cmp(&ea).then(a.1.knob.cmp(&b.1.knob))
    });
    let hinted = plans.iter().filter(|p| p.0.is_some()).count();
    let plans: Vec<KnobSteps> = plans.into_iter().map(|p| p.1).collect();

    // First every knob's first step, then a space-filling design, then the
    // remaining steps (see `design_size`).
    let design = if with_design {
        design_size(ctx.knobs.len(), max as usize, past.tried.len())
    } else {
        0
    };
    let mut knobs_covered = BTreeSet::new();
    let mut designed = 0;
    if design > 0 {
        // Known failures wait for the full deal, which puts them last.
        let base = baseline(ctx);
        let first: Vec<KnobSteps> = plans
            .iter()
            .map(|p| KnobSteps {
                knob: p.knob,
                steps: p
                    .steps
                    .iter()
                    .take(1)
                    .filter(|s| {
                        let config = with_value(&base, p.knob, s.value.clone());
                        !failures.contains(&config_key(ctx, &config))
                    })
                    .cloned()
                    .collect(),
            })
            .collect();
        slate.set_max((max as usize).saturating_sub(design));
        knobs_covered = deal(ctx, &mut slate, &first, &failures);
        slate.set_max(max as usize);
        let mut avoid = vec![baseline(ctx)];
        avoid.extend(
            past.hypotheses
                .iter()
                .map(|h| config_of(ctx, &h.assignments)),
        );
        let points = crate::design::hypercube(ctx, design, ctx.seed, &avoid);
        designed = crate::design::offer(ctx, &mut slate, &points, design);
    }
    knobs_covered.extend(deal(ctx, &mut slate, &plans, &failures));

    reagent_sdk::log::info(&format!(
        "validate: proposed {} single changes over {} of {} knobs and {designed} design points (max {max}, {} configurations in history, {hinted} knobs with positive insights)",
        slate.items.len() - designed,
        knobs_covered.len(),
        ctx.knobs.len(),
        past.tried.len().saturating_sub(1),
    ));
    slate.items
}

/// How many space-filling design points validate proposes, given the
/// number of knobs, the slate size and how many configurations were
/// already tried (the baseline counts one). Only on the first validate
/// call (`tried` is 1; a later call goes on with the single steps), with
/// two knobs or more (with one, the single steps are the design), and only
/// when the slate could hold a step each way for every knob and two more:
/// with less, the single changes carry more per trial (on the bench's
/// Hartmann-6 at 30 trials a two-point design cost a third of the gain).
/// The design then comes right after every knob's first step and takes
/// what is left, up to two points per knob.
pub fn design_size(knobs: usize, max: usize, tried: usize) -> usize {
    if knobs < 2 || tried > 1 || max < 2 * knobs + 2 {
        return 0;
    }
    (max - knobs).min(2 * knobs)
}

/// Adds single changes to `slate` until it is full: the first step of every
/// knob in `plans` order, then the second of every knob, and so on. Steps
/// already on the slate or in history are skipped; steps whose change a
/// past campaign recorded as a failure (`failures`, keys from
/// [`known_failures`]) come after all the others, with a note. Returns the
/// indices of the knobs that got a hypothesis.
pub fn deal(
    ctx: &Context,
    slate: &mut Slate,
    plans: &[KnobSteps],
    failures: &BTreeSet<String>,
) -> BTreeSet<usize> {
    let base = baseline(ctx);
    let depth = plans.iter().map(|p| p.steps.len()).max().unwrap_or(0);
    let mut demoted: Vec<(usize, &Step)> = Vec::new();
    let mut knobs_covered = BTreeSet::new();
    'tiers: for tier in 0..depth {
        for plan in plans {
            if slate.is_full() {
                break 'tiers;
            }
            let Some(step) = plan.steps.get(tier) else {
                continue;
            };
            let config = with_value(&base, plan.knob, step.value.clone());
            if failures.contains(&config_key(ctx, &config)) {
                demoted.push((plan.knob, step));
            } else if offer(ctx, slate, plan.knob, step, &config, false) {
                knobs_covered.insert(plan.knob);
            }
        }
    }
    for (i, step) in demoted {
        if slate.is_full() {
            break;
        }
        let config = with_value(&base, i, step.value.clone());
        if offer(ctx, slate, i, step, &config, true) {
            knobs_covered.insert(i);
        }
    }
    knobs_covered
}

fn with_value(base: &Config, i: usize, value: Value) -> Config {
    let mut config = base.clone();
    config[i] = value;
    config
}

fn offer(
    ctx: &Context,
    slate: &mut Slate,
    i: usize,
    step: &Step,
    config: &Config,
    known_failure: bool,
) -> bool {
    let knob = &ctx.knobs[i];
    let from = show(&knob.baseline);
    let to = show(&step.value);
    let metric = &ctx.objective.metric;
    let (title, mut rationale) = match move_label(knob, &step.value) {
        Some(label) => (
            format!("{} {label} ({from} → {to})", knob.name),
            format!(
                "Single change: {} {label}, from {from} to {to}, to measure its effect on {metric}.",
                knob.name
            ),
        ),
        None => (
            format!("{} {from} → {to}", knob.name),
            format!(
                "Single change: {} set to {to} instead of {from}, to measure its effect on {metric}.",
                knob.name
            ),
        ),
    };
    if let Some(evidence) = &step.evidence {
        rationale.push(' ');
        rationale.push_str(evidence);
    }
    if known_failure {
        rationale.push_str(" A past campaign recorded this change as a failure, so it comes last.");
    }
    let hypothesis = Hypothesis::new(title)
        .because(rationale)
        .category(knob.name.clone());
    slate.push(config, hypothesis)
}

/// The single changes worth trying for `knob`, in default order: one step in
/// each direction, then a bigger step in each direction (factors of 3 and 9
/// on log scales, a quarter and a half of the range on linear ones), or
/// every other choice, nearest first, or the flipped flag.
pub fn steps_for(knob: &KnobSpec) -> Vec<Step> {
    let raw: Vec<Value> = match &knob.kind {
        KnobKind::LogFloat(_) => {
            let b = knob.baseline.as_f64().unwrap_or(0.0);
            [3.0, 1.0 / 3.0, 9.0, 1.0 / 9.0]
                .iter()
                .map(|f| Value::Float(b * f))
                .collect()
        }
        KnobKind::Float(r) => {
            let b = knob.baseline.as_f64().unwrap_or(r.low);
            let quarter = (r.high - r.low) / 4.0;
            [1.0, -1.0, 2.0, -2.0]
                .iter()
                .map(|m| Value::Float(b + m * quarter))
                .collect()
        }
        KnobKind::Int(r) => {
            let b = knob.baseline.as_i64().unwrap_or(r.low);
            let span = i128::from(r.high) - i128::from(r.low);
            let step = i64::try_from(span / 4).unwrap_or(i64::MAX).max(1);
            [1, -1, 2, -2]
                .iter()
                .map(|m| Value::Int(b.saturating_add(step.saturating_mul(*m))))
                .collect()
        }
        KnobKind::Categorical(choices) => {
            // Neighbours first: ordered categoricals often have a meaningful order.
            let base = choices
                .iter()
                .position(|c| Some(c.as_str()) == knob.baseline.as_str())
                .unwrap_or(0);
            let mut others: Vec<usize> = (0..choices.len()).filter(|&j| j != base).collect();
            others.sort_by_key(|&j| (j.abs_diff(base), j));
            others
                .into_iter()
                .map(|j| Value::Choice(choices[j].clone()))
                .collect()
        }
        KnobKind::Flag => vec![Value::Flag(!knob.baseline.as_bool().unwrap_or(false))],
    };
    // Clamp, then drop steps that clamp back to baseline or repeat a value.
    let mut steps: Vec<Step> = Vec::new();
    for value in raw {
        let value = tidy(knob, value);
        if knob.accepts(&value)
            && !same_value(&value, &knob.baseline)
            && !steps.iter().any(|s| same_value(&s.value, &value))
        {
            steps.push(Step {
                value,
                evidence: None,
            });
        }
    }
    steps
}

/// How a numeric knob moves from its baseline to `value`, e.g. "×3",
/// "÷3", "+0.2" or "−1" (after clamping, so it is always the real move).
/// `None` for categorical knobs and flags.
pub fn move_label(knob: &KnobSpec, value: &Value) -> Option<String> {
    let (b, x) = (knob.baseline.as_f64()?, value.as_f64()?);
    match knob.kind {
        KnobKind::LogFloat(_) if b > 0.0 && x > 0.0 => Some(if x >= b {
            format!("×{}", round_sig(x / b, 3))
        } else {
            format!("÷{}", round_sig(b / x, 3))
        }),
        KnobKind::LogFloat(_) | KnobKind::Float(_) | KnobKind::Int(_) => Some(if x >= b {
            format!("+{}", num(x - b))
        } else {
            format!("−{}", num(b - x))
        }),
        KnobKind::Categorical(_) | KnobKind::Flag => None,
    }
}

/// Reads past campaigns' records for `knob`: the best positive effect among
/// successful changes that set it to a value valid here.
fn hint_for(ctx: &Context, knob: &KnobSpec) -> Option<Hint> {
    let records =
        reagent_sdk::insights::find(&InsightQuery::ByKnob(knob.name.clone()), INSIGHT_LIMIT);
    let mut best: Option<Hint> = None;
    for record in records {
        if record.failure.is_some() || record.effect.is_nan() || record.effect <= 0.0 {
            continue;
        }
        let Some(value) = record
            .assignments
            .iter()
            .find(|a| a.knob == knob.name)
            .map(|a| a.value.clone())
        else {
            continue;
        };
        if !knob.accepts(&value) || same_value(&value, &knob.baseline) {
            continue;
        }
        // Same-metric records outrank others at equal effect.
        let better = match &best {
            None => true,
            Some(b) => {
                record.effect > b.effect
                    || (record.effect == b.effect
                        && record.metric == ctx.objective.metric
                        && b.metric != ctx.objective.metric)
            }
        };
        if better {
            best = Some(Hint {
                effect: record.effect,
                value,
                campaign: record.campaign,
                metric: record.metric,
            });
        }
    }
    best
}

/// Puts the value that helped elsewhere first, followed by the steps on the
/// same side of the baseline.
fn order_by_hint(knob: &KnobSpec, mut steps: Vec<Step>, hint: Option<&Hint>) -> Vec<Step> {
    let Some(hint) = hint else { return steps };
    let evidence = format!(
        "In campaign {}, {} = {} improved {} by {}.",
        hint.campaign,
        knob.name,
        show(&hint.value),
        hint.metric,
        num(hint.effect)
    );
    let value = tidy(knob, hint.value.clone());
    match steps.iter().position(|s| same_value(&s.value, &value)) {
        Some(j) => {
            let mut step = steps.remove(j);
            step.evidence = Some(evidence);
            steps.insert(0, step);
        }
        None if knob.accepts(&value) && !same_value(&value, &knob.baseline) => {
            steps.insert(
                0,
                Step {
                    value: value.clone(),
                    evidence: Some(evidence),
                },
            );
        }
        None => {}
    }
    // Same side of the baseline as the helpful value first (stable).
    let side = |v: &Value| match (knob.to_unit(v), knob.to_unit(&knob.baseline)) {
        (Some(u), Some(b)) if knob.is_continuous() || matches!(knob.kind, KnobKind::Int(_)) => {
            (u - b).signum()
        }
        _ => 0.0,
    };
    let preferred = side(&value);
    if preferred != 0.0 {
        steps.sort_by_key(|s| side(&s.value) != preferred);
    }
    steps
}

/// Keys of single or multiple changes that past campaigns recorded as failures.
pub fn known_failures(ctx: &Context) -> BTreeSet<String> {
    reagent_sdk::insights::find(&InsightQuery::KnownFailures, 4 * INSIGHT_LIMIT)
        .into_iter()
        .filter(|r| {
            r.assignments
                .iter()
                .all(|a| ctx.knob(&a.knob).is_some_and(|k| k.accepts(&a.value)))
        })
        .map(|r| config_key(ctx, &config_of(ctx, &r.assignments)))
        .collect()
}
