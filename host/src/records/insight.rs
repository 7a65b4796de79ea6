//! The insight record itself: its fields, its content id, the checks an
//! imported record must pass, and its JSON-lines form (docs/insights.md).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::strategy::{Assignment, Direction, FailureClass, Phase, Value, validate};

/// What one campaign measured about one change relative to its baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsightRecord {
    /// First 16 hex digits of the sha256 of the record's canonical JSON
    /// without `id`, `origin` and `campaign_id` (see [`content_id`]). Kept
    /// as is when a record is imported; computed when a line has none.
    #[serde(default)]
    pub id: String,
    /// The campaign's name.
    pub campaign: String,
    /// The campaign's id in the workspace that recorded it; none for an
    /// imported record (ids are local to a workspace).
    #[serde(default)]
    pub campaign_id: Option<u64>,
    /// `recorded`, or `imported from FILE (sha256 …)`. Set by the workspace
    /// holding the record, whatever an imported line says.
    #[serde(default)]
    pub origin: String,
    /// When the campaign ended, `YYYY-MM-DDTHH:MM:SSZ`.
    pub recorded: String,
    /// The campaign's tags (model, dataset, …).
    #[serde(default)]
    pub tags: Vec<String>,
    /// The objective metric and its direction.
    pub metric: String,
    pub direction: Direction,
    /// The hypothesis' title.
    #[serde(default)]
    pub title: String,
    /// The phase it was proposed for.
    pub phase: Phase,
    /// The change, relative to that campaign's baseline.
    pub assignments: Vec<Assignment>,
    /// The baseline values of the changed knobs.
    #[serde(default)]
    pub baseline: Vec<Assignment>,
    /// Improvement over the baseline, positive = better, in the metric's
    /// units; none when it could not be measured (no succeeded trial).
    #[serde(default)]
    pub effect: Option<f64>,
    /// Welch 95% confidence interval of `effect`.
    #[serde(default)]
    pub ci95_low: Option<f64>,
    #[serde(default)]
    pub ci95_high: Option<f64>,
    /// The effect compares fresh-seed confirmation runs of both arms.
    #[serde(default)]
    pub confirmed: bool,
    /// Trials of this change that succeeded and that failed.
    pub trials: u32,
    pub failed: u32,
    /// Compute its trials used.
    pub cost_cpu_hours: f64,
    #[serde(default)]
    pub cost_gpu_hours: f64,
    /// Set when the change failed: every trial failed, or it was excluded
    /// after a failure. The class of its last failed trial.
    #[serde(default)]
    pub failure: Option<FailureClass>,
    /// Set when a trial of it broke one of the campaign's guards.
    #[serde(default)]
    pub guard_violation: Option<String>,
}

/// Rounds to 12 significant digits. Such numbers print in at most 12
/// digits and read back bit-identically (longer ones may come back one
/// unit in the last place off), so records survive export and import
/// exactly; the digits dropped are far below any measured noise.
pub(crate) fn round12(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    format!("{x:.11e}").parse().unwrap_or(x)
}

/// The id of a record's content: the first 16 hex digits of the sha256 of
/// its canonical JSON (keys sorted, no whitespace) without `id`, `origin`
/// and `campaign_id`, which say where a copy lives rather than what was
/// learned.
pub fn content_id(record: &InsightRecord) -> String {
    let mut value = serde_json::to_value(record).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        for local in ["id", "origin", "campaign_id"] {
            map.remove(local);
        }
    }
    super::approval::payload_hash(&value)[..16].to_string()
}

