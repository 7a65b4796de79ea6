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

/// How much stronger the fix gets with each retry: a first retry applies
/// it once, a second (the first fix was not enough) twice over, and so on.
fn strength(factor: f64, failure: &FailureReport) -> f64 {
    factor.powi(failure.attempt.clamp(1, 4) as i32)
}

/// Halves the batch size (quarters it on a second retry); failing that,
/// the largest size-like knob.
pub fn shrink_memory(ctx: &Context, failure: &FailureReport) -> Option<Fix> {
    let factor = strength(0.5, failure);
    let batch = candidates(ctx, |name| name.contains("batch") && !name.contains("norm"))
        // `batch_size` before e.g. `eval_batch_size`-like helpers.
        .min_by_key(|k| !k.name.to_lowercase().starts_with("batch"));
    if let Some(fix) = batch.and_then(|k| change(k, failure, factor)) {
        return Some(fix);
    }
    let mut sizes: Vec<Fix> = candidates(ctx, |name| SIZE_WORDS.iter().any(|w| name.contains(w)))
        .filter_map(|k| change(k, failure, factor))
        .collect();
    // The largest current value is the likeliest to dominate memory.
    sizes.sort_by(|a, b| number(&b.from).total_cmp(&number(&a.from)));
    sizes.into_iter().next()
}

/// Divides the learning rate by 3 (by 9 on a second retry).
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
    change(knob, failure, strength(1.0 / 3.0, failure))
}

/// Halves the number of epochs, iterations or steps (quarters it on a
/// second retry).
pub fn shorten(ctx: &Context, failure: &FailureReport) -> Option<Fix> {
    let factor = strength(0.5, failure);
    ["epoch", "iter", "step"].iter().find_map(|word| {
        candidates(ctx, |name| {
            name.contains(word)
                && !name.contains("size")
                && !SCHEDULE_WORDS.iter().any(|w| name.contains(w))
        })
        .find_map(|k| change(k, failure, factor))
    })
}

/// Words that mark a log line as telling the user what to change.
const ADVICE: &[&str] = &[
    "set ",
    "must",
    "should",
    "requires",
    "require ",
    "needs to",
    "need to",
    "has to",
    "expected",
    "unless",
    "only valid",
    "only supported",
];

/// A fix the trainer's own message names: a line such as `set depth >= 1`,
/// `num_leaves must be at most 64` or `dropout has no effect unless layers
/// ≥ 1; set layers ≥ 1`, naming one of the campaign's knobs, a relation and
/// a value inside the knob's range. The last such line of the log wins;
/// returns the fix and the line.
pub fn named_fix(ctx: &Context, failure: &FailureReport) -> Option<(Fix, String)> {
    for line in failure.log_tail.lines().rev() {
        let lower = line.to_lowercase();
        if !ADVICE.iter().any(|w| lower.contains(w)) {
            continue;
        }
        // Later mentions first: "X has no effect unless Y ≥ 1" names Y's fix.
        let mut found: Vec<(usize, Fix)> = Vec::new();
        for knob in &ctx.knobs {
            for (at, _) in line.match_indices(knob.name.as_str()) {
                let before = line[..at].chars().next_back();
                let after_name = &line[at + knob.name.len()..];
                let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric() && c != '_');
                if !boundary(before) || !boundary(after_name.chars().next()) {
                    continue;
                }
                if let Some(to) = relation(knob, after_name)
                    && knob.accepts(&to)
                {
                    let from = current(knob, failure);
                    if to != from {
                        found.push((
                            at,
                            Fix {
                                knob: knob.name.clone(),
                                from,
                                to,
                            },
                        ));
                    }
                }
            }
        }
        if let Some((_, fix)) = found.into_iter().max_by_key(|(at, _)| *at) {
            return Some((fix, line.trim().to_string()));
        }
    }
    None
}

/// The value a relation after a knob's name asks for: `>= 1`, `≥ 1`,
/// `> 0`, `<= 64`, `= adam`, `to 0.5`, `must be at least 2`, `must be
/// true`. `None` when the text does not start with one.
fn relation(knob: &KnobSpec, text: &str) -> Option<Value> {
    let t = text
        .trim_start_matches(|c: char| c.is_whitespace() || c == '`' || c == '\'' || c == '"')
        .to_lowercase();
    let t = t
        .strip_prefix("must be")
        .or_else(|| t.strip_prefix("should be"))
        .map_or(t.as_str(), str::trim_start);
    let ops: [(&str, i8); 12] = [
        (">=", 1),
        ("≥", 1),
        ("at least", 1),
        ("<=", -1),
        ("≤", -1),
        ("at most", -1),
        (">", 2),
        ("<", -2),
        ("==", 0),
        ("=", 0),
        ("to ", 0),
        ("", 0),
    ];
    let (rest, op) = ops.iter().find_map(|(p, op)| {
        let rest = t.strip_prefix(p)?;
        // A bare value only after "must be" / "should be".
        (!p.is_empty() || t.len() < text.len()).then_some((rest.trim_start(), *op))
    })?;
    let word: String = rest
        .trim_start_matches(['`', '\'', '"'])
        .chars()
        .take_while(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))
        .collect();
    let word = word.trim_end_matches('.');
    if word.is_empty() {
        return None;
    }
    match &knob.kind {
        KnobKind::Int(_) => {
            let v: f64 = word.parse().ok()?;
            let n = match op {
                1 => v.ceil(),
                2 => v.floor() + 1.0,
                -1 => v.floor(),
                -2 => v.ceil() - 1.0,
                _ if v.fract() == 0.0 => v,
                _ => return None,
            };
            Some(Value::Int(n as i64))
        }
        KnobKind::Float(r) | KnobKind::LogFloat(r) => {
            let v: f64 = word.parse().ok()?;
            // A strict bound: a hundredth of the range inside it.
            let nudge = (r.high - r.low) / 100.0;
            let x = match op {
                2 => v + nudge,
                -2 => v - nudge,
                _ => v,
            };
            Some(Value::Float(round4(x)))
        }
        KnobKind::Categorical(choices) if op == 0 => choices
            .iter()
            .find(|c| c.to_lowercase() == word)
            .map(|c| Value::Choice(c.clone())),
        KnobKind::Flag if op == 0 => match word {
            "true" | "1" | "on" | "yes" => Some(Value::Flag(true)),
            "false" | "0" | "off" | "no" => Some(Value::Flag(false)),
            _ => None,
        },
        _ => None,
    }
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
