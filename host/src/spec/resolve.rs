//! Resolving a parsed campaign file section by section, in the order its
//! errors are reported: campaign, knobs, objective, job, budget,
//! strategies, policy, llm, then what needs more than one section.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::raw::{
    BudgetFile, CampaignFile, LlmFile, ObjectiveSection, PolicyFile, StoppingFile, StrategiesFile,
};
use super::{
    Budget, Campaign, ConfigError, DEFAULT_EXPIRY_MS, Guard, Locator, ObjectiveSpec, PhaseSplit,
    Policy, Resources, StoppingSpec, StrategiesConfig, job, knobs, parse_duration,
};
use crate::limits::Limits;
use crate::llm::LlmConfig;
use crate::strategy::{Direction, StrategySource};

/// The validated campaign of a parsed file.
pub(super) fn campaign(
    loc: &Locator,
    raw: CampaignFile,
    base: &Path,
) -> Result<Campaign, ConfigError> {
    let name = raw.campaign.name.get_ref().trim().to_string();
    if name.is_empty() {
        return Err(loc.at(raw.campaign.name.span(), "campaign name is empty"));
    }
    let knobs = knobs::resolve(loc, &raw.knobs)?;
    let objective = objective(loc, &raw.objective)?;
    let mut job = job::resolve(loc, &raw.job, &knobs, base)?;
    let budget = budget(loc, &raw.budget, &job.resources, job.time_limit)?;
    let strategies = strategies(loc, &raw.strategies, base)?;
    let policy = policy(loc, &raw.policy)?;
    let llm = llm(loc, raw.llm.as_ref())?;
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
    job.pass_env = job::pass_env(loc, &raw.job, llm.as_ref())?;
    let stopping = stopping(loc, raw.stopping.as_ref(), &objective)?;
    Ok(Campaign {
        name,
        description: raw.campaign.description,
        tags: raw.campaign.tags,
        objective,
        job,
        knobs,
        budget,
        strategies,
        policy,
        llm,
        stopping,
    })
}