impl InsightRecord {
    /// Checks what a file could get wrong; the message says what is wrong
    /// with which field.
    pub fn validate(&self) -> Result<(), String> {
        self.check_sizes()?;
        if self.campaign.trim().is_empty() {
            return Err("`campaign` is empty: name the campaign the record comes from".into());
        }
        if self.metric.trim().is_empty() {
            return Err("`metric` is empty: name the objective metric the effect is in".into());
        }
        if !self.id.is_empty()
            && (self.id.len() != 16
                || !self
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        {
            return Err(format!(
                "`id` {:?} is not 16 lowercase hex digits: fix it, or remove the field to have it computed",
                self.id
            ));
        }
        if !valid_time(&self.recorded) {
            return Err(format!(
                "`recorded` {:?} is not a UTC time like 2025-01-31T12:00:00Z",
                self.recorded
            ));
        }
        if self.assignments.is_empty() {
            return Err(
                "`assignments` is empty: a record must name the knob change it measured".into(),
            );
        }
        let mut seen = BTreeSet::new();
        for a in &self.assignments {
            if a.knob.trim().is_empty() {
                return Err("an assignment has an empty knob name".into());
            }
            if !seen.insert(a.knob.as_str()) {
                return Err(format!("knob `{}` is assigned twice", a.knob));
            }
        }
        for a in self.assignments.iter().chain(&self.baseline) {
            if let Value::Float(x) = a.value
                && !x.is_finite()
            {
                return Err(format!("knob `{}` = {x} is not a finite number", a.knob));
            }
        }
        for b in &self.baseline {
            if !seen.contains(b.knob.as_str()) {
                return Err(format!(
                    "`baseline` names knob `{}`, which `assignments` does not change",
                    b.knob
                ));
            }
        }
        let numbers = [
            ("effect", self.effect),
            ("ci95_low", self.ci95_low),
            ("ci95_high", self.ci95_high),
            ("cost_cpu_hours", Some(self.cost_cpu_hours)),
            ("cost_gpu_hours", Some(self.cost_gpu_hours)),
        ];
        for (name, value) in numbers {
            if let Some(x) = value
                && !x.is_finite()
            {
                return Err(format!("`{name}` = {x} is not a finite number"));
            }
        }
        if self.cost_cpu_hours < 0.0 || self.cost_gpu_hours < 0.0 {
            return Err("a cost is negative".into());
        }
        match (self.effect, self.ci95_low, self.ci95_high) {
            (Some(e), Some(lo), Some(hi)) => {
                if !(lo <= e && e <= hi) {
                    return Err(format!(
                        "the interval [{lo}, {hi}] does not contain the effect {e}"
                    ));
                }
            }
            (None, None, None) => {
                if self.failure.is_none() {
                    return Err(
                        "the record has neither an `effect` nor a `failure`: it says nothing"
                            .into(),
                    );
                }
            }
            _ => {
                return Err(
                    "`effect`, `ci95_low` and `ci95_high` go together: give all three or none"
                        .into(),
                );
            }
        }
        if self.trials == 0 && self.failed == 0 {
            return Err("`trials` and `failed` are both 0: the change never ran".into());
        }
        if self.effect.is_some() && self.trials == 0 {
            return Err("an `effect` needs at least one succeeded trial (`trials` is 0)".into());
        }
        Ok(())
    }
}

impl InsightRecord {
    /// Every field within [`FieldCaps`]: a record is copied into every
    /// later call of every campaign it applies to, so none may be large.
    fn check_sizes(&self) -> Result<(), String> {
        let c = FIELD_CAPS;
        let text = |name: &str, value: &str, max: usize| {
            if value.len() > max {
                Err(format!(
                    "`{name}` is {} bytes; at most {max} are accepted",
                    value.len()
                ))
            } else {
                Ok(())
            }
        };
        text("campaign", &self.campaign, c.name_bytes)?;
        text("metric", &self.metric, c.name_bytes)?;
        text("title", &self.title, c.text_bytes)?;
        if let Some(g) = &self.guard_violation {
            text("guard_violation", g, c.text_bytes)?;
        }
        if self.tags.len() > c.tags {
            return Err(format!(
                "{} tags; at most {} are accepted",
                self.tags.len(),
                c.tags
            ));
        }
        for t in &self.tags {
            text("tags[]", t, c.name_bytes)?;
        }
        for (name, list) in [
            ("assignments", &self.assignments),
            ("baseline", &self.baseline),
        ] {
            if list.len() > c.assignments {
                return Err(format!(
                    "`{name}` has {} entries; at most {} are accepted",
                    list.len(),
                    c.assignments
                ));
            }
            for a in list {
                text("knob name", &a.knob, c.name_bytes)?;
                if let Value::Choice(v) = &a.value {
                    text(&format!("value of knob `{}`", a.knob), v, c.text_bytes)?;
                }
            }
        }
        Ok(())
    }
}

/// The most an imported record may hold.
#[derive(Debug, Clone, Copy)]
pub struct FieldCaps {
    /// A line of an insights file.
    pub line_bytes: usize,
    /// Names: the campaign, the metric, a tag, a knob.
    pub name_bytes: usize,
    /// Texts: the title, a string value, a guard violation.
    pub text_bytes: usize,
    pub tags: usize,
    /// Entries of `assignments` (and of `baseline`).
    pub assignments: usize,
}

pub const FIELD_CAPS: FieldCaps = FieldCaps {
    line_bytes: 64 * 1024,
    name_bytes: 256,
    text_bytes: validate::MAX_TITLE_BYTES,
    tags: 32,
    assignments: 64,
};

/// `YYYY-MM-DDTHH:MM:SSZ`, digits where digits go.
fn valid_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// One line of an insights file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}{}: {message}", column.map_or(String::new(), |c| format!(":{c}")))]
pub struct LineError {
    pub file: String,
    pub line: usize,
    pub column: Option<usize>,
    pub message: String,
}

/// Every problem found in a file (at most [`MAX_LINE_ERRORS`] are kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseErrors {
    pub errors: Vec<LineError>,
    /// Problems past the ones kept.
    pub more: usize,
}

