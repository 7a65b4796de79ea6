//! Typed access to knobs and values, and a builder for hypotheses.

use crate::{
    Assignment, Context, Direction, FloatRange, Hypothesis, IntRange, KnobKind, KnobSpec, Phase,
    Value,
};

impl Value {
    /// The value as a number (floats and ints; flags as 0/1).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(x) => Some(*x),
            Value::Int(i) => Some(*i as f64),
            Value::Flag(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::Choice(_) => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Choice(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Flag(b) => Some(*b),
            _ => None,
        }
    }

    /// A short human-readable rendering (`0.05`, `3`, `adam`, `true`).
    pub fn render(&self) -> String {
        match self {
            Value::Float(x) => format!("{x}"),
            Value::Int(i) => format!("{i}"),
            Value::Choice(s) => s.clone(),
            Value::Flag(b) => format!("{b}"),
        }
    }
}

impl KnobSpec {
    /// True for float and log-float knobs.
    pub fn is_continuous(&self) -> bool {
        matches!(self.kind, KnobKind::Float(_) | KnobKind::LogFloat(_))
    }

    /// Whether `value` has this knob's type and lies in its range.
    pub fn accepts(&self, value: &Value) -> bool {
        match (&self.kind, value) {
            (KnobKind::Float(FloatRange { low, high }), Value::Float(x))
            | (KnobKind::LogFloat(FloatRange { low, high }), Value::Float(x)) => {
                x.is_finite() && *x >= *low && *x <= *high
            }
            (KnobKind::Int(IntRange { low, high }), Value::Int(i)) => *i >= *low && *i <= *high,
            (KnobKind::Categorical(choices), Value::Choice(c)) => choices.contains(c),
            (KnobKind::Flag, Value::Flag(_)) => true,
            _ => false,
        }
    }

    /// Converts `value` to this knob's type and clamps it into range.
    /// Numbers round for int knobs; an unknown choice falls back to baseline.
    pub fn clamp(&self, value: Value) -> Value {
        match &self.kind {
            KnobKind::Float(r) | KnobKind::LogFloat(r) => {
                let x = value.as_f64().filter(|x| x.is_finite());
                Value::Float(x.map_or(self.baseline.as_f64().unwrap_or(r.low), |x| {
                    x.clamp(r.low, r.high)
                }))
            }
            KnobKind::Int(r) => {
                let x = value.as_f64().filter(|x| x.is_finite());
                match x {
                    Some(x) => Value::Int((x.round() as i64).clamp(r.low, r.high)),
                    None => self.baseline.clone(),
                }
            }
            KnobKind::Categorical(choices) => match &value {
                Value::Choice(c) if choices.contains(c) => value,
                _ => self.baseline.clone(),
            },
            KnobKind::Flag => match value {
                Value::Flag(_) => value,
                _ => self.baseline.clone(),
            },
        }
    }

