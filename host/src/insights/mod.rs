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

use std::collections::BTreeSet;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::records::campaign::EventBody;
use crate::spec::Campaign;
use crate::store::{Store, Tx};
use crate::strategy::{Insight, validate};

/// At most this many records (the most recently stored) are served to a
/// strategy call; older ones stay in the workspace and in exports.
pub const SERVE_LIMIT: usize = 10_000;

/// `origin` of a record derived in this workspace.
pub const RECORDED: &str = "recorded";

pub use crate::records::insight::{
    FIELD_CAPS, FieldCaps, InsightRecord, LineError, MAX_LINE_ERRORS, ParseErrors, content_id,
    parse_jsonl, to_jsonl,
};
pub use crate::time::iso_utc;

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
    use crate::records::insight::round12;
    use crate::strategy::{Assignment, Direction, Phase, Value};

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
    fn exported_records_import_with_the_same_id_whatever_their_floats() {
        // Knob values are whatever a strategy proposed (17 significant
        // digits): each must read back bit-identically, or the recomputed
        // id of a genuine export would not match (serde_json without
        // `float_roundtrip` reads some such numbers one ulp off).
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut lines = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..3000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let x = f64::from_bits(0x3f00_0000_0000_0000 | (state >> 12)) * 3.7;
            let mut r = sample();
            r.assignments[0].value = Value::Float(x);
            r.baseline[0].value = Value::Float(x * 1.000_000_1);
            r.id = content_id(&r);
            ids.push(r.id.clone());
            lines.push(serde_json::to_string(&r).unwrap());
        }
        let parsed =
            parse_jsonl("t.jsonl", lines.join("\n").as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let back: Vec<String> = parsed.into_iter().map(|r| r.id).collect();
        assert_eq!(back, ids);
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
        let spec = crate::spec::parse(
            "toy.toml",
            include_str!("../../../tests/jobs/toy.toml"),
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
