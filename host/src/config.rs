//! The workspace config, `.reagent/config.toml`: read and parsed here, once,
//! with one section per concern — `[quota]` (`crate::quota`), `[notify]`
//! (`crate::notify`), `[export]` (`crate::export`). Each section's raw form
//! is here, so that a misspelt section or key is an error naming its place;
//! what a section means, and its checks, are in its module.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::spec::{ConfigError, located};

/// The workspace config file's name, inside `.reagent/`.
pub const FILE: &str = "config.toml";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sections {
    pub quota: Option<QuotaFile>,
    pub notify: Option<NotifyFile>,
    pub export: Option<ExportFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaFile {
    pub jobs: Option<Spanned<i64>>,
    pub cpu_hours_per_day: Option<Spanned<f64>>,
    pub cpu_hours_per_week: Option<Spanned<f64>>,
    pub gpu_hours_per_day: Option<Spanned<f64>>,
    pub gpu_hours_per_week: Option<Spanned<f64>>,
    #[serde(default)]
    pub weights: BTreeMap<String, Spanned<f64>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFile {
    pub webhook: Option<Spanned<String>>,
    pub command: Option<Spanned<Vec<String>>>,
    pub on: Option<Vec<Spanned<String>>>,
    pub budget_thresholds: Option<Spanned<Vec<f64>>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportFile {
    pub mlflow: Spanned<String>,
}

/// A parsed config, with what it takes to locate an error in it.
pub struct Config {
    pub file: String,
    text: String,
    pub sections: Sections,
}

impl Config {
    /// An error at `span` of the file.
    pub fn at(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> ConfigError {
        located(&self.file, &self.text, span, message)
    }
}

/// Parses config text (`file` names it in errors).
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    let sections = toml::from_str(text)
        .map_err(|e| located(file, text, e.span().unwrap_or(0..0), e.message()))?;
    Ok(Config {
        file: file.to_string(),
        text: text.to_string(),
        sections,
    })
}

/// The config of the workspace at `dir` (its `.reagent/`); `Ok(None)`
/// without the file.
pub fn read(dir: &Path) -> Result<Option<Config>, ConfigError> {
    let path = dir.join(FILE);
    let file = path.display().to_string();
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&file, &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError {
            file,
            line: 0,
            column: 0,
            message: format!("cannot read the workspace config: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_section_reads_from_one_file_and_an_unknown_one_is_located() {
        let text = "[quota]\njobs = 2\n\n[notify]\ncommand = [\"true\"]\n\n[export]\nmlflow = \"http://127.0.0.1:5000\"\n";
        let c = super::parse("config.toml", text).unwrap();
        assert_eq!(crate::quota::resolve(&c).unwrap().unwrap().jobs, Some(2));
        assert!(crate::notify::resolve(&c).unwrap().is_some());
        assert!(c.sections.export.is_some());
        let e = super::parse(
            "config.toml",
            "[quota]\njobs = 2\n[notfy]\nwebhook = \"x\"\n",
        )
        .err()
        .unwrap();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("unknown field `notfy`"), "{e}");
    }
}
