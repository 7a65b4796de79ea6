//! Validation of everything a strategy returns. Nothing a strategy says is
//! launched or recorded as a decision until it passes here.

use std::collections::{BTreeSet, HashSet};

use super::data::StrategyData;
use super::{
    Action, Assignment, CallOutput, Context, Diagnosis, Hypothesis, KnobKind, KnobSpec, Value,
    render_value,
};

pub const MAX_TITLE_BYTES: usize = 1024;
pub const MAX_CATEGORY_BYTES: usize = 128;
pub const MAX_RATIONALE_BYTES: usize = 64 * 1024;
/// The longest categorical value a strategy may return. Checked with the
/// value's kind, so it holds where an out-of-space value becomes an
/// approval request too (the value would be the request's payload).
pub const MAX_CHOICE_BYTES: usize = 1024;

/// The size of an output as JSON, estimated from every string in it (titles,
/// rationales, categories, knob names, choice values) plus a fixed size per
/// item and number, without serialising it. Never less than the JSON.
pub fn output_bytes(output: &CallOutput) -> u64 {
    fn assignments(list: &[Assignment]) -> u64 {
        list.iter()
            .map(|a| {
                let value = match &a.value {
                    Value::Choice(c) => json_str(c) + 16,
                    Value::Float(_) | Value::Int(_) | Value::Flag(_) => 40,
                };
                json_str(&a.knob) + value + 32
            })
            .sum()
    }
    /// A JSON string: its bytes, escapes (up to 6 bytes for a control
    /// character) and quotes.
    fn json_str(s: &str) -> u64 {
        let escaped: u64 = s
            .bytes()
            .map(|b| match b {
                b'"' | b'\\' => 2,
                0..=0x1f => 6,
                _ => 1,
            })
            .sum();
        escaped + 2
    }
    match output {
        CallOutput::Hypotheses(list) => {
            list.iter()
                .map(|h| {
                    json_str(&h.title)
                        + json_str(&h.rationale)
                        + json_str(&h.category)
                        + assignments(&h.assignments)
                        + h.parents.len() as u64 * 21
                        + 96
                })
                .sum::<u64>()
                + 2
        }
        CallOutput::Diagnosis(d) => {
            let changes = match &d.action {
                Action::RetryWith(c) => assignments(c),
                _ => 0,
            };
            json_str(&d.rationale) + changes + 96
        }
    }
}

