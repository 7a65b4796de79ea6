//! Knob changes that address a failure: a smaller batch or model after
//! running out of memory, a lower learning rate after diverging, fewer
//! epochs or steps after hitting the time limit.
//!
//! Knobs are recognised by name (lowercase substrings); their current value
//! is the failed trial's assignment, or the baseline when it was not set.
//! New values keep the knob's type and are clamped into its range; a change
//! that clamps back to the current value does not count.

use reagent_sdk::{Context, FailureReport, KnobKind, KnobSpec, Value};

/// One knob changed from `from` to `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fix {
    pub knob: String,
    pub from: Value,
    pub to: Value,
}

impl Fix {
    pub fn describe(&self) -> String {
        format!("{} {} → {}", self.knob, show(&self.from), show(&self.to))
    }
}

const SIZE_WORDS: &[&str] = &["hidden", "embed", "dim", "width", "units", "buckets"];
const LR_NAMES: &[&str] = &["lr", "learning_rate", "learning-rate", "eta"];
/// Names that look like a learning rate or a length but are a schedule detail.
const SCHEDULE_WORDS: &[&str] = &[
    "decay", "warmup", "schedule", "min", "patience", "eval", "log", "save",
];

/// Halves the batch size; failing that, halves the largest size-like knob.
pub fn shrink_memory(ctx: &Context, failure: &FailureReport) -> Option<Fix> {
    let batch = candidates(ctx, |name| name.contains("batch") && !name.contains("norm"))
        // `batch_size` before e.g. `eval_batch_size`-like helpers.
        .min_by_key(|k| !k.name.to_lowercase().starts_with("batch"));
    if let Some(fix) = batch.and_then(|k| change(k, failure, 0.5)) {
        return Some(fix);
    }
    let mut sizes: Vec<Fix> = candidates(ctx, |name| SIZE_WORDS.iter().any(|w| name.contains(w)))
        .filter_map(|k| change(k, failure, 0.5))
        .collect();
    // The largest current value is the likeliest to dominate memory.
    sizes.sort_by(|a, b| number(&b.from).total_cmp(&number(&a.from)));
    sizes.into_iter().next()
}

/// Divides the learning rate by 3.
pub fn lower_learning_rate(ctx: &Context, failure: &FailureReport) -> Option<Fix> {
    let exact = candidates(ctx, |name| LR_NAMES.contains(&name)).next();
    let named = || {
        candidates(ctx, |name| {
            (name.contains("learning") || name.ends_with("_lr"))
                && !SCHEDULE_WORDS.iter().any(|w| name.contains(w))
        })
        .next()
    };
    let knob = exact.or_else(named)?;
    if !knob.is_continuous() {
        return None;
    }
    change(knob, failure, 1.0 / 3.0)
}

/// Halves the number of epochs, iterations or steps.
pub fn shorten(ctx: &Context, failure: &FailureReport) -> Option<Fix> {
    ["epoch", "iter", "step"].iter().find_map(|word| {
        candidates(ctx, |name| {
            name.contains(word)
                && !name.contains("size")
                && !SCHEDULE_WORDS.iter().any(|w| name.contains(w))
        })
        .find_map(|k| change(k, failure, 0.5))
    })
}

/// Numeric knobs (or categorical knobs with numeric choices) whose
/// lowercase name satisfies `wanted`, in campaign order.
fn candidates<'a>(
    ctx: &'a Context,
    wanted: impl Fn(&str) -> bool + 'a,
) -> impl Iterator<Item = &'a KnobSpec> + 'a {
    ctx.knobs.iter().filter(move |k| {
        let numeric = match &k.kind {
            KnobKind::Categorical(choices) => {
                choices.iter().all(|c| c.trim().parse::<f64>().is_ok())
            }
            KnobKind::Flag => false,
            _ => true,
        };
        numeric && wanted(&k.name.to_lowercase())
    })
}

/// The value `knob` had in the failed trial.
pub fn current(knob: &KnobSpec, failure: &FailureReport) -> Value {
    failure
        .assignments
        .iter()
        .find(|a| a.knob == knob.name)
        .map_or_else(|| knob.baseline.clone(), |a| a.value.clone())
}

/// Multiplies `knob`'s current value by `factor` (< 1), keeping its type
/// and range. `None` when the value cannot go lower.
fn change(knob: &KnobSpec, failure: &FailureReport, factor: f64) -> Option<Fix> {
    let from = current(knob, failure);
    let x = number(&from);
    if !x.is_finite() {
        return None;
    }
    let to = match &knob.kind {
        KnobKind::Int(r) => Value::Int(((x * factor).floor() as i64).clamp(r.low, r.high)),
        KnobKind::Float(_) | KnobKind::LogFloat(_) => knob.clamp(Value::Float(round4(x * factor))),
        KnobKind::Categorical(choices) => {
            // The choice closest to the target among those below the current value.
            let target = x * factor;
            let below = choices
                .iter()
                .filter_map(|c| Some((c, c.trim().parse::<f64>().ok()?)))
                .filter(|(_, v)| *v < x);
            let (best, _) =
                below.min_by(|a, b| (a.1 - target).abs().total_cmp(&(b.1 - target).abs()))?;
            Value::Choice(best.clone())
        }
        KnobKind::Flag => return None,
    };
    (knob.accepts(&to) && number(&to) < x).then(|| Fix {
        knob: knob.name.clone(),
        from,
        to,
    })
}

/// A value as a number (categorical choices parsed), NaN when it is none.
fn number(value: &Value) -> f64 {
    match value {
        Value::Choice(c) => c.trim().parse().unwrap_or(f64::NAN),
        other => other.as_f64().unwrap_or(f64::NAN),
    }
}

/// Four significant digits, so new values read well in logs.
fn round4(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let power = 3 - x.abs().log10().floor() as i32;
    if !(-300..=300).contains(&power) {
        return x;
    }
    let scale = 10f64.powi(power);
    (x * scale).round() / scale
}

fn show(value: &Value) -> String {
    match value {
        Value::Float(x) => format!("{}", round4(*x)),
        other => other.render(),
    }
}