/// `[objective]`: the metric and its direction, the holdout, the guards.
fn objective(loc: &Locator, raw: &ObjectiveSection) -> Result<ObjectiveSpec, ConfigError> {
    let direction = match raw.direction.get_ref().as_str() {
        "minimize" => Direction::Minimize,
        "maximize" => Direction::Maximize,
        other => {
            return Err(loc.at(
                raw.direction.span(),
                format!("direction {other:?}: expected \"minimize\" or \"maximize\""),
            ));
        }
    };
    let metric = raw.metric.get_ref().clone();
    if let Err(why) = super::check_metric_name(&metric) {
        return Err(loc.at(raw.metric.span(), why));
    }
    let holdout = match &raw.holdout {
        Some(h) if h.get_ref() == &metric => {
            return Err(loc.at(
                h.span(),
                "the holdout metric must differ from the objective metric",
            ));
        }
        Some(h) if super::check_metric_name(h.get_ref()).is_err() => {
            let why = super::check_metric_name(h.get_ref()).unwrap_err();
            return Err(loc.at(h.span(), format!("holdout: {why}")));
        }
        Some(h) => Some(h.get_ref().clone()),
        None => None,
    };
    let mut guards = Vec::new();
    for g in &raw.guards {
        let gf = g.get_ref();
        if gf.max.is_none() && gf.min.is_none() {
            return Err(loc.at(
                g.span(),
                format!("guard on `{}` needs `max` or `min`", gf.metric),
            ));
        }
        if let Err(why) = super::check_metric_name(&gf.metric) {
            return Err(loc.at(g.span(), format!("guard: {why}")));
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
    Ok(ObjectiveSpec {
        metric,
        direction,
        holdout,
        guards,
    })
}

/// `[budget]`, which must afford at least one trial of the job's
/// `resources` for its `time_limit`.
fn budget(
    loc: &Locator,
    raw: &Spanned<BudgetFile>,
    resources: &Resources,
    time_limit: Duration,
) -> Result<Budget, ConfigError> {
    let b = raw.get_ref();
    let at_budget = |m: String| loc.at(raw.span(), m);
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
    Ok(Budget {
        cpu_hours: b.cpu_hours,
        gpu_hours: b.gpu_hours,
        max_trials: b.max_trials,
        max_parallel: b.max_parallel,
        deadline,
        phases,
        baseline_replicates: b.baseline_replicates,
        confirm_replicates: b.confirm_replicates,
        max_retries: b.max_retries,
    })
}

/// `[strategies]`: the generator and debugger (built-in or an existing
/// file), limits, grants and seed.
fn strategies(
    loc: &Locator,
    raw: &StrategiesFile,
    base: &Path,
) -> Result<StrategiesConfig, ConfigError> {
    let limits = match &raw.limits {
        Some(l) => {
            l.get_ref()
                .check()
                .map_err(|m| loc.at(l.span(), format!("[strategies] {m}")))?;
            l.get_ref().clone()
        }
        None => Limits::default(),
    };
    Ok(StrategiesConfig {
        generator: strategy_source(loc, base, &raw.generator, "builtin:three-phase")?,
        debugger: strategy_source(loc, base, &raw.debugger, "builtin:runbook")?,
        limits,
        grants: raw
            .grants
            .as_ref()
            .map(|g| *g.get_ref())
            .unwrap_or_default(),
        seed: raw.seed,
    })
}

/// A `generator` or `debugger` entry, `default` when absent.
fn strategy_source(
    loc: &Locator,
    base: &Path,
    s: &Option<Spanned<String>>,
    default: &str,
) -> Result<StrategySource, ConfigError> {
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
}

/// `[policy]`: how long approval requests wait, and whether to ask for
/// more budget. A campaign cannot approve itself.
fn policy(loc: &Locator, raw: &PolicyFile) -> Result<Policy, ConfigError> {
    if let Some(a) = &raw.auto_approve_cpu_hours {
        return Err(loc.at(
            a.span(),
            "policy.auto_approve_cpu_hours: a campaign file cannot approve itself; automatic approval is decided by the workspace policy (.reagent/policy.cedar, see `reagent policy show` and docs/governance.md)",
        ));
    }
    Ok(Policy {
        approval_expiry: match &raw.approval_expiry {
            Some(d) => parse_duration(d.get_ref())
                .map_err(|m| loc.at(d.span(), format!("policy.approval_expiry: {m}")))?,
            None => Duration::from_millis(DEFAULT_EXPIRY_MS),
        },
        ask_for_budget: raw.ask_for_budget,
    })
}

/// `[stopping]`, when present: the rule (only `median`), the intermediate
/// metric (the objective's by default) and the thresholds.
fn stopping(
    loc: &Locator,
    raw: Option<&Spanned<StoppingFile>>,
    objective: &ObjectiveSpec,
) -> Result<Option<StoppingSpec>, ConfigError> {
    let Some(s) = raw else {
        return Ok(None);
    };
    let f = s.get_ref();
    if let Some(rule) = &f.rule
        && rule != "median"
    {
        return Err(loc.at(
            s.span(),
            format!("stopping.rule {rule:?}: the only rule is \"median\" (stop a trial whose best so far is worse than the median of completed trials at the same step)"),
        ));
    }
    let metric = f.metric.clone().unwrap_or_else(|| objective.metric.clone());
    if let Err(why) = super::check_metric_name(&metric) {
        return Err(loc.at(s.span(), format!("stopping.metric: {why}")));
    }
    if metric.trim().is_empty() {
        return Err(loc.at(s.span(), "stopping.metric is empty"));
    }
    let min_steps = f.min_steps.unwrap_or(StoppingSpec::DEFAULT_MIN_STEPS);
    let min_trials = f.min_trials.unwrap_or(StoppingSpec::DEFAULT_MIN_TRIALS);
    if min_steps == 0 || min_trials == 0 {
        return Err(loc.at(
            s.span(),
            "stopping.min_steps and stopping.min_trials must be at least 1",
        ));
    }
    Ok(Some(StoppingSpec {
        metric,
        min_steps,
        min_trials,
    }))
}

/// `[llm]`, when present: the endpoint and its limits, checked.
fn llm(loc: &Locator, raw: Option<&Spanned<LlmFile>>) -> Result<Option<LlmConfig>, ConfigError> {
    let Some(l) = raw else {
        return Ok(None);
    };
    let f = l.get_ref();
    let timeout = match &f.timeout {
        Some(t) => parse_duration(t).map_err(|m| loc.at(l.span(), format!("llm.timeout: {m}")))?,
        None => crate::llm::DEFAULT_TIMEOUT,
    };
    let config = LlmConfig {
        url: f.url.clone(),
        model: f.model.clone(),
        api_key_env: f.api_key_env.clone(),
        token_budget: f.token_budget.unwrap_or(crate::llm::DEFAULT_TOKEN_BUDGET),
        max_tokens: f.max_tokens.unwrap_or(crate::llm::DEFAULT_MAX_TOKENS),
        max_calls: f.max_calls.unwrap_or(crate::llm::DEFAULT_MAX_CALLS),
        timeout,
    };
    config.check().map_err(|m| loc.at(l.span(), m))?;
    Ok(Some(config))
}
