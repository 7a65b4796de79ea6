//! `[knobs]`: each knob's kind, range or choices, and baseline.

use indexmap::IndexMap;
use toml::Spanned;

use super::raw::KnobFile;
use super::{ConfigError, Locator, valid_name};
use crate::strategy::{FloatRange, IntRange, KnobKind, KnobSpec, Value};

/// The knobs, in file order: at least one, each named and valid.
pub(super) fn resolve(
    loc: &Locator,
    raw: &Spanned<IndexMap<String, Spanned<KnobFile>>>,
) -> Result<Vec<KnobSpec>, ConfigError> {
    let mut knobs = Vec::new();
    if raw.get_ref().is_empty() {
        return Err(loc.at(
            raw.span(),
            "no knobs: a campaign needs at least one knob to turn",
        ));
    }
    for (knob_name, spanned) in raw.get_ref() {
        if !valid_name(knob_name) || matches!(knob_name.as_str(), "seed" | "trial") {
            return Err(loc.at(
                spanned.span(),
                format!(
                    "knob name {knob_name:?} is not allowed: use letters, digits and _ (and not `seed` or `trial`, which the host fills)"
                ),
            ));
        }
        let spec = resolve_knob(knob_name, spanned.get_ref())
            .map_err(|m| loc.at(spanned.span(), format!("knob `{knob_name}` {m}")))?;
        knobs.push(spec);
    }
    Ok(knobs)
}

fn number(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Float(f) => Some(*f),
        toml::Value::Integer(i) => Some(*i as f64),
        _ => None,
    }
}

fn describe(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("the string {s:?}"),
        toml::Value::Integer(i) => format!("the integer {i}"),
        toml::Value::Float(f) => format!("the number {f}"),
        toml::Value::Boolean(b) => format!("the boolean {b}"),
        other => format!("a {}", other.type_str()),
    }
}

fn resolve_knob(name: &str, k: &KnobFile) -> Result<KnobSpec, String> {
    let range_f = || -> Result<FloatRange, String> {
        let low = k
            .low
            .as_ref()
            .and_then(number)
            .ok_or("needs a numeric `low`")?;
        let high = k
            .high
            .as_ref()
            .and_then(number)
            .ok_or("needs a numeric `high`")?;
        if !(low.is_finite() && high.is_finite() && low < high) {
            return Err(format!("needs low < high (got low = {low}, high = {high})"));
        }
        Ok(FloatRange { low, high })
    };
    let (kind, baseline) = match k.kind.as_str() {
        "float" | "log-float" => {
            let r = range_f()?;
            if k.kind == "log-float" && r.low <= 0.0 {
                return Err(format!(
                    "is log-float, so `low` must be > 0 (got {})",
                    r.low
                ));
            }
            let b = number(&k.baseline).ok_or_else(|| {
                format!("baseline must be a number, got {}", describe(&k.baseline))
            })?;
            if b < r.low || b > r.high {
                return Err(format!("baseline {b} is outside [{}, {}]", r.low, r.high));
            }
            let kind = if k.kind == "float" {
                KnobKind::Float(r)
            } else {
                KnobKind::LogFloat(r)
            };
            (kind, Value::Float(b))
        }
        "int" => {
            let get = |v: &Option<toml::Value>, what: &str| match v {
                Some(toml::Value::Integer(i)) => Ok(*i),
                Some(other) => Err(format!(
                    "`{what}` must be an integer, got {}",
                    describe(other)
                )),
                None => Err(format!("needs an integer `{what}`")),
            };
            let (low, high) = (get(&k.low, "low")?, get(&k.high, "high")?);
            if low >= high {
                return Err(format!("needs low < high (got low = {low}, high = {high})"));
            }
            let b = match &k.baseline {
                toml::Value::Integer(i) => *i,
                other => {
                    return Err(format!(
                        "baseline must be an integer, got {}",
                        describe(other)
                    ));
                }
            };
            if b < low || b > high {
                return Err(format!("baseline {b} is outside [{low}, {high}]"));
            }
            (KnobKind::Int(IntRange { low, high }), Value::Int(b))
        }
        "categorical" => {
            let choices = k
                .choices
                .clone()
                .ok_or("needs `choices = [\"a\", \"b\", …]`")?;
            if choices.len() < 2 {
                return Err("needs at least two choices".into());
            }
            let mut sorted = choices.clone();
            sorted.sort();
            sorted.dedup();
            if sorted.len() != choices.len() {
                return Err("has duplicate choices".into());
            }
            let b = match &k.baseline {
                toml::Value::String(s) => s.clone(),
                other => {
                    return Err(format!(
                        "baseline must be one of the choices, got {}",
                        describe(other)
                    ));
                }
            };
            if !choices.contains(&b) {
                return Err(format!(
                    "baseline {b:?} is not one of {}",
                    choices.join(", ")
                ));
            }
            (KnobKind::Categorical(choices), Value::Choice(b))
        }
        "flag" => {
            let b = match &k.baseline {
                toml::Value::Boolean(b) => *b,
                other => {
                    return Err(format!(
                        "baseline must be true or false, got {}",
                        describe(other)
                    ));
                }
            };
            (KnobKind::Flag, Value::Flag(b))
        }
        other => {
            return Err(format!(
                "unknown kind {other:?}; expected float, log-float, int, categorical or flag"
            ));
        }
    };
    if k.kind != "categorical" && k.choices.is_some() {
        return Err("`choices` only applies to categorical knobs".into());
    }
    if matches!(k.kind.as_str(), "categorical" | "flag") && (k.low.is_some() || k.high.is_some()) {
        return Err(format!("`low`/`high` do not apply to {} knobs", k.kind));
    }
    Ok(KnobSpec {
        name: name.to_string(),
        kind,
        baseline,
    })
}
