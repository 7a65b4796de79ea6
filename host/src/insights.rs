//! Insight records: what one campaign learned about one change, kept by the
//! workspace so later campaigns (and other workspaces) can start from it.
//!
//! A record is derived by the host from a finished campaign's stored trials
//! (never from a strategy's words, never from the holdout metric) and
//! written in the same transaction as the campaign's terminal state. Records
//! travel between workspaces as JSON lines (`reagent insights
//! export|import`). Strategies read them through the `insights` import, only
//! records of other campaigns and only those that apply to the calling
//! campaign (see [`InsightRecord::applies_to`]). docs/insights.md is the
//! user-facing reference for every field.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::campaign::config::Campaign;
use crate::campaign::engine::View;
use crate::campaign::state::{EventBody, HypothesisStatus, Stage, TrialStatus};
use crate::campaign::stats;
use crate::store::{Store, Tx};
use crate::strategy::{Assignment, Direction, FailureClass, Insight, Phase, Value, validate};

/// At most this many records (the most recently stored) are served to a
/// strategy call; older ones stay in the workspace and in exports.
pub const SERVE_LIMIT: usize = 10_000;

/// `origin` of a record derived in this workspace.
pub const RECORDED: &str = "recorded";

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

pub use crate::time::iso_utc;

/// Rounds to 12 significant digits. Such numbers print in at most 12
/// digits and read back bit-identically (longer ones may come back one
/// unit in the last place off), so records survive export and import
/// exactly; the digits dropped are far below any measured noise.
fn round12(x: f64) -> f64 {
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
    crate::governance::payload_hash(&value)[..16].to_string()
}

fn phase_of(stage: Stage) -> Phase {
    match stage {
        Stage::Combine => Phase::Combine,
        Stage::Exploit | Stage::Confirm | Stage::Done => Phase::Exploit,
        Stage::Plan | Stage::Validate => Phase::Validate,
    }
}

