//! `[job]`: the command template, its backend (and `[job.slurm]`),
//! resources, metrics, files and environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{JobSection, MetricsFile, RegexFile};
use super::{
    ConfigError, JobTemplate, Locator, MetricsSource, Resources, parse_duration, placeholders,
};
use crate::jobs::slurm::SlurmOptions;
use crate::llm::LlmConfig;
use crate::strategy::KnobSpec;

/// The job template, but for `pass_env` (see [`pass_env`], which needs
/// `[llm]`, resolved later).
pub(super) fn resolve(
    loc: &Locator,
    raw: &JobSection,
    knobs: &[KnobSpec],
    base: &Path,
) -> Result<JobTemplate, ConfigError> {
    let backend = backend(loc, raw)?;
    let slurm = slurm(loc, raw, &backend)?;
    let command = command(loc, raw, knobs)?;
    let time_limit =
        parse_duration(raw.time_limit.get_ref()).map_err(|m| loc.at(raw.time_limit.span(), m))?;
    let resources = resources(loc, raw)?;
    let metrics = metrics(loc, raw)?;
    let params_file = params_file(loc, raw)?;
    let workdir = workdir(raw, base);
    Ok(JobTemplate {
        backend,
        command,
        env: raw.env.clone().into_iter().collect(),
        pass_env: Vec::new(),
        params_file,
        workdir,
        time_limit,
        resources,
        metrics,
        slurm,
    })
}

/// `backend`: "local" (the default) or "slurm".
fn backend(loc: &Locator, raw: &JobSection) -> Result<String, ConfigError> {
    match &raw.backend {
        None => Ok("local".to_string()),
        Some(b) if b.get_ref() == "local" || b.get_ref() == "slurm" => Ok(b.get_ref().clone()),
        Some(b) => Err(loc.at(
            b.span(),
            format!("backend {:?}: expected \"local\" or \"slurm\"", b.get_ref()),
        )),
    }
}

/// `[job.slurm]`: options for the Slurm backend (defaults when absent),
/// refused with the local one.
fn slurm(
    loc: &Locator,
    raw: &JobSection,
    backend: &str,
) -> Result<Option<SlurmOptions>, ConfigError> {
    let slurm = match (&raw.slurm, backend) {
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
                None => loc.at(raw.command.span(), m),
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
            Some(SlurmOptions {
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
    Ok(slurm)
}

/// `command`: not empty, and every `{placeholder}` a knob, `{seed}` or
/// `{trial}`.
fn command(
    loc: &Locator,
    raw: &JobSection,
    knobs: &[KnobSpec],
) -> Result<Vec<String>, ConfigError> {
    let command = raw.command.get_ref().clone();
    if command.is_empty() || command[0].trim().is_empty() {
        return Err(loc.at(
            raw.command.span(),
            "job command is empty; expected [\"program\", \"arg\", …]",
        ));
    }
    for arg in &command {
        let names = placeholders(arg).map_err(|m| loc.at(raw.command.span(), m))?;
        for n in names {
            if n != "seed" && n != "trial" && !knobs.iter().any(|k| k.name == n) {
                return Err(loc.at(
                    raw.command.span(),
                    format!(
                        "unknown knob `{{{n}}}` in the command template; the knobs are: {} (and {{seed}}, {{trial}})",
                        knobs.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
    }
    Ok(command)
}

fn resources(loc: &Locator, raw: &JobSection) -> Result<Resources, ConfigError> {
    let resources = match &raw.resources {
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
    Ok(resources)
}

/// `metrics`: "jsonl" (the default) or a regex with named groups.
fn metrics(loc: &Locator, raw: &JobSection) -> Result<MetricsSource, ConfigError> {
    let metrics = match &raw.metrics {
        None => MetricsSource::Jsonl,
        Some(m) => match m.get_ref() {
            MetricsFile::Named(s) if s == "jsonl" => MetricsSource::Jsonl,
            MetricsFile::Named(s) => {
                return Err(loc.at(
                    m.span(),
                    format!("metrics {s:?}: expected \"jsonl\" or {{ regex = '…' }}"),
                ));
            }
            MetricsFile::Regex(RegexFile { regex, names }) => {
                let re = regex::Regex::new(regex).map_err(|e| {
                    loc.at(m.span(), format!("metrics regex does not compile: {e}"))
                })?;
                let groups: Vec<&str> = re.capture_names().flatten().collect();
                if groups.is_empty() {
                    return Err(loc.at(m.span(), "metrics regex has no named groups; name each metric, e.g. (?P<valid_ne>[0-9.eE+-]+)"));
                }
                for (group, metric) in names {
                    if !groups.contains(&group.as_str()) {
                        return Err(loc.at(
                            m.span(),
                            format!(
                                "metrics names: the regex has no group `{group}` (its groups: {})",
                                groups.join(", ")
                            ),
                        ));
                    }
                    if let Err(why) = super::check_metric_name(metric) {
                        return Err(loc.at(m.span(), format!("metrics names: {why}")));
                    }
                }
                if names.is_empty() {
                    MetricsSource::Regex(regex.clone())
                } else {
                    MetricsSource::RegexNamed {
                        regex: regex.clone(),
                        names: names.clone(),
                    }
                }
            }
        },
    };
    Ok(metrics)
}

/// `params_file`: a plain file name the job folder does not already use.
fn params_file(loc: &Locator, raw: &JobSection) -> Result<String, ConfigError> {
    let params_file = raw
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
            raw.command.span(),
            format!("[job] params_file {params_file:?} is a file the job folder already uses; pick another name"),
        ));
    }
    if !params_ok {
        return Err(loc.at(
            raw.command.span(),
            format!("[job] params_file {params_file:?} must be a plain file name (no `/`, not starting with `.`)"),
        ));
    }
    Ok(params_file)
}

/// `workdir`, against `base` (the campaign file's folder by default).
fn workdir(raw: &JobSection, base: &Path) -> PathBuf {
    let workdir = match &raw.workdir {
        Some(w) => base.join(w),
        None => base.to_path_buf(),
    };
    if workdir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        workdir
    }
}

/// `pass_env`: valid `NAME` or `PREFIX_*` patterns, none matching the
/// language model's key.
pub(super) fn pass_env(
    loc: &Locator,
    raw: &JobSection,
    llm: Option<&LlmConfig>,
) -> Result<Vec<String>, ConfigError> {
    let mut pass_env = Vec::new();
    for p in raw.pass_env.as_ref().map_or(&[][..], |v| v.get_ref()) {
        let pattern = p.get_ref();
        crate::jobs::check_env_pattern(pattern)
            .map_err(|m| loc.at(p.span(), format!("job.{m}")))?;
        if let Some(key) = llm.and_then(|l| l.api_key_env.as_deref())
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
    Ok(pass_env)
}
