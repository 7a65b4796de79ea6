//! The campaign file: parsed (serde, with spans) into `CampaignFile`, then
//! resolved into a validated [`Campaign`] that the rest of the host trusts.
//! Every error names the file, line and column and says what was expected.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::limits::Limits;
use crate::strategy::{
    Direction, FloatRange, Grants, IntRange, KnobKind, KnobSpec, StrategySource, Value,
};

/// A campaign file error, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------- raw file

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignFile {
    campaign: CampaignSection,
    objective: ObjectiveSection,
    job: JobSection,
    knobs: Spanned<IndexMap<String, Spanned<KnobFile>>>,
    budget: Spanned<BudgetFile>,
    #[serde(default)]
    strategies: StrategiesFile,
    #[serde(default)]
    policy: PolicyFile,
    #[serde(default)]
    llm: Option<Spanned<LlmFile>>,
}

/// `[llm]`: the language-model endpoint a granted strategy may use.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LlmFile {
    url: String,
    model: String,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    token_budget: Option<u64>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_calls: Option<u32>,
    #[serde(default)]
    timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignSection {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectiveSection {
    metric: Spanned<String>,
    direction: Spanned<String>,
    #[serde(default)]
    holdout: Option<Spanned<String>>,
    #[serde(default)]
    guards: Vec<Spanned<GuardFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardFile {
    metric: String,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default)]
    min: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobSection {
    #[serde(default)]
    backend: Option<Spanned<String>>,
    #[serde(default)]
    slurm: Option<Spanned<SlurmFile>>,
    command: Spanned<Vec<String>>,
    #[serde(default)]
    env: IndexMap<String, String>,
    /// Variables copied from reagent's environment into the job's
    /// (`NAME` or `PREFIX_*`), besides the base list.
    #[serde(default)]
    pass_env: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    params_file: Option<String>,
    #[serde(default)]
    workdir: Option<String>,
    time_limit: Spanned<String>,
    #[serde(default)]
    resources: Option<Spanned<ResourcesFile>>,
    #[serde(default)]
    metrics: Option<Spanned<MetricsFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourcesFile {
    #[serde(default = "one")]
    cpus: f64,
    #[serde(default)]
    gpus: f64,
    #[serde(default)]
    memory_mb: Option<u64>,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MetricsFile {
    Named(String),
    Regex(RegexFile),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegexFile {
    regex: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnobFile {
    kind: String,
    #[serde(default)]
    low: Option<toml::Value>,
    #[serde(default)]
    high: Option<toml::Value>,
    #[serde(default)]
    choices: Option<Vec<String>>,
    baseline: toml::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetFile {
    #[serde(default)]
    cpu_hours: f64,
    #[serde(default)]
    gpu_hours: f64,
    max_trials: u32,
    #[serde(default = "default_parallel")]
    max_parallel: u32,
    #[serde(default)]
    deadline: Option<String>,
    #[serde(default)]
    phases: Option<PhasesFile>,
    #[serde(default = "default_replicates")]
    baseline_replicates: u32,
    #[serde(default = "default_replicates")]
    confirm_replicates: u32,
    #[serde(default = "default_retries")]
    max_retries: u32,
}

fn default_parallel() -> u32 {
    2
}
fn default_replicates() -> u32 {
    3
}
fn default_retries() -> u32 {
    2
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhasesFile {
    validate: f64,
    combine: f64,
    exploit: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StrategiesFile {
    #[serde(default)]
    generator: Option<Spanned<String>>,
    #[serde(default)]
    debugger: Option<Spanned<String>>,
    #[serde(default)]
    limits: Option<Spanned<Limits>>,
    #[serde(default)]
    grants: Option<Spanned<Grants>>,
    /// Salt for the strategies' randomness (default 0).
    #[serde(default)]
    seed: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlurmFile {
    #[serde(default)]
    partition: Option<String>,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    qos: Option<String>,
    /// Extra `#SBATCH` options, e.g. ["--constraint=a100", "--exclusive"].
    #[serde(default)]
    sbatch: Vec<String>,
    /// "gres" (default: `--gres=gpu:N`) or "gpus" (`--gpus=N`).
    #[serde(default)]
    gpus_as: Option<String>,
    /// Slurm's own time limit is the trial's plus this (the supervisor
    /// stops the job first, cleanly; Slurm's limit is the backstop).
    #[serde(default)]
    time_margin: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    /// Moved to the workspace policy; kept here only to say so.
    #[serde(default)]
    auto_approve_cpu_hours: Option<Spanned<f64>>,
    #[serde(default)]
    approval_expiry: Option<Spanned<String>>,
    #[serde(default)]
    ask_for_budget: bool,
}

// ---------------------------------------------------------------- resolved

/// How long a request waits for a human before it is denied, by default.
pub const DEFAULT_EXPIRY_MS: u64 = 72 * 3600 * 1000;

pub use crate::jobs::MetricsSource;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Guard {
    pub metric: String,
    pub max: Option<f64>,
    pub min: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveSpec {
    pub metric: String,
    pub direction: Direction,
    /// Recorded and reported; never shown to strategies nor used to choose.
    pub holdout: Option<String>,
    pub guards: Vec<Guard>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub cpus: f64,
    pub gpus: f64,
    pub memory_mb: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobTemplate {
    pub backend: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `[job] pass_env`: `NAME` or `PREFIX_*` patterns of variables copied
    /// from reagent's environment into the job's (see `jobs::BASE_ENV` for
    /// what every job gets). Never matches the `[llm] api_key_env` variable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_env: Vec<String>,
    /// File name (inside the job folder) of the params JSON; also `$REAGENT_PARAMS`.
    pub params_file: String,
    pub workdir: PathBuf,
    #[serde(with = "duration_secs")]
    pub time_limit: Duration,
    pub resources: Resources,
    pub metrics: MetricsSource,
    /// Options for `backend = "slurm"`.
    #[serde(default)]
    pub slurm: Option<crate::jobs::slurm::SlurmOptions>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PhaseSplit {
    pub validate: f64,
    pub combine: f64,
    pub exploit: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub cpu_hours: f64,
    pub gpu_hours: f64,
    pub max_trials: u32,
    pub max_parallel: u32,
    /// Wall-clock allowance from plan approval.
    #[serde(with = "duration_secs_opt")]
    pub deadline: Option<Duration>,
    pub phases: PhaseSplit,
    pub baseline_replicates: u32,
    pub confirm_replicates: u32,
    pub max_retries: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategiesConfig {
    pub generator: StrategySource,
    pub debugger: StrategySource,
    pub limits: Limits,
    pub grants: Grants,
    /// Mixed into every call's `ctx.seed`: two campaigns that differ only
    /// in it explore differently (benchmark replicates, restarts).
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// How long an approval request waits for a human before it is denied.
    #[serde(with = "duration_secs")]
    pub approval_expiry: Duration,
    /// When the budget cannot cover confirming the winner, ask a human for
    /// more (a budget-increase request) instead of reporting it unconfirmed.
    pub ask_for_budget: bool,
}

/// A validated campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub objective: ObjectiveSpec,
    pub job: JobTemplate,
    pub knobs: Vec<KnobSpec>,
    pub budget: Budget,
    pub strategies: StrategiesConfig,
    pub policy: Policy,
    /// The language-model endpoint, when the file has `[llm]`. Absent from
    /// the serialised spec when unset, so plans approved before `[llm]`
    /// existed keep their hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<crate::llm::LlmConfig>,
}

impl Campaign {
    pub fn knob(&self, name: &str) -> Option<&KnobSpec> {
        self.knobs.iter().find(|k| k.name == name)
    }

    /// CPU-hours reserved by one trial: cpus × time limit.
    pub fn cpu_reservation(&self) -> f64 {
        self.job.resources.cpus * self.job.time_limit.as_secs_f64() / 3600.0
    }

    pub fn gpu_reservation(&self) -> f64 {
        self.job.resources.gpus * self.job.time_limit.as_secs_f64() / 3600.0
    }

    /// Knobs whose `{placeholder}` is pasted into code rather than passed
    /// as an argument: it appears in the argument that follows a `-c` or
    /// `-e` flag (`sh -c "train --opt {optimizer}"`, `bash -lc …`,
    /// `python -c …`, `perl -e …`). A value there is read by a shell or an
    /// interpreter, so `adam'; touch PWNED; echo '` would run `touch`.
    pub fn knobs_in_code(&self) -> Vec<String> {
        let command = &self.job.command;
        let mut out: Vec<String> = Vec::new();
        for pair in command.windows(2) {
            if !is_code_flag(&pair[0]) {
                continue;
            }
            for name in placeholders(&pair[1]).unwrap_or_default() {
                if self.knob(&name).is_some() && !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        out
    }
}

/// `-c`, `-e`, or a cluster of short flags ending in one (`-lc`, `-ec`,
/// `-xe`): the next argument is code for a shell or an interpreter.
fn is_code_flag(arg: &str) -> bool {
    arg.strip_prefix('-').is_some_and(|flags| {
        !flags.is_empty()
            && !flags.starts_with('-')
            && flags.bytes().all(|b| b.is_ascii_alphabetic())
            && (flags.ends_with('c') || flags.ends_with('e'))
    })
}

/// Whether a value pasted into code is inert there: letters, digits and
/// `._+-=,:/@%` only (no quotes, spaces, `$`, `;`, `|`, `&`, backticks,
/// globs, redirections or newlines).
pub fn inert_in_code(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._+-=,:/@%".contains(&b))
}

pub(crate) mod duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs_f64(f64::deserialize(d)?))
    }
}

mod duration_secs_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.map(Duration::from_secs_f64))
    }
}

// ---------------------------------------------------------------- resolving

/// Parses a duration such as `90s`, `10m`, `2h`, `1h30m`, `1d` or a bare
/// number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return if secs > 0.0 && secs.is_finite() {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(format!("duration {text:?} must be positive"))
        };
    }
    let mut total = 0.0;
    let mut number = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86400.0,
            ' ' => continue,
            _ => {
                return Err(format!(
                    "cannot read duration {text:?}: unknown unit `{c}` (use s, m, h, d)"
                ));
            }
        };
        let n: f64 = number.parse().map_err(|_| {
            format!("cannot read duration {text:?}: expected a number before `{c}`")
        })?;
        total += n * unit;
        number.clear();
    }
    if !number.is_empty() {
        return Err(format!(
            "cannot read duration {text:?}: the last number has no unit"
        ));
    }
    if total <= 0.0 {
        return Err(format!("duration {text:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(total))
}

struct Locator<'a> {
    file: &'a str,
    text: &'a str,
}

impl Locator<'_> {
    fn at(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> ConfigError {
        let offset = span.start.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        ConfigError {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Placeholders `{name}` in a command argument (`{{` and `}}` escape braces).
pub fn placeholders(arg: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("unclosed `{{` in {arg:?}")),
                    }
                }
                out.push(name);
            }
            '}' => {
                return Err(format!(
                    "unmatched `}}` in {arg:?} (write `}}}}` for a literal brace)"
                ));
            }
            _ => {}
        }
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
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

/// Reads and resolves a campaign file.
pub fn load(path: &Path) -> Result<Campaign, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: 0,
        column: 0,
        message: format!("cannot read the campaign file: {e}"),
    })?;
    // Jobs and `reagent wake` run from anywhere (cron, a supervisor), so
    // paths relative to the campaign file are made absolute now.
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = parent.canonicalize().unwrap_or(parent);
    parse(&file, &text, &base)
}

/// Parses and resolves campaign text. Relative paths resolve against `base`.
pub fn parse(file: &str, text: &str, base: &Path) -> Result<Campaign, ConfigError> {
    let loc = Locator { file, text };
    let raw: CampaignFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        loc.at(span, e.message().to_string())
    })?;

    let name = raw.campaign.name.get_ref().trim().to_string();
    if name.is_empty() {
        return Err(loc.at(raw.campaign.name.span(), "campaign name is empty"));
    }

    // Knobs.
    let mut knobs = Vec::new();
    if raw.knobs.get_ref().is_empty() {
        return Err(loc.at(
            raw.knobs.span(),
            "no knobs: a campaign needs at least one knob to turn",
        ));
    }
    for (knob_name, spanned) in raw.knobs.get_ref() {
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

    // Objective.
    let direction = match raw.objective.direction.get_ref().as_str() {
        "minimize" => Direction::Minimize,
        "maximize" => Direction::Maximize,
        other => {
            return Err(loc.at(
                raw.objective.direction.span(),
                format!("direction {other:?}: expected \"minimize\" or \"maximize\""),
            ));
        }
    };
    let metric = raw.objective.metric.get_ref().clone();
    if !valid_name(&metric) {
        return Err(loc.at(
            raw.objective.metric.span(),
            format!("metric name {metric:?}: use letters, digits and _"),
        ));
    }
    let holdout = match &raw.objective.holdout {
        Some(h) if h.get_ref() == &metric => {
            return Err(loc.at(
                h.span(),
                "the holdout metric must differ from the objective metric",
            ));
        }
        Some(h) if !valid_name(h.get_ref()) => {
            return Err(loc.at(
                h.span(),
                format!(
                    "holdout metric {:?}: use letters, digits and _",
                    h.get_ref()
                ),
            ));
        }
        Some(h) => Some(h.get_ref().clone()),
        None => None,
    };
    let mut guards = Vec::new();
    for g in &raw.objective.guards {
        let gf = g.get_ref();
        if gf.max.is_none() && gf.min.is_none() {
            return Err(loc.at(
                g.span(),
                format!("guard on `{}` needs `max` or `min`", gf.metric),
            ));
        }
        if !valid_name(&gf.metric) {
            return Err(loc.at(
                g.span(),
                format!("guard metric {:?}: use letters, digits and _", gf.metric),
            ));
        }
        if holdout.as_deref() == Some(gf.metric.as_str()) {
            return Err(loc.at(
                g.span(),
                "a guard on the holdout metric would use it to choose; the holdout is only reported",
            ));
        }
        if let (Some(lo), Some(hi)) = (gf.min, gf.max)
            && lo > hi
        {
            return Err(loc.at(
                g.span(),
                format!("guard on `{}` has min {lo} > max {hi}", gf.metric),
            ));
        }
        guards.push(Guard {
            metric: gf.metric.clone(),
            max: gf.max,
            min: gf.min,
        });
    }

    // Job.
    let backend = match &raw.job.backend {
        None => "local".to_string(),
        Some(b) if b.get_ref() == "local" || b.get_ref() == "slurm" => b.get_ref().clone(),
        Some(b) => {
            return Err(loc.at(
                b.span(),
                format!("backend {:?}: expected \"local\" or \"slurm\"", b.get_ref()),
            ));
        }
    };
    let slurm = match (&raw.job.slurm, backend.as_str()) {
        (Some(s), "local") => {
            return Err(loc.at(
                s.span(),
                "[job.slurm] is set but backend is \"local\"; add backend = \"slurm\" to [job]",
            ));
        }
        (s, "slurm") => {
            let file = s.as_ref().map(|s| s.get_ref());
            let at = |m: String| match s {
                Some(s) => loc.at(s.span(), m),
                None => loc.at(raw.job.command.span(), m),
            };
            let gpus_as = match file.and_then(|f| f.gpus_as.as_deref()) {
                None | Some("gres") => crate::jobs::slurm::GpuFlag::Gres,
                Some("gpus") => crate::jobs::slurm::GpuFlag::Gpus,
                Some(other) => {
                    return Err(at(format!(
                        "job.slurm.gpus_as {other:?}: expected \"gres\" or \"gpus\""
                    )));
                }
            };
            let time_margin = match file.and_then(|f| f.time_margin.as_deref()) {
                Some(t) => {
                    parse_duration(t).map_err(|m| at(format!("job.slurm.time_margin: {m}")))?
                }
                None => Duration::from_secs(60),
            };
            let sbatch = file.map(|f| f.sbatch.clone()).unwrap_or_default();
            for line in &sbatch {
                if !line.starts_with('-') || line.contains('\n') {
                    return Err(at(format!(
                        "job.slurm.sbatch entry {line:?}: expected one sbatch option such as \"--constraint=a100\""
                    )));
                }
            }
            let word = |v: Option<&String>, what: &str| -> Result<Option<String>, ConfigError> {
                match v {
                    Some(x)
                        if x.is_empty() || x.chars().any(|c| c.is_whitespace() || c == '\'') =>
                    {
                        Err(at(format!("job.slurm.{what} {x:?} is not a valid name")))
                    }
                    v => Ok(v.cloned()),
                }
            };
            Some(crate::jobs::slurm::SlurmOptions {
                partition: word(file.and_then(|f| f.partition.as_ref()), "partition")?,
                account: word(file.and_then(|f| f.account.as_ref()), "account")?,
                qos: word(file.and_then(|f| f.qos.as_ref()), "qos")?,
                sbatch,
                gpus_as,
                time_margin_secs: time_margin.as_secs(),
            })
        }
        _ => None,
    };
    let command = raw.job.command.get_ref().clone();
    if command.is_empty() || command[0].trim().is_empty() {
        return Err(loc.at(
            raw.job.command.span(),
            "job command is empty; expected [\"program\", \"arg\", …]",
        ));
    }
    for arg in &command {
        let names = placeholders(arg).map_err(|m| loc.at(raw.job.command.span(), m))?;
        for n in names {
            if n != "seed" && n != "trial" && !knobs.iter().any(|k| k.name == n) {
                return Err(loc.at(
                    raw.job.command.span(),
                    format!(
                        "unknown knob `{{{n}}}` in the command template; the knobs are: {} (and {{seed}}, {{trial}})",
                        knobs.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
    }
    let time_limit = parse_duration(raw.job.time_limit.get_ref())
        .map_err(|m| loc.at(raw.job.time_limit.span(), m))?;
    let resources = match &raw.job.resources {
        None => Resources {
            cpus: 1.0,
            gpus: 0.0,
            memory_mb: None,
        },
        Some(r) => {
            let rf = r.get_ref();
            if !(rf.cpus > 0.0 && rf.cpus.is_finite()) {
                return Err(loc.at(r.span(), "resources.cpus must be > 0"));
            }
            if !(rf.gpus >= 0.0 && rf.gpus.is_finite()) {
                return Err(loc.at(r.span(), "resources.gpus must be ≥ 0"));
            }
            Resources {
                cpus: rf.cpus,
                gpus: rf.gpus,
                memory_mb: rf.memory_mb,
            }
        }
    };
    let metrics = match &raw.job.metrics {
        None => MetricsSource::Jsonl,
        Some(m) => match m.get_ref() {
            MetricsFile::Named(s) if s == "jsonl" => MetricsSource::Jsonl,
            MetricsFile::Named(s) => {
                return Err(loc.at(
                    m.span(),
                    format!("metrics {s:?}: expected \"jsonl\" or {{ regex = '…' }}"),
                ));
            }
            MetricsFile::Regex(RegexFile { regex }) => {
                let re = regex::Regex::new(regex).map_err(|e| {
                    loc.at(m.span(), format!("metrics regex does not compile: {e}"))
                })?;
                if re.capture_names().flatten().next().is_none() {
                    return Err(loc.at(m.span(), "metrics regex has no named groups; name each metric, e.g. (?P<valid_ne>[0-9.eE+-]+)"));
                }
                MetricsSource::Regex(regex.clone())
            }
        },
    };
    let params_file = raw
        .job
        .params_file
        .clone()
        .unwrap_or_else(|| "params.json".into());
    let params_ok = !params_file.is_empty()
        && params_file.len() <= 200
        && !params_file.starts_with('.')
        && params_file
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != '\\');
    use crate::jobs::local as files;
    let job_files = [
        files::SPEC_FILE,
        files::STATUS_FILE,
        files::SUPERVISOR_PID_FILE,
        files::LOCK_FILE,
        files::JOB_PID_FILE,
        files::STDOUT_FILE,
        files::STDERR_FILE,
        files::METRICS_FILE,
        files::WAKE_LOG_FILE,
        files::SUPERVISOR_LOG_FILE,
    ];
    if job_files.contains(&params_file.as_str()) {
        return Err(loc.at(
            raw.job.command.span(),
            format!("[job] params_file {params_file:?} is a file the job folder already uses; pick another name"),
        ));
    }
    if !params_ok {
        return Err(loc.at(
            raw.job.command.span(),
            format!("[job] params_file {params_file:?} must be a plain file name (no `/`, not starting with `.`)"),
        ));
    }
    let workdir = match &raw.job.workdir {
        Some(w) => base.join(w),
        None => base.to_path_buf(),
    };
    let workdir = if workdir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        workdir
    };

    // Budget.
    let b = raw.budget.get_ref();
    let at_budget = |m: String| loc.at(raw.budget.span(), m);
    if b.cpu_hours.is_nan() || b.gpu_hours.is_nan() || b.cpu_hours < 0.0 || b.gpu_hours < 0.0 {
        return Err(at_budget("budget hours must be ≥ 0".into()));
    }
    if b.cpu_hours == 0.0 && b.gpu_hours == 0.0 {
        return Err(at_budget(
            "zero budget: set budget.cpu_hours (or gpu_hours) above 0".into(),
        ));
    }
    if resources.gpus > 0.0 && b.gpu_hours == 0.0 {
        return Err(at_budget(
            "the job asks for GPUs but budget.gpu_hours is 0".into(),
        ));
    }
    if b.max_parallel == 0 {
        return Err(at_budget("budget.max_parallel must be at least 1".into()));
    }
    if b.confirm_replicates == 0 {
        return Err(at_budget(
            "budget.confirm_replicates must be at least 1 (the winner and the baseline are re-run with this many fresh seeds)".into(),
        ));
    }
    if b.baseline_replicates == 0 {
        return Err(at_budget(
            "budget.baseline_replicates must be at least 1 (3 or more to estimate seed noise)"
                .into(),
        ));
    }
    let minimum = b.baseline_replicates + 1;
    if b.max_trials < minimum {
        return Err(at_budget(format!(
            "budget.max_trials = {} leaves no room: the baseline alone needs {} replicates; use at least {minimum}",
            b.max_trials, b.baseline_replicates
        )));
    }
    let phases = match &b.phases {
        None => PhaseSplit {
            validate: 0.4,
            combine: 0.25,
            exploit: 0.35,
        },
        Some(p) => {
            let sum = p.validate + p.combine + p.exploit;
            if [p.validate, p.combine, p.exploit]
                .iter()
                .any(|x| x.is_nan() || *x < 0.0)
                || (sum - 1.0).abs() > 0.01
            {
                return Err(at_budget(format!(
                    "budget.phases must be ≥ 0 and add up to 1 (they add up to {sum})"
                )));
            }
            PhaseSplit {
                validate: p.validate,
                combine: p.combine,
                exploit: p.exploit,
            }
        }
    };
    let deadline = match &b.deadline {
        Some(d) => Some(parse_duration(d).map_err(|m| at_budget(format!("budget.deadline: {m}")))?),
        None => None,
    };
    let cpu_reservation = resources.cpus * time_limit.as_secs_f64() / 3600.0;
    if b.cpu_hours > 0.0 && cpu_reservation > b.cpu_hours {
        return Err(at_budget(format!(
            "one trial reserves {cpu_reservation:.3} CPU-hours (cpus × time_limit) but the budget is {} CPU-hours: not even one trial fits",
            b.cpu_hours
        )));
    }
    let gpu_reservation = resources.gpus * time_limit.as_secs_f64() / 3600.0;
    if gpu_reservation > b.gpu_hours && resources.gpus > 0.0 {
        return Err(at_budget(format!(
            "one trial reserves {gpu_reservation:.3} GPU-hours (gpus × time_limit) but the budget is {} GPU-hours: not even one trial fits",
            b.gpu_hours
        )));
    }

    // Strategies.
    let source =
        |s: &Option<Spanned<String>>, default: &str| -> Result<StrategySource, ConfigError> {
            match s {
                None => Ok(StrategySource::parse(default)),
                Some(s) => {
                    let text = s.get_ref();
                    match StrategySource::parse(text) {
                        StrategySource::Builtin(name) => {
                            if crate::strategy::builtin::find(&name).is_none() {
                                return Err(loc.at(
                                    s.span(),
                                    format!(
                                        "unknown strategy {text:?}; the built-ins are {}",
                                        crate::strategy::builtin::names()
                                    ),
                                ));
                            }
                            Ok(StrategySource::Builtin(name))
                        }
                        StrategySource::File(p) => {
                            let full = base.join(p);
                            if !full.exists() {
                                return Err(loc.at(
                                    s.span(),
                                    format!("strategy file {} does not exist", full.display()),
                                ));
                            }
                            Ok(StrategySource::File(full))
                        }
                    }
                }
            }
        };
    let limits = match &raw.strategies.limits {
        Some(l) => {
            l.get_ref()
                .check()
                .map_err(|m| loc.at(l.span(), format!("[strategies] {m}")))?;
            l.get_ref().clone()
        }
        None => Limits::default(),
    };
    let strategies = StrategiesConfig {
        generator: source(&raw.strategies.generator, "builtin:three-phase")?,
        debugger: source(&raw.strategies.debugger, "builtin:runbook")?,
        limits,
        grants: raw
            .strategies
            .grants
            .as_ref()
            .map(|g| *g.get_ref())
            .unwrap_or_default(),
        seed: raw.strategies.seed,
    };

    if let Some(a) = &raw.policy.auto_approve_cpu_hours {
        return Err(loc.at(
            a.span(),
            "policy.auto_approve_cpu_hours: a campaign file cannot approve itself; automatic approval is decided by the workspace policy (.reagent/policy.cedar, see `reagent policy show` and docs/governance.md)",
        ));
    }
    let policy = Policy {
        approval_expiry: match &raw.policy.approval_expiry {
            Some(d) => parse_duration(d.get_ref())
                .map_err(|m| loc.at(d.span(), format!("policy.approval_expiry: {m}")))?,
            None => Duration::from_millis(DEFAULT_EXPIRY_MS),
        },
        ask_for_budget: raw.policy.ask_for_budget,
    };
    let llm = match &raw.llm {
        None => None,
        Some(l) => {
            let f = l.get_ref();
            let timeout = match &f.timeout {
                Some(t) => {
                    parse_duration(t).map_err(|m| loc.at(l.span(), format!("llm.timeout: {m}")))?
                }
                None => crate::llm::DEFAULT_TIMEOUT,
            };
            let config = crate::llm::LlmConfig {
                url: f.url.clone(),
                model: f.model.clone(),
                api_key_env: f.api_key_env.clone(),
                token_budget: f.token_budget.unwrap_or(crate::llm::DEFAULT_TOKEN_BUDGET),
                max_tokens: f.max_tokens.unwrap_or(crate::llm::DEFAULT_MAX_TOKENS),
                max_calls: f.max_calls.unwrap_or(crate::llm::DEFAULT_MAX_CALLS),
                timeout,
            };
            config.check().map_err(|m| loc.at(l.span(), m))?;
            Some(config)
        }
    };
    if strategies.grants.llm && llm.is_none() {
        let span = raw
            .strategies
            .grants
            .as_ref()
            .map(|g| g.span())
            .unwrap_or(0..0);
        return Err(loc.at(
            span,
            "[strategies] grants llm, but the file has no [llm] section; add one with the endpoint, e.g.\n  [llm]\n  url = \"https://api.openai.com/v1/chat/completions\"\n  model = \"gpt-4o-mini\"\n  api_key_env = \"OPENAI_API_KEY\"\n  token_budget = 100000",
        ));
    }
    let mut pass_env = Vec::new();
    for p in raw.job.pass_env.as_ref().map_or(&[][..], |v| v.get_ref()) {
        let pattern = p.get_ref();
        crate::jobs::check_env_pattern(pattern)
            .map_err(|m| loc.at(p.span(), format!("job.{m}")))?;
        if let Some(key) = llm.as_ref().and_then(|l| l.api_key_env.as_deref())
            && crate::jobs::env_pattern_matches(pattern, key)
        {
            return Err(loc.at(
                p.span(),
                format!(
                    "job.pass_env pattern {pattern:?} matches {key}, the language model's key ([llm] api_key_env); jobs never get the key: narrow the pattern"
                ),
            ));
        }
        pass_env.push(pattern.clone());
    }
    Ok(Campaign {
        name,
        description: raw.campaign.description,
        tags: raw.campaign.tags,
        objective: ObjectiveSpec {
            metric,
            direction,
            holdout,
            guards,
        },
        job: JobTemplate {
            backend,
            command,
            env: raw.job.env.into_iter().collect(),
            pass_env,
            params_file,
            workdir,
            time_limit,
            resources,
            metrics,
            slurm,
        },
        knobs,
        budget: Budget {
            cpu_hours: b.cpu_hours,
            gpu_hours: b.gpu_hours,
            max_trials: b.max_trials,
            max_parallel: b.max_parallel,
            deadline,
            phases,
            baseline_replicates: b.baseline_replicates,
            confirm_replicates: b.confirm_replicates,
            max_retries: b.max_retries,
        },
        strategies,
        policy,
        llm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[campaign]
name = "ranker-ne"
tags = ["ranker"]

[objective]
metric = "valid_ne"
direction = "minimize"
holdout = "test_ne"

[job]
command = ["trainer", "--lr", "{lr}", "--opt={optimizer}", "--seed", "{seed}"]
time_limit = "10m"
resources = { cpus = 1, gpus = 0, memory_mb = 2048 }

[knobs]
lr = { kind = "log-float", low = 1e-4, high = 1.0, baseline = 0.05 }
optimizer = { kind = "categorical", choices = ["sgd", "adam"], baseline = "sgd" }
layers = { kind = "int", low = 0, high = 3, baseline = 0 }
use_bias = { kind = "flag", baseline = true }

[budget]
cpu_hours = 2.0
max_trials = 20
"#;

    fn err(text: &str) -> ConfigError {
        parse("c.toml", text, Path::new(".")).expect_err("should fail")
    }

    #[test]
    fn a_good_file_resolves_with_defaults() {
        let c = parse("c.toml", GOOD, Path::new("/x")).unwrap();
        assert_eq!(c.knobs.len(), 4);
        assert_eq!(c.knobs[0].name, "lr", "file order is kept");
        assert_eq!(c.job.time_limit, Duration::from_secs(600));
        assert_eq!(c.budget.baseline_replicates, 3);
        assert_eq!(c.budget.phases.validate, 0.4);
        assert_eq!(
            c.strategies.generator,
            StrategySource::Builtin("three-phase".into())
        );
        assert_eq!(c.objective.holdout.as_deref(), Some("test_ne"));
        assert!((c.cpu_reservation() - 1.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn an_unknown_knob_in_the_template_is_located() {
        let e = err(&GOOD.replace("{optimizer}", "{optimiser}"));
        assert_eq!((e.line, e.file.as_str()), (12, "c.toml"));
        assert!(e.message.contains("unknown knob `{optimiser}`"), "{e}");
    }

    #[test]
    fn pass_env_patterns_are_checked_and_never_match_the_llm_key() {
        let with = |pass: &str, llm: bool| {
            let mut t = GOOD.replace(
                "time_limit = \"10m\"",
                &format!("time_limit = \"10m\"\npass_env = {pass}"),
            );
            if llm {
                t.push_str("\n[llm]\nurl = \"https://llm.example/v1/chat/completions\"\nmodel = \"m\"\napi_key_env = \"OPENAI_API_KEY\"\n");
            }
            t
        };
        let c = parse(
            "c.toml",
            &with(r#"["HF_*", "WANDB_API_KEY"]"#, true),
            Path::new("/x"),
        )
        .unwrap();
        assert_eq!(c.job.pass_env, ["HF_*", "WANDB_API_KEY"]);
        let e = err(&with(r#"["HF_*", "OPENAI_*"]"#, true));
        assert_eq!((e.line, e.column), (14, 21), "{e}");
        assert!(e.message.contains("matches OPENAI_API_KEY"), "{e}");
        // Without [llm] there is no key to protect.
        assert!(parse("c.toml", &with(r#"["OPENAI_*"]"#, false), Path::new("/x")).is_ok());
        for bad in [r#"["*"]"#, r#"["A-B"]"#, r#"["REAGENT_WORKSPACE"]"#] {
            let e = err(&with(bad, false));
            assert_eq!(e.line, 14, "{bad}: {e}");
            assert!(e.message.starts_with("job.pass_env pattern"), "{e}");
        }
    }

    #[test]
    fn a_baseline_outside_its_range_is_located() {
        let e = err(&GOOD.replace("baseline = 0.05", "baseline = 5.0"));
        assert_eq!(e.line, 17);
        assert!(
            e.message.contains("baseline 5 is outside [0.0001, 1]"),
            "{e}"
        );
    }

    #[test]
    fn zero_budget_and_bad_phases_are_refused() {
        assert!(
            err(&GOOD.replace("cpu_hours = 2.0", "cpu_hours = 0"))
                .message
                .contains("zero budget")
        );
        let e = err(&GOOD.replace(
            "max_trials = 20",
            "max_trials = 20\nphases = { validate = 0.5, combine = 0.5, exploit = 0.5 }",
        ));
        assert!(e.message.contains("add up to 1"), "{e}");
        let e = err(&GOOD.replace("max_trials = 20", "max_trials = 3"));
        assert!(e.message.contains("use at least 4"), "{e}");
    }

    #[test]
    fn syntax_and_type_errors_carry_line_and_column() {
        let e = err(&GOOD.replace("direction = \"minimize\"", "direction = minimize"));
        assert_eq!(e.line, 8);
        let e = err(&GOOD.replace("max_trials = 20", "max_trials = \"many\""));
        assert!(e.line >= 23, "{e}");
        let e = err(&GOOD.replace("[budget]", "[budget]\nbogus = 1"));
        assert!(e.message.contains("bogus"), "{e}");
        let e = err(&GOOD.replace("direction = \"minimize\"", "direction = \"down\""));
        assert!(
            e.message.contains("expected \"minimize\" or \"maximize\""),
            "{e}"
        );
    }

    #[test]
    fn placeholders_inside_code_strings_are_found() {
        let mut c = parse("c.toml", GOOD, Path::new("/x")).unwrap();
        c.job.command = vec![
            "sh".into(),
            "-c".into(),
            "echo {optimizer} {lr}".into(),
            "{layers}".into(),
        ];
        assert_eq!(c.knobs_in_code(), vec!["optimizer", "lr"]);
        c.job.command = vec!["bash".into(), "-lc".into(), "run {layers}".into()];
        assert_eq!(c.knobs_in_code(), vec!["layers"]);
        c.job.command = vec!["sh".into(), "toy.sh".into(), "{optimizer}".into()];
        assert!(c.knobs_in_code().is_empty());
        c.job.command = vec!["train".into(), "--cache".into(), "{optimizer}".into()];
        assert!(c.knobs_in_code().is_empty());
        assert!(inert_in_code("adam_w-2.0"));
        assert!(!inert_in_code("adam'; touch PWNED; echo '"));
        assert!(!inert_in_code("a b"));
        assert!(!inert_in_code("$(id)"));
    }

    #[test]
    fn durations_and_placeholders() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(placeholders("eta={eta},{{literal}}").unwrap(), vec!["eta"]);
        assert!(placeholders("{open").is_err());
    }
}