/// The records a campaign's stored trials support: one per hypothesis
/// other than the baseline that has a succeeded or a failed trial and
/// either a measurable effect or a failure. Hypotheses never run (waiting
/// for approval, dropped, cancelled before they ran) have none. The effect
/// compares the hypothesis' confirmation runs with the baseline's when both
/// have them, else its exploration runs with the baseline's (as the
/// report does); the holdout metric is never read.
pub fn derive(view: &View, recorded_ms: u64) -> Vec<InsightRecord> {
    let spec = &view.row.spec;
    let direction = spec.objective.direction;
    let eval_var = view.eval_stderr().map_or(0.0, |s| s * s);
    // One pass over the trials (campaigns may hold 100,000 of them).
    #[derive(Default)]
    struct Arm<'a> {
        explore: Vec<f64>,
        confirm: Vec<f64>,
        succeeded: u32,
        failed: u32,
        cpu: f64,
        gpu: f64,
        last_failure: Option<(u64, FailureClass)>,
        guard: Option<&'a str>,
    }
    let mut arms: HashMap<u64, Arm> = HashMap::new();
    for t in &view.trials {
        let arm = arms.entry(t.hypothesis).or_default();
        arm.cpu += t.spent_cpu;
        arm.gpu += t.spent_gpu;
        match t.status {
            TrialStatus::Succeeded => {
                arm.succeeded += 1;
                if let Some(v) = t.objective {
                    if t.stage == Stage::Confirm {
                        arm.confirm.push(v);
                    } else {
                        arm.explore.push(v);
                    }
                }
            }
            TrialStatus::Failed => {
                arm.failed += 1;
                let class = t.failure.unwrap_or(FailureClass::Unknown);
                if arm.last_failure.is_none_or(|(id, _)| t.id > id) {
                    arm.last_failure = Some((t.id, class));
                }
            }
            _ => {}
        }
        if let Some(g) = &t.guard_violation {
            arm.guard.get_or_insert(g);
        }
    }
    let empty = Arm::default();
    let base = arms.get(&0).unwrap_or(&empty);
    let recorded = iso_utc(recorded_ms);
    let mut out = Vec::new();
    for h in &view.hypotheses {
        if h.id == 0 {
            continue;
        }
        let Some(arm) = arms.get(&h.id) else {
            continue;
        };
        if arm.succeeded == 0 && arm.failed == 0 {
            continue;
        }
        let failed_out =
            arm.failed > 0 && (arm.succeeded == 0 || h.status == HypothesisStatus::Excluded);
        let failure = if failed_out {
            arm.last_failure.map(|(_, class)| class)
        } else {
            None
        };
        let confirmed = !arm.confirm.is_empty() && !base.confirm.is_empty();
        let (treated, baseline) = if confirmed {
            (&arm.confirm, &base.confirm)
        } else {
            (&arm.explore, &base.explore)
        };
        let effect = match (stats::summarize(baseline), stats::summarize(treated)) {
            (Some(b), Some(t)) => Some(stats::effect(direction, &b, &t, eval_var)),
            _ => None,
        };
        if effect.is_none() && failure.is_none() {
            // Succeeded, but the baseline was never measured: nothing learned.
            continue;
        }
        let assignments = h.hypothesis.assignments.clone();
        if assignments.is_empty() {
            continue;
        }
        let baseline_values = assignments
            .iter()
            .filter_map(|a| {
                spec.knob(&a.knob).map(|k| Assignment {
                    knob: a.knob.clone(),
                    value: k.baseline.clone(),
                })
            })
            .collect();
        let mut record = InsightRecord {
            id: String::new(),
            campaign: spec.name.clone(),
            campaign_id: Some(view.row.id),
            origin: RECORDED.into(),
            recorded: recorded.clone(),
            tags: spec.tags.clone(),
            metric: spec.objective.metric.clone(),
            direction,
            title: h.hypothesis.title.clone(),
            phase: phase_of(h.stage),
            assignments,
            baseline: baseline_values,
            effect: effect.map(|e| round12(e.estimate)),
            ci95_low: effect.map(|e| round12(e.ci95_low)),
            ci95_high: effect.map(|e| round12(e.ci95_high)),
            confirmed: confirmed && effect.is_some(),
            trials: arm.succeeded,
            failed: arm.failed,
            cost_cpu_hours: round12(arm.cpu),
            cost_gpu_hours: round12(arm.gpu),
            failure,
            guard_violation: arm.guard.map(str::to_string),
        };
        record.id = content_id(&record);
        out.push(record);
    }
    out
}

/// Stores a campaign's records and their `insights-recorded` event, in the
/// caller's transaction (the one that ends the campaign). Records already
/// present (same id) are not stored twice. Returns how many were new.
pub fn record(
    tx: &mut Tx,
    campaign: u64,
    name: &str,
    records: &[InsightRecord],
) -> anyhow::Result<usize> {
    if records.is_empty() {
        return Ok(0);
    }
    let mut stored = 0;
    let mut digest = Sha256::new();
    for r in records {
        let bytes = serde_json::to_vec(r)?;
        if tx.put_insight(&r.id, &bytes)? {
            stored += 1;
            digest.update(&bytes);
            digest.update(b"\n");
        }
    }
    tx.append(
        Some(campaign),
        EventBody::InsightsRecorded {
            campaign: name.to_string(),
            count: stored as u64,
            sha256: hex::encode(digest.finalize()),
        },
    )?;
    Ok(stored)
}

impl InsightRecord {
    /// Whether a campaign can use this record: every knob it changes exists
    /// there and each value is of that knob's kind (a number for float and
    /// log-float knobs, an integer for int, a string for categorical, a
    /// boolean for flag). Ranges and choices are not checked: a value
    /// outside this campaign's space is still evidence, and a proposal
    /// built on it goes to a human like any out-of-space value.
    pub fn applies_to(&self, spec: &Campaign) -> bool {
        self.assignments.iter().all(|a| {
            spec.knob(&a.knob)
                .is_some_and(|k| validate::kind(k, &a.value).is_ok())
        })
    }