pub const MAX_LINE_ERRORS: usize = 10;

impl std::fmt::Display for ParseErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        if self.more > 0 {
            write!(f, "\n… and {} more bad line(s)", self.more)?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseErrors {}

/// What a serde error means for someone holding the file (`last`: this is
/// the file's last record line, where a cut-off file ends).
fn explain(e: &serde_json::Error, last: bool) -> String {
    let msg = e.to_string();
    // serde_json appends " at line L column C"; the line is ours to name.
    let msg = match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    if e.is_eof() && last {
        format!(
            "the record ends early ({msg}); the file looks truncated: export it again, or delete this line"
        )
    } else if e.is_eof() {
        format!(
            "the record ends early ({msg}); each record must be whole on one line: fix or delete this line"
        )
    } else if msg.starts_with("unknown field") {
        format!(
            "{msg}; remove the field (records are read as `reagent insights export` writes them, see docs/insights.md)"
        )
    } else if msg.starts_with("missing field") {
        format!("{msg}; add it (docs/insights.md lists every field)")
    } else if e.is_syntax() {
        format!(
            "not valid JSON ({msg}): each line must be one insight record as a JSON object; fix or delete this line"
        )
    } else {
        format!("{msg}; see docs/insights.md for the record format")
    }
}

/// Reads a JSON-lines insights file: each non-empty line one record. Fails
/// on any bad line (naming `file:line` and what to do), so that a file is
/// imported whole or not at all. Records without an id get one.
pub fn parse_jsonl(file: &str, bytes: &[u8]) -> Result<Vec<InsightRecord>, ParseErrors> {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let mut more = 0;
    let mut fail = |line: usize, column: Option<usize>, message: String| {
        if errors.len() < MAX_LINE_ERRORS {
            errors.push(LineError {
                file: file.to_string(),
                line,
                column,
                message,
            });
        } else {
            more += 1;
        }
    };
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let last = lines
        .iter()
        .rposition(|l| !l.iter().all(u8::is_ascii_whitespace));
    for (i, raw) in lines.iter().enumerate() {
        let line = i + 1;
        let Ok(text) = std::str::from_utf8(raw) else {
            fail(line, None, "not UTF-8 text; fix or delete this line".into());
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        if text.len() > FIELD_CAPS.line_bytes {
            fail(
                line,
                None,
                format!(
                    "the line is {} bytes; a record is at most {} (docs/insights.md lists the limits of each field)",
                    text.len(),
                    FIELD_CAPS.line_bytes
                ),
            );
            continue;
        }
        let mut record: InsightRecord = match serde_json::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                fail(line, Some(e.column().max(1)), explain(&e, last == Some(i)));
                continue;
            }
        };
        if let Err(why) = record.validate() {
            fail(line, None, format!("{why}; fix or delete this line"));
            continue;
        }
        // The id is the content's, never the file's word: a line carrying
        // another record's id must not shadow that record (the old code took
        // ids as given, and a forgery displaced the genuine record).
        for x in [
            &mut record.effect,
            &mut record.ci95_low,
            &mut record.ci95_high,
        ]
        .into_iter()
        .flatten()
        {
            *x = round12(*x);
        }
        record.cost_cpu_hours = round12(record.cost_cpu_hours);
        record.cost_gpu_hours = round12(record.cost_gpu_hours);
        let id = content_id(&record);
        if !record.id.is_empty() && record.id != id {
            fail(
                line,
                None,
                format!(
                    "`id` {} does not match the record's content (its id is {id}): the record was changed after it was exported, or the id was copied from another record; remove the `id` field to import it as a new record",
                    record.id
                ),
            );
            continue;
        }
        record.id = id;
        records.push(record);
    }
    if errors.is_empty() {
        Ok(records)
    } else {
        Err(ParseErrors { errors, more })
    }
}

/// Records as JSON lines, one per record, each ending in a newline.
pub fn to_jsonl(records: &[InsightRecord]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for r in records {
        serde_json::to_writer(&mut out, r)?;
        out.push(b'\n');
    }
    Ok(out)
}