/// Checks a generator's answer against the campaign's knobs and `max`.
/// Returns the reason for the first problem found.
pub fn hypotheses(
    ctx: &Context,
    max: u32,
    proposed: &[Hypothesis],
    data: &dyn StrategyData,
) -> Result<(), String> {
    if proposed.len() > max as usize {
        return Err(format!(
            "returned {} hypotheses; at most {max} were asked for",
            proposed.len()
        ));
    }
    let mut known_parents: Option<HashSet<u64>> = None;
    let mut seen = HashSet::new();
    for (index, h) in proposed.iter().enumerate() {
        let at = || format!("hypothesis {index} ({:?})", truncate(&h.title, 60));
        text(&h.title, "title", MAX_TITLE_BYTES).map_err(|e| format!("{}: {e}", at()))?;
        if h.title.trim().is_empty() {
            return Err(format!("{}: the title is empty", at()));
        }
        text(&h.category, "category", MAX_CATEGORY_BYTES).map_err(|e| format!("{}: {e}", at()))?;
        text(&h.rationale, "rationale", MAX_RATIONALE_BYTES)
            .map_err(|e| format!("{}: {e}", at()))?;
        if h.assignments.is_empty() {
            return Err(format!("{}: changes no knob", at()));
        }
        let mut knobs = BTreeSet::new();
        let mut changes_something = false;
        for a in &h.assignments {
            let Some(spec) = ctx.knobs.iter().find(|k| k.name == a.knob) else {
                return Err(format!(
                    "{}: unknown knob `{}` (the campaign's knobs are: {})",
                    at(),
                    truncate(&a.knob, 60),
                    ctx.knobs
                        .iter()
                        .map(|k| k.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            if !knobs.insert(a.knob.as_str()) {
                return Err(format!("{}: knob `{}` is assigned twice", at(), a.knob));
            }
            if data.out_of_space_is_a_request() {
                kind(spec, &a.value).map_err(|e| format!("{}: {e}", at()))?;
            } else {
                value(spec, &a.value).map_err(|e| format!("{}: {e}", at()))?;
            }
            if a.value != spec.baseline {
                changes_something = true;
            }
        }
        if !changes_something {
            return Err(format!(
                "{}: every assignment equals the baseline; it changes nothing",
                at()
            ));
        }
        let key = key(h);
        if !seen.insert(key.clone()) {
            return Err(format!(
                "{}: duplicates an earlier hypothesis ({key})",
                at()
            ));
        }
        if !h.parents.is_empty() {
            let known = known_parents.get_or_insert_with(|| all_hypothesis_ids(data));
            if let Some(p) = h.parents.iter().find(|p| !known.contains(p)) {
                return Err(format!("{}: parent {p} is not a known hypothesis", at()));
            }
        }
    }
    Ok(())
}

/// Checks a debugger's answer: retry-with changes must be valid knob values.
pub fn diagnosis(ctx: &Context, diagnosis: &Diagnosis) -> Result<(), String> {
    text(&diagnosis.rationale, "rationale", MAX_RATIONALE_BYTES)?;
    if let Action::RetryWith(changes) = &diagnosis.action {
        if changes.is_empty() {
            return Err("retry-with lists no knob changes".into());
        }
        let mut knobs = BTreeSet::new();
        for a in changes {
            let Some(spec) = ctx.knobs.iter().find(|k| k.name == a.knob) else {
                return Err(format!(
                    "retry-with: unknown knob `{}`",
                    truncate(&a.knob, 60)
                ));
            };
            if !knobs.insert(a.knob.as_str()) {
                return Err(format!("retry-with: knob `{}` is assigned twice", a.knob));
            }
            value(spec, &a.value).map_err(|e| format!("retry-with: {e}"))?;
        }
    }
    Ok(())
}

/// Checks one value against its knob's kind and range.
pub fn value(spec: &KnobSpec, value: &Value) -> Result<(), String> {
    kind(spec, value)?;
    match outside_space(spec, value) {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

/// Checks one value's kind only (and that a number is finite and a choice
/// short and printable).
pub fn kind(spec: &KnobSpec, value: &Value) -> Result<(), String> {
    let name = &spec.name;
    match (&spec.kind, value) {
        (KnobKind::Categorical(choices), Value::Choice(c)) if !choices.contains(c) => {
            text(c, "choice", MAX_CHOICE_BYTES).map_err(|e| format!("knob `{name}`: {e}"))
        }
        (KnobKind::Float(_) | KnobKind::LogFloat(_), Value::Float(x)) if !x.is_finite() => {
            Err(format!("knob `{name}` = {x} is not a finite number"))
        }
        (KnobKind::Float(_) | KnobKind::LogFloat(_), Value::Float(_))
        | (KnobKind::Int(_), Value::Int(_))
        | (KnobKind::Categorical(_), Value::Choice(_))
        | (KnobKind::Flag, Value::Flag(_)) => Ok(()),
        (k, v) => Err(format!(
            "knob `{name}` is {} but got {} `{}`",
            kind_name(k),
            value_kind(v),
            truncate(&render_value(v), 60)
        )),
    }
}

/// Why a value of the right kind lies outside the knob's approved space
/// (its range or choices), if it does.
pub fn outside_space(spec: &KnobSpec, value: &Value) -> Option<String> {
    range_check(spec, value).err()
}

/// Every assignment of `h` outside the approved space, explained.
pub fn outside_space_all(knobs: &[KnobSpec], h: &Hypothesis) -> Vec<String> {
    h.assignments
        .iter()
        .filter_map(|a| {
            let spec = knobs.iter().find(|k| k.name == a.knob)?;
            outside_space(spec, &a.value)
        })
        .collect()
}

fn range_check(spec: &KnobSpec, value: &Value) -> Result<(), String> {
    let name = &spec.name;
    match (&spec.kind, value) {
        (KnobKind::Float(r) | KnobKind::LogFloat(r), Value::Float(x)) => {
            if !x.is_finite() {
                return Err(format!("knob `{name}` = {x} is not a finite number"));
            }
            if *x < r.low || *x > r.high {
                return Err(format!(
                    "knob `{name}` = {x} is outside [{}, {}]",
                    r.low, r.high
                ));
            }
            Ok(())
        }
        (KnobKind::Int(r), Value::Int(i)) => {
            if *i < r.low || *i > r.high {
                return Err(format!(
                    "knob `{name}` = {i} is outside [{}, {}]",
                    r.low, r.high
                ));
            }
            Ok(())
        }
        (KnobKind::Categorical(choices), Value::Choice(c)) => {
            if choices.contains(c) {
                Ok(())
            } else {
                Err(format!(
                    "knob `{name}` = {:?} is not one of {}",
                    truncate(c, 60),
                    choices.join(", ")
                ))
            }
        }
        (KnobKind::Flag, Value::Flag(_)) => Ok(()),
        (kind, v) => Err(format!(
            "knob `{name}` is {} but got {} `{}`",
            kind_name(kind),
            value_kind(v),
            truncate(&render_value(v), 60)
        )),
    }
}

pub fn kind_name(kind: &KnobKind) -> &'static str {
    match kind {
        KnobKind::Float(_) => "a float",
        KnobKind::LogFloat(_) => "a log-float",
        KnobKind::Int(_) => "an int",
        KnobKind::Categorical(_) => "categorical",
        KnobKind::Flag => "a flag",
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Float(_) => "a float",
        Value::Int(_) => "an int",
        Value::Choice(_) => "a choice",
        Value::Flag(_) => "a flag",
    }
}

fn text(s: &str, what: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        return Err(format!("{what} is {} bytes; the limit is {max}", s.len()));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(format!("{what} contains control characters"));
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A canonical, order-independent key for a hypothesis' assignments.
pub fn key(h: &Hypothesis) -> String {
    let mut parts: Vec<String> = h
        .assignments
        .iter()
        .map(|a| format!("{}={}", a.knob, render_value(&a.value)))
        .collect();
    parts.sort();
    parts.join(",")
}

fn all_hypothesis_ids(data: &dyn StrategyData) -> HashSet<u64> {
    let mut ids = HashSet::new();
    let mut cursor = 0;
    loop {
        let page = data.hypotheses(cursor, 4096);
        ids.extend(page.items.iter().map(|h| h.id));
        match page.next {
            Some(next) if next > cursor => cursor = next,
            _ => return ids,
        }
    }
}