    /// The record as the `insights` import returns it. A record without an
    /// effect (a change that never succeeded) reads as effect 0 with the
    /// interval [0, 0]; its `failure` says why.
    pub fn to_insight(&self) -> Insight {
        Insight {
            assignments: self.assignments.clone(),
            campaign: self.campaign.clone(),
            tags: self.tags.clone(),
            metric: self.metric.clone(),
            effect: self.effect.unwrap_or(0.0),
            ci95_low: self.ci95_low.unwrap_or(0.0),
            ci95_high: self.ci95_high.unwrap_or(0.0),
            trials: self.trials,
            cost_cpu_hours: self.cost_cpu_hours,
            failure: self.failure,
        }
    }

    /// Whether strategies are shown this record at all: it must say
    /// something (an effect or a failure), and a change that broke a guard
    /// is not offered as evidence (the contract's record cannot say so).
    fn servable(&self) -> bool {
        (self.effect.is_some() || self.failure.is_some()) && self.guard_violation.is_none()
    }

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
                fail(line, Some(e.column()), explain(&e, last == Some(i)));
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

/// What an import did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportOutcome {
    /// Records new to this workspace.
    pub imported: usize,
    /// Records already present (same id), in the workspace or earlier in
    /// the file.
    pub skipped: usize,
    /// sha256 of the file's bytes.
    pub sha256: String,
}

/// Imports a JSON-lines file's records into the workspace in one
/// transaction with its `insights-imported` event; nothing is written when
/// any line is bad, or with `dry_run`. `label` names the file in messages
/// and in each record's `origin`.
pub fn import(
    store: &Store,
    label: &str,
    bytes: &[u8],
    dry_run: bool,
) -> anyhow::Result<ImportOutcome> {
    let sha256 = hex::encode(Sha256::digest(bytes));
    let mut records = parse_jsonl(label, bytes)?;
    let origin = format!("imported from {label} (sha256 {})", &sha256[..16]);
    for r in &mut records {
        r.origin = origin.clone();
        r.campaign_id = None;
    }
    if dry_run {
        let mut seen = BTreeSet::new();
        let mut imported = 0;
        for r in &records {
            if seen.insert(r.id.clone()) && !store.has_insight(&r.id)? {
                imported += 1;
            }
        }
        return Ok(ImportOutcome {
            imported,
            skipped: records.len() - imported,
            sha256,
        });
    }
    store.write(|tx| {
        let mut imported = 0;
        for r in &records {
            if tx.put_insight(&r.id, &serde_json::to_vec(r)?)? {
                imported += 1;
            }
        }
        let skipped = records.len() - imported;
        tx.append(
            None,
            EventBody::InsightsImported {
                file: label.to_string(),
                sha256: sha256.clone(),
                imported: imported as u64,
                skipped: skipped as u64,
            },
        )?;
        Ok(ImportOutcome {
            imported,
            skipped,
            sha256: sha256.clone(),
        })
    })
}

/// The records a campaign's generator is shown: the [`SERVE_LIMIT`] most
/// recently stored records of other campaigns (recorded here or imported)
/// that apply to it and say something, newest first, in the contract's
/// form. The `insights` import queries these with `StaticData`'s semantics.
/// `campaign` is the campaign's id, once it has one (its own records are
/// never shown to it).
pub fn served(
    store: &Store,
    spec: &Campaign,
    campaign: Option<u64>,
) -> anyhow::Result<Vec<Insight>> {
    Ok(
        applicable(store.recent_insights(SERVE_LIMIT)?, spec, campaign)
            .iter()
            .map(InsightRecord::to_insight)
            .collect(),
    )
}

