//! The campaign file as written: serde structs that keep the spans the
//! resolver's errors point at. Nothing here is validated; see `resolve`.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use crate::limits::Limits;
use crate::strategy::Grants;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CampaignFile {
    pub(super) campaign: CampaignSection,
    pub(super) objective: ObjectiveSection,
    pub(super) job: JobSection,
    pub(super) knobs: Spanned<IndexMap<String, Spanned<KnobFile>>>,
    pub(super) budget: Spanned<BudgetFile>,
    #[serde(default)]
    pub(super) strategies: StrategiesFile,
    #[serde(default)]
    pub(super) policy: PolicyFile,
    #[serde(default)]
    pub(super) llm: Option<Spanned<LlmFile>>,
    #[serde(default)]
    pub(super) stopping: Option<Spanned<StoppingFile>>,
}

/// `[stopping]`: early stopping of losing trials.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StoppingFile {
    #[serde(default)]
    pub(super) rule: Option<String>,
    #[serde(default)]
    pub(super) metric: Option<String>,
    #[serde(default)]
    pub(super) min_steps: Option<u32>,
    #[serde(default)]
    pub(super) min_trials: Option<u32>,
}

/// `[llm]`: the language-model endpoint a granted strategy may use.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LlmFile {
    pub(super) url: String,
    pub(super) model: String,
    #[serde(default)]
    pub(super) api_key_env: Option<String>,
    #[serde(default)]
    pub(super) token_budget: Option<u64>,
    #[serde(default)]
    pub(super) max_tokens: Option<u32>,
    #[serde(default)]
    pub(super) max_calls: Option<u32>,
    #[serde(default)]
    pub(super) timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CampaignSection {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) description: String,
    #[serde(default)]
    pub(super) tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ObjectiveSection {
    pub(super) metric: Spanned<String>,
    pub(super) direction: Spanned<String>,
    #[serde(default)]
    pub(super) holdout: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) guards: Vec<Spanned<GuardFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GuardFile {
    pub(super) metric: String,
    #[serde(default)]
    pub(super) max: Option<f64>,
    #[serde(default)]
    pub(super) min: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JobSection {
    #[serde(default)]
    pub(super) backend: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) slurm: Option<Spanned<SlurmFile>>,
    pub(super) command: Spanned<Vec<String>>,
    #[serde(default)]
    pub(super) env: IndexMap<String, String>,
    /// Variables copied from reagent's environment into the job's
    /// (`NAME` or `PREFIX_*`), besides the base list.
    #[serde(default)]
    pub(super) pass_env: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(super) params_file: Option<String>,
    #[serde(default)]
    pub(super) workdir: Option<String>,
    pub(super) time_limit: Spanned<String>,
    #[serde(default)]
    pub(super) resources: Option<Spanned<ResourcesFile>>,
    #[serde(default)]
    pub(super) metrics: Option<Spanned<MetricsFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResourcesFile {
    #[serde(default = "one")]
    pub(super) cpus: f64,
    #[serde(default)]
    pub(super) gpus: f64,
    #[serde(default)]
    pub(super) memory_mb: Option<u64>,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum MetricsFile {
    Named(String),
    Regex(RegexFile),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RegexFile {
    pub(super) regex: String,
    /// Group → metric name, for names a group cannot hold (`ndcg@10`).
    #[serde(default)]
    pub(super) names: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KnobFile {
    pub(super) kind: String,
    #[serde(default)]
    pub(super) low: Option<toml::Value>,
    #[serde(default)]
    pub(super) high: Option<toml::Value>,
    #[serde(default)]
    pub(super) choices: Option<Vec<String>>,
    pub(super) baseline: toml::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BudgetFile {
    #[serde(default)]
    pub(super) cpu_hours: f64,
    #[serde(default)]
    pub(super) gpu_hours: f64,
    pub(super) max_trials: u32,
    #[serde(default = "default_parallel")]
    pub(super) max_parallel: u32,
    #[serde(default)]
    pub(super) deadline: Option<String>,
    #[serde(default)]
    pub(super) phases: Option<PhasesFile>,
    #[serde(default = "default_replicates")]
    pub(super) baseline_replicates: u32,
    #[serde(default = "default_replicates")]
    pub(super) confirm_replicates: u32,
    #[serde(default = "default_retries")]
    pub(super) max_retries: u32,
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
pub(super) struct PhasesFile {
    pub(super) validate: f64,
    pub(super) combine: f64,
    pub(super) exploit: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StrategiesFile {
    #[serde(default)]
    pub(super) generator: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) debugger: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) limits: Option<Spanned<Limits>>,
    #[serde(default)]
    pub(super) grants: Option<Spanned<Grants>>,
    /// Salt for the strategies' randomness (default 0).
    #[serde(default)]
    pub(super) seed: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SlurmFile {
    #[serde(default)]
    pub(super) partition: Option<String>,
    #[serde(default)]
    pub(super) account: Option<String>,
    #[serde(default)]
    pub(super) qos: Option<String>,
    /// Extra `#SBATCH` options, e.g. ["--constraint=a100", "--exclusive"].
    #[serde(default)]
    pub(super) sbatch: Vec<String>,
    /// "gres" (default: `--gres=gpu:N`) or "gpus" (`--gpus=N`).
    #[serde(default)]
    pub(super) gpus_as: Option<String>,
    /// Slurm's own time limit is the trial's plus this (the supervisor
    /// stops the job first, cleanly; Slurm's limit is the backstop).
    #[serde(default)]
    pub(super) time_margin: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyFile {
    /// Moved to the workspace policy; kept here only to say so.
    #[serde(default)]
    pub(super) auto_approve_cpu_hours: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) approval_expiry: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) ask_for_budget: bool,
}