    /// Position of `value` in the knob's range mapped to [0, 1] (log scale for
    /// log-float knobs, index order for categorical ones).
    pub fn to_unit(&self, value: &Value) -> Option<f64> {
        match (&self.kind, value) {
            (KnobKind::Float(r), v) => {
                let x = v.as_f64()?;
                Some(if r.high > r.low {
                    (x - r.low) / (r.high - r.low)
                } else {
                    0.5
                })
            }
            (KnobKind::LogFloat(r), v) => {
                let x = v.as_f64()?;
                if x <= 0.0 || r.low <= 0.0 {
                    return None;
                }
                let (lo, hi) = (r.low.ln(), r.high.ln());
                Some(if hi > lo {
                    (x.ln() - lo) / (hi - lo)
                } else {
                    0.5
                })
            }
            (KnobKind::Int(r), Value::Int(i)) => Some(if r.high > r.low {
                (*i - r.low) as f64 / (r.high - r.low) as f64
            } else {
                0.5
            }),
            (KnobKind::Categorical(c), Value::Choice(s)) => {
                let idx = c.iter().position(|x| x == s)?;
                Some(if c.len() > 1 {
                    idx as f64 / (c.len() - 1) as f64
                } else {
                    0.5
                })
            }
            (KnobKind::Flag, Value::Flag(b)) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    /// Inverse of [`KnobSpec::to_unit`]: a valid value at position `u` in [0, 1].
    pub fn from_unit(&self, u: f64) -> Value {
        let u = if u.is_finite() {
            u.clamp(0.0, 1.0)
        } else {
            0.5
        };
        match &self.kind {
            KnobKind::Float(r) => Value::Float(r.low + u * (r.high - r.low)),
            KnobKind::LogFloat(r) => {
                let (lo, hi) = (r.low.ln(), r.high.ln());
                Value::Float((lo + u * (hi - lo)).exp().clamp(r.low, r.high))
            }
            KnobKind::Int(r) => {
                let x = r.low as f64 + u * (r.high - r.low) as f64;
                Value::Int((x.round() as i64).clamp(r.low, r.high))
            }
            KnobKind::Categorical(c) => {
                if c.is_empty() {
                    return self.baseline.clone();
                }
                let idx = (u * (c.len() - 1) as f64).round() as usize;
                Value::Choice(c[idx.min(c.len() - 1)].clone())
            }
            KnobKind::Flag => Value::Flag(u >= 0.5),
        }
    }
}

impl Context {
    /// The knob called `name`, if the campaign has it.
    pub fn knob(&self, name: &str) -> Option<&KnobSpec> {
        self.knobs.iter().find(|k| k.name == name)
    }

    /// True when objective value `a` is better than `b`.
    pub fn better(&self, a: f64, b: f64) -> bool {
        match self.objective.direction {
            Direction::Minimize => a < b,
            Direction::Maximize => a > b,
        }
    }

    /// Improvement of `value` over the baseline mean, positive = better.
    pub fn improvement(&self, value: f64) -> Option<f64> {
        let base = self.baseline.as_ref()?.mean;
        Some(match self.objective.direction {
            Direction::Minimize => base - value,
            Direction::Maximize => value - base,
        })
    }

    pub fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Validate => "validate",
            Phase::Combine => "combine",
            Phase::Exploit => "exploit",
        }
    }
}

impl Hypothesis {
    /// A hypothesis with this title and no changes yet.
    pub fn new(title: impl Into<String>) -> Self {
        Hypothesis {
            title: title.into(),
            rationale: String::new(),
            category: "general".to_string(),
            assignments: Vec::new(),
            parents: Vec::new(),
        }
    }

    pub fn because(mut self, rationale: impl Into<String>) -> Self {
        self.rationale = rationale.into();
        self
    }

    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = category.into();
        self
    }

    /// Sets `knob` to `value`, replacing an earlier assignment of that knob.
    pub fn set(mut self, knob: impl Into<String>, value: Value) -> Self {
        let knob = knob.into();
        self.assignments.retain(|a| a.knob != knob);
        self.assignments.push(Assignment { knob, value });
        self
    }

    pub fn parents(mut self, parents: impl IntoIterator<Item = u64>) -> Self {
        self.parents = parents.into_iter().collect();
        self
    }

    /// The value this hypothesis gives `knob`, if it changes it.
    pub fn get(&self, knob: &str) -> Option<&Value> {
        self.assignments
            .iter()
            .find(|a| a.knob == knob)
            .map(|a| &a.value)
    }

    /// A canonical key for de-duplication: sorted `knob=value` pairs.
    pub fn key(&self) -> String {
        assignments_key(&self.assignments)
    }
}

/// A canonical, order-independent key for a set of assignments.
pub fn assignments_key(assignments: &[Assignment]) -> String {
    let mut parts: Vec<String> = assignments
        .iter()
        .map(|a| format!("{}={}", a.knob, a.value.render()))
        .collect();
    parts.sort();
    parts.join(",")
}