/// The records among `records` a campaign is shown (see [`served`]), in
/// the order given.
pub fn applicable(
    records: Vec<InsightRecord>,
    spec: &Campaign,
    campaign: Option<u64>,
) -> Vec<InsightRecord> {
    records
        .into_iter()
        .filter(|r| {
            (campaign.is_none() || r.campaign_id != campaign) && r.servable() && r.applies_to(spec)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> InsightRecord {
        let mut r = InsightRecord {
            id: String::new(),
            campaign: "toy".into(),
            campaign_id: Some(1),
            origin: RECORDED.into(),
            recorded: "2025-01-31T12:00:00Z".into(),
            tags: vec!["ranker".into()],
            metric: "valid_loss".into(),
            direction: Direction::Minimize,
            title: "lr 0.3 → 0.1".into(),
            phase: Phase::Validate,
            assignments: vec![Assignment {
                knob: "lr".into(),
                value: Value::Float(0.1),
            }],
            baseline: vec![Assignment {
                knob: "lr".into(),
                value: Value::Float(0.3),
            }],
            effect: Some(0.02),
            ci95_low: Some(0.01),
            ci95_high: Some(0.03),
            confirmed: false,
            trials: 1,
            failed: 0,
            cost_cpu_hours: 0.001,
            cost_gpu_hours: 0.0,
            failure: None,
            guard_violation: None,
        };
        r.id = content_id(&r);
        r
    }

    #[test]
    fn the_id_covers_what_was_learned_not_where_the_copy_lives() {
        let a = sample();
        let mut b = a.clone();
        b.origin = "imported from x.jsonl (sha256 0123)".into();
        b.campaign_id = None;
        b.id = "ffffffffffffffff".into();
        assert_eq!(content_id(&a), content_id(&b));
        b.effect = Some(0.021);
        assert_ne!(content_id(&a), content_id(&b));
        assert_eq!(a.id.len(), 16);
    }

    #[test]
    fn lines_round_trip_and_bad_lines_are_located() {
        let a = sample();
        let text = to_jsonl(std::slice::from_ref(&a)).unwrap();
        let back = parse_jsonl("f.jsonl", &text).unwrap();
        assert_eq!(back, vec![a.clone()]);

        let mut bad = text.clone();
        bad.extend_from_slice(b"{\"campaign\": \"toy\", \"nope\": 1}\n");
        let e = parse_jsonl("f.jsonl", &bad).unwrap_err().to_string();
        assert!(e.starts_with("f.jsonl:2:"), "{e}");
        assert!(e.contains("unknown field `nope`"), "{e}");

        let cut = &text[..text.len() - 20];
        let e = parse_jsonl("f.jsonl", cut).unwrap_err().to_string();
        assert!(e.starts_with("f.jsonl:1:"), "{e}");
        assert!(e.contains("truncated"), "{e}");

        let mut empty = a.clone();
        empty.assignments.clear();
        empty.baseline.clear();
        let line = to_jsonl(&[empty]).unwrap();
        let e = parse_jsonl("g", &line).unwrap_err().to_string();
        assert!(e.starts_with("g:1: `assignments` is empty"), "{e}");

        let nan = String::from_utf8(text.clone())
            .unwrap()
            .replace("\"effect\":0.02", "\"effect\":NaN");
        let e = parse_jsonl("h", nan.as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with("h:1:"), "{e}");
    }

    #[test]
    fn applicability_needs_every_knob_with_a_value_of_its_kind() {
        let spec = crate::campaign::config::parse(
            "toy.toml",
            include_str!("../../tests/jobs/toy.toml"),
            std::path::Path::new("."),
        )
        .unwrap();
        let mut r = sample();
        assert!(r.applies_to(&spec));
        r.assignments[0].value = Value::Choice("0.1".into());
        assert!(!r.applies_to(&spec), "a string for a log-float knob");
        r.assignments[0] = Assignment {
            knob: "momentum".into(),
            value: Value::Float(0.9),
        };
        assert!(!r.applies_to(&spec), "a knob the campaign lacks");
    }

    #[test]
    fn rounding_keeps_values_that_read_back_exactly() {
        for x in [0.11290774160688077, -0.014328327351169845, 1.0 / 3.0] {
            let r = round12(x);
            let back: f64 = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
            assert_eq!(back.to_bits(), r.to_bits(), "{x}");
            assert!((r - x).abs() <= 1e-11 * x.abs());
        }
    }
}
