//! The campaign file: parsed (serde, with spans) into the raw structs of
//! [`raw`], then resolved section by section ([`resolve`], [`knobs`],
//! [`job`]) into a validated [`Campaign`] that the rest of the host trusts.
//! Every error names the file, line and column and says what was expected.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::limits::Limits;
use crate::strategy::{Direction, Grants, KnobSpec, StrategySource};

mod duration;
mod job;
mod knobs;
mod raw;
mod resolve;

pub use duration::parse_duration;

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

/// Turns a byte span of the campaign text into a located [`ConfigError`].
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

/// A located error in any TOML file Reagent reads (the workspace config
/// uses it too): `span` is a byte range of `text`.
pub fn located(
    file: &str,
    text: &str,
    span: std::ops::Range<usize>,
    message: impl Into<String>,
) -> ConfigError {
    Locator { file, text }.at(span, message)
}

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
    #[serde(with = "crate::time::duration_secs")]
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
    #[serde(with = "crate::time::duration_secs_opt")]
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
    #[serde(with = "crate::time::duration_secs")]
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
    /// Early stopping of losing trials, when the file has `[stopping]`.
    /// Absent from the serialised spec when unset (plans approved before it
    /// existed keep their hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping: Option<StoppingSpec>,
}

/// `[stopping]`: the median stopping rule on an intermediate metric. A
/// running trial that has reported step `s >= min_steps` is stopped when
/// the best value it reported so far is worse (in the objective's
/// direction) than the median of what the completed trials reported at
/// the same step (their last report at or before `s`), once at least
/// `min_trials` completed trials have reported by then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoppingSpec {
    /// The intermediate metric (default: the objective's).
    pub metric: String,
    pub min_steps: u32,
    pub min_trials: u32,
}

impl StoppingSpec {
    pub const DEFAULT_MIN_STEPS: u32 = 1;
    pub const DEFAULT_MIN_TRIALS: u32 = 3;
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

/// Placeholders `{name}` in a command argument (`{{` and `}}` escape braces).
pub fn placeholders(arg: &str) -> Result<Vec<String>, String> {
    Ok(template(arg)?
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Placeholder(name) => Some(name),
            Piece::Text(_) => None,
        })
        .collect())
}

/// One piece of a command-template argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text (`{{` and `}}` already read as one brace).
    Text(String),
    /// `{name}`.
    Placeholder(String),
}

/// An argument of the command template in pieces: literal text and
/// `{placeholder}`s, with `{{`/`}}` as literal braces. The one reader of
/// the template syntax: `placeholders` checks with it, the engine renders
/// with it.
pub fn template(arg: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
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
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                out.push(Piece::Placeholder(name));
            }
            '}' => {
                return Err(format!(
                    "unmatched `}}` in {arg:?} (write `}}}}` for a literal brace)"
                ));
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

/// A metric name as trainers and trackers write them: MLflow's set
/// (letters, digits, `_ - . / space`) plus `@` (`ndcg@10`, `val/loss`,
/// `eval-auc`, `top1.acc`), at most 250 characters, not empty, no space at
/// either end. Nothing in it is markup or a control character, so it is
/// safe wherever it is printed or exported.
pub(crate) fn check_metric_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "_-./ @".contains(c);
    if name.is_empty() || name.len() > 250 {
        return Err(format!(
            "metric name {name:?} must have 1 to 250 characters"
        ));
    }
    if let Some(c) = name.chars().find(|c| !ok_char(*c)) {
        return Err(format!(
            "metric name {name:?}: {c:?} is not allowed; use letters, digits and _ - . / @ or spaces"
        ));
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(format!("metric name {name:?} starts or ends with a space"));
    }
    Ok(())
}

/// A knob name: a letter or `_`, then letters, digits and `_`.
fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
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
    let raw: raw::CampaignFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        loc.at(span, e.message().to_string())
    })?;
    resolve::campaign(&loc, raw, base)
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
