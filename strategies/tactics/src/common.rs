//! Helpers shared by the three phases: full configurations, de-duplication
//! keys, tidy values, number formatting and the slate that collects output.

use std::collections::BTreeSet;

use reagent_sdk::{
    Assignment, Context, Hypothesis, HypothesisSummary, KnobKind, KnobSpec, TrialSummary, Value,
};

/// A full configuration: one value per knob, in `ctx.knobs` order.
pub type Config = Vec<Value>;

/// The baseline configuration.
pub fn baseline(ctx: &Context) -> Config {
    ctx.knobs.iter().map(|k| k.baseline.clone()).collect()
}

/// The configuration a list of assignments describes (unknown knobs and
/// invalid values are ignored; unlisted knobs keep their baseline).
pub fn config_of(ctx: &Context, assignments: &[Assignment]) -> Config {
    let mut config = baseline(ctx);
    for a in assignments {
        if let Some(i) = ctx.knobs.iter().position(|k| k.name == a.knob)
            && ctx.knobs[i].accepts(&a.value)
        {
            config[i] = a.value.clone();
        }
    }
    config
}

/// Equality that ignores float noise in the last few bits.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => {
            x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
        }
        _ => a == b,
    }
}

/// Indices of the knobs where `config` differs from the baseline.
pub fn changed_knobs(ctx: &Context, config: &Config) -> Vec<usize> {
    (0..ctx.knobs.len())
        .filter(|&i| !same_value(&config[i], &ctx.knobs[i].baseline))
        .collect()
}

/// The assignments that turn the baseline into `config`: only knobs whose
/// value differs from baseline.
pub fn assignments_of(ctx: &Context, config: &Config) -> Vec<Assignment> {
    changed_knobs(ctx, config)
        .into_iter()
        .map(|i| Assignment {
            knob: ctx.knobs[i].name.clone(),
            value: config[i].clone(),
        })
        .collect()
}

/// A canonical key for a configuration: sorted `knob=value` pairs of the
/// knobs that differ from baseline, floats to ten significant digits so
/// that values differing only by rounding noise collide.
pub fn config_key(ctx: &Context, config: &Config) -> String {
    let mut parts: Vec<String> = changed_knobs(ctx, config)
        .into_iter()
        .map(|i| {
            let value = match &config[i] {
                Value::Float(x) => format!("{x:.9e}"),
                other => other.render(),
            };
            format!("{}={}", ctx.knobs[i].name, value)
        })
        .collect();
    parts.sort();
    parts.join(",")
}

/// `x` rounded to `digits` significant digits.
pub fn round_sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let power = digits - 1 - x.abs().log10().floor() as i32;
    if !(-300..=300).contains(&power) {
        return x;
    }
    let scale = 10f64.powi(power);
    (x * scale).round() / scale
}

/// A valid value for `knob` near `value`: typed and clamped, floats rounded
/// to four significant digits so proposals read well.
pub fn tidy(knob: &KnobSpec, value: Value) -> Value {
    match (&knob.kind, value) {
        (KnobKind::Float(_) | KnobKind::LogFloat(_), Value::Float(x)) => {
            knob.clamp(Value::Float(round_sig(x, 4)))
        }
        (_, value) => knob.clamp(value),
    }
}

/// A number for titles and rationales: four significant digits.
pub fn num(x: f64) -> String {
    let r = round_sig(x, 4);
    if r != 0.0 && (r.abs() < 1e-3 || r.abs() >= 1e6) {
        format!("{r:e}")
    } else {
        format!("{r}")
    }
}

/// A value for titles and rationales.
pub fn show(value: &Value) -> String {
    match value {
        Value::Float(x) => num(*x),
        // An empty choice (e.g. "no hidden layers") would vanish in text.
        Value::Choice(c) if c.is_empty() => "\"\"".to_string(),
        other => other.render(),
    }
}

/// The first three of `moves` for a title, e.g. `a → b, c → d, e → f, +2 more`.
pub fn first_few(moves: &[String]) -> String {
    if moves.len() > 3 {
        format!("{}, +{} more", moves[..3].join(", "), moves.len() - 3)
    } else {
        moves.join(", ")
    }
}

/// A signed effect for rationales, e.g. `+0.012`.
pub fn signed(x: f64) -> String {
    if x >= 0.0 {
        format!("+{}", num(x))
    } else {
        num(x)
    }
}

/// What the campaign has done so far, read once per call.
pub struct Past {
    pub hypotheses: Vec<HypothesisSummary>,
    pub trials: Vec<TrialSummary>,
    /// Keys of every configuration already proposed or run (and baseline).
    pub tried: BTreeSet<String>,
}

impl Past {
    pub fn load(ctx: &Context) -> Past {
        let hypotheses = reagent_sdk::history::hypotheses();
        let trials = reagent_sdk::history::trials();
        let mut tried = BTreeSet::new();
        tried.insert(config_key(ctx, &baseline(ctx)));
        for h in &hypotheses {
            tried.insert(config_key(ctx, &config_of(ctx, &h.assignments)));
        }
        for t in &trials {
            tried.insert(config_key(ctx, &config_of(ctx, &t.assignments)));
        }
        Past {
            hypotheses,
            trials,
            tried,
        }
    }
}

/// The answer being built: refuses invalid, baseline-equal, already-tried
/// and duplicate configurations, and stops at `max`.
pub struct Slate<'a> {
    ctx: &'a Context,
    seen: BTreeSet<String>,
    max: usize,
    pub items: Vec<Hypothesis>,
}

impl<'a> Slate<'a> {
    pub fn new(ctx: &'a Context, past: &Past, max: u32) -> Slate<'a> {
        Slate {
            ctx,
            seen: past.tried.clone(),
            max: max as usize,
            items: Vec::new(),
        }
    }

    /// Changes how many hypotheses the slate takes in all.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    pub fn is_full(&self) -> bool {
        self.items.len() >= self.max
    }

    /// Whether `config` would be accepted (valid, new, not baseline).
    pub fn admits(&self, config: &Config) -> bool {
        config.len() == self.ctx.knobs.len()
            && self.ctx.knobs.iter().zip(config).all(|(k, v)| k.accepts(v))
            && !self.seen.contains(&config_key(self.ctx, config))
    }

    /// Adds a hypothesis for `config` if there is room and it is admissible.
    pub fn push(&mut self, config: &Config, hypothesis: Hypothesis) -> bool {
        if self.is_full() || !self.admits(config) {
            return false;
        }
        self.seen.insert(config_key(self.ctx, config));
        self.items.push(Hypothesis {
            assignments: assignments_of(self.ctx, config),
            ..hypothesis
        });
        true
    }
}
