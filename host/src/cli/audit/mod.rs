//! `reagent audit verify|show|export|replay`: check, read, hand out and
//! replay the hash-chained event log.
//!
//! Everything here reads events with their bodies as the exact JSON text
//! that was hashed, and summarises them from that JSON rather than from
//! `EventBody`, so events of kinds this code does not know still verify,
//! print and export.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;
use serde::Serialize;
use serde_json::Value;

mod replay;

use super::campaign::EXIT_FAILED;
use crate::cli::term;
use crate::sandbox::{Sandbox, Strategy};
use crate::spec::Campaign;
use crate::store::{RawEvent, Store};
use crate::strategy::{Assignment, StrategySource, render_value};
use crate::workspace::{self, Workspace};

/// `reagent audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of the whole event log: every entry present, in
    /// order, unaltered, and ending at the recorded head.
    ///
    /// Prints `ok: N events, chain head HASH` and exits 0, or names the
    /// first entry that is altered, missing or out of place and exits 1:
    /// the entries before it verify, everything from it on is untrusted.
    /// With --json: {"ok", "events", "head", "break": null or {"seq",
    /// "problem", "entry"}} ("events" counts the rows stored when the chain
    /// is broken; "entry" describes what is stored at that seq).
    ///
    /// The chain is not keyed: whoever can write the database as you can
    /// rewrite history and recompute every hash. Against that, keep the
    /// anchor it prints (`SEQ:HASH`) somewhere the workspace's user cannot
    /// write (a ticket, another machine) and check it later with --anchor:
    /// entries 1–SEQ are then proven unchanged since (docs/security.md).
    Verify {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// A `SEQ:HASH` printed by an earlier verify (HASH: its full 64
        /// hex digits, or at least the first 16); fails unless entry SEQ
        /// still has that hash. Repeatable.
        #[arg(long, value_name = "SEQ:HASH")]
        anchor: Vec<String>,
    },
    /// List events, one line each: seq, UTC time, campaign, type and a
    /// summary of its fields.
    ///
    /// With --json, one JSON object per line: seq, at_ms, time, campaign,
    /// type, summary and the full body.
    Show {
        /// Only this campaign's events.
        #[arg(long, value_name = "ID")]
        campaign: Option<u64>,
        /// Print JSON lines instead of text.
        #[arg(long)]
        json: bool,
        /// Start at this seq.
        #[arg(long, value_name = "SEQ", default_value_t = 1)]
        from: u64,
    },
    /// Write the event log as JSON lines that any tool can re-verify.
    ///
    /// One line per event, in seq order:
    ///   {"seq":S,"at_ms":T,"campaign":C|null,"prev_hash":"…","hash":"…","body":{…}}
    /// `body` is always the last field and is the exact JSON text that was
    /// hashed: its bytes are everything after the first `,"body":` of the
    /// line up to (not including) the line's final `}` (the fields before it
    /// are numbers, null and hex strings, so that text cannot occur earlier).
    /// Do not re-serialize a parsed body; number formatting would differ.
    ///
    /// hash = hex(sha256(prev_hash ‖ seq ‖ at_ms ‖ c ‖ body)), where
    /// prev_hash is the previous entry's hash as 64 lowercase hex ASCII
    /// characters (empty for entry 1); seq and at_ms are u64 little-endian;
    /// c is (campaign + 1) as u64 little-endian, or 0 for an event of no
    /// campaign; body is the bytes above. Each entry's prev_hash must equal
    /// the hash of the entry before it, seqs run 1, 2, 3, … without gaps, and
    /// the last hash is the head `reagent audit verify` prints.
    ///
    /// A strategy call stored in full (a `strategy-called` event with
    /// "record":true) is followed by one more line,
    ///   {"call_record":S,"record":{…}}
    /// holding the whole call record (inputs, every host-call answer,
    /// output, usage, log) for that event's seq S. Call records are not part
    /// of the hash chain; `reagent audit replay` checks them against their
    /// hashed event and by re-running the strategy.
    ///
    /// With --campaign only that campaign's events (and records) are
    /// written. Such an export cannot be chain-verified on its own: the
    /// entries between them are left out, so only each line's own hash can be
    /// recomputed (from its prev_hash field).
    #[command(
        verbatim_doc_comment,
        about = "Write the event log as JSON lines that any tool can re-verify"
    )]
    Export {
        /// Only this campaign's events.
        #[arg(long, value_name = "ID")]
        campaign: Option<u64>,
        /// Write to FILE (atomically: a temporary file renamed into place)
        /// instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Re-run recorded strategy decisions in the sandbox, answering every
    /// host call from the recording, and report whether each is identical.
    ///
    /// Give an event SEQ (a `strategy-called` event, see `reagent audit
    /// show`) or --campaign ID for all of a campaign's calls. The component
    /// is loaded from the campaign's strategy source (as registered in the
    /// hashed log) under its grants; if it is no longer the component that
    /// made the decision, that is reported and the call counts as different.
    /// The stored record is also checked against its hashed event
    /// (component, outcome, fuel). Exits 0 when every decision replayed
    /// identically (or the campaign made no strategy calls), 1 otherwise.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["seq", "campaign"])))]
    Replay {
        /// The seq of a `strategy-called` event.
        seq: Option<u64>,
        /// Replay every recorded strategy call of this campaign.
        #[arg(long, value_name = "ID")]
        campaign: Option<u64>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one audit command against the workspace's database.
pub fn run(ws: &Workspace, cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { json, anchor } => verify(ws, json, &anchor),
        AuditCommand::Show {
            campaign,
            json,
            from,
        } => show(ws, campaign, json, from),
        AuditCommand::Export { campaign, output } => export(ws, campaign, output.as_deref()),
        AuditCommand::Replay {
            seq,
            campaign,
            json,
        } => replay::replay(ws, seq, campaign, json),
    }
}

fn open(ws: &Workspace) -> anyhow::Result<Store> {
    ws.open_store(Duration::from_secs(30))
}

/// The first 16 hex digits of a hash, for people.
fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

// ---------------------------------------------------------------- verify

/// `audit verify --json`.
#[derive(Serialize)]
struct VerifyJson {
    ok: bool,
    /// Entries verified, or (when broken) rows stored.
    events: u64,
    /// The head hash the database records.
    head: String,
    #[serde(rename = "break")]
    broken: Option<BreakJson>,
}

#[derive(Serialize)]
struct BreakJson {
    seq: u64,
    problem: String,
    /// What is stored at `seq`, in words (None: nothing).
    entry: Option<String>,
}

/// Checks each `SEQ:HASH` anchor against the (verified) log; the first
/// that fails, in words.
fn check_anchors(store: &Store, anchors: &[String]) -> anyhow::Result<Option<String>> {
    for a in anchors {
        let parsed = a.split_once(':').and_then(|(seq, hash)| {
            let hash = hash.trim().to_ascii_lowercase();
            let ok = (16..=64).contains(&hash.len()) && hash.bytes().all(|b| b.is_ascii_hexdigit());
            Some((seq.trim().parse::<u64>().ok()?, hash)).filter(|_| ok)
        });
        let Some((seq, hash)) = parsed else {
            anyhow::bail!(
                "--anchor {a:?}: expected SEQ:HASH as `reagent audit verify` prints it, e.g. 42:3f9a0c… (at least 16 hex digits)"
            );
        };
        match store.event_raw(seq)? {
            None => {
                return Ok(Some(format!(
                    "anchor {seq}: the log has no entry {seq} any more (it was cut short)"
                )));
            }
            Some(e) if !e.hash.starts_with(&hash) => {
                return Ok(Some(format!(
                    "anchor {seq}: entry {seq} now hashes to {}, not {hash}: the log was rewritten after the anchor was taken",
                    short(&e.hash)
                )));
            }
            Some(_) => {}
        }
    }
    Ok(None)
}

fn verify(ws: &Workspace, json: bool, anchors: &[String]) -> anyhow::Result<ExitCode> {
    let store = open(ws)?;
    let result = store.verify_chain()?;
    let head = store.head()?;
    let result = match result {
        Ok(n) => match check_anchors(&store, anchors)? {
            None => Ok(n),
            Some(problem) => {
                if json {
                    let v = serde_json::json!({"ok": false, "events": n, "head": head.1, "anchor": problem});
                    println!("{v}");
                } else {
                    println!("{problem}");
                }
                return Ok(ExitCode::from(EXIT_FAILED));
            }
        },
        Err(b) => Err(b),
    };
    match result {
        Ok(n) => {
            if json {
                let v = VerifyJson {
                    ok: true,
                    events: n,
                    head: head.1,
                    broken: None,
                };
                println!("{}", serde_json::to_string(&v)?);
            } else {
                println!("ok: {n} events, chain head {}", short(&head.1));
                if n > 0 {
                    println!(
                        "anchor {n}:{} — keep it where this workspace's user cannot write; `reagent audit verify --anchor {n}:HASH` later proves entries 1–{n} unchanged",
                        head.1
                    );
                }
                for a in anchors {
                    println!("anchor {a}: matches");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(b) => {
            let rows = store.event_count()?;
            let entry = describe_stored(&store, b.seq);
            if json {
                let v = VerifyJson {
                    ok: false,
                    events: rows,
                    head: head.1,
                    broken: Some(BreakJson {
                        seq: b.seq,
                        problem: b.problem,
                        entry,
                    }),
                };
                println!("{}", serde_json::to_string(&v)?);
            } else {
                println!(
                    "chain broken at entry {} ({}): {}",
                    b.seq,
                    entry.as_deref().unwrap_or("no such entry"),
                    b.problem
                );
                if b.seq > 1 {
                    println!(
                        "entries 1–{} verify; everything from entry {} on is untrusted. Keep this database as evidence and restore one from a backup.",
                        b.seq - 1,
                        b.seq
                    );
                } else {
                    println!(
                        "the whole log is untrusted. Keep this database as evidence and restore one from a backup."
                    );
                }
            }
            Ok(ExitCode::from(EXIT_FAILED))
        }
    }
}

/// What the log holds at `seq`, in words (None when there is no such row).
fn describe_stored(store: &Store, seq: u64) -> Option<String> {
    match store.event_raw(seq) {
        Ok(Some(e)) => Some(format!(
            "as stored: {}{} at {}",
            e.kind().unwrap_or_else(|| "an event of no type".into()),
            e.campaign
                .map_or(String::new(), |c| format!(" of campaign {c}")),
            iso_utc(e.at_ms)
        )),
        Ok(None) => None,
        Err(_) => Some("unreadable".into()),
    }
}

// ------------------------------------------------------------------ show

#[derive(Serialize)]
struct ShowLine<'a> {
    seq: u64,
    at_ms: u64,
    time: String,
    campaign: Option<u64>,
    #[serde(rename = "type")]
    kind: &'a str,
    summary: String,
    body: &'a serde_json::value::RawValue,
}

fn show(ws: &Workspace, campaign: Option<u64>, json: bool, from: u64) -> anyhow::Result<ExitCode> {
    let store = open(ws)?;
    let events = store.events_raw(from)?;
    if let Some(id) = campaign {
        require_campaign(&store, ws, id, &events)?;
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for e in events {
        if campaign.is_some() && e.campaign != campaign {
            continue;
        }
        let body: Value = serde_json::from_str(e.body.get()).unwrap_or(Value::Null);
        let kind = body.get("type").and_then(Value::as_str).unwrap_or("?");
        let summary = summarize(&body);
        if json {
            let line = ShowLine {
                seq: e.seq,
                at_ms: e.at_ms,
                time: iso_utc(e.at_ms),
                campaign: e.campaign,
                kind,
                summary,
                body: &e.body,
            };
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        } else {
            writeln!(
                out,
                "{:>6}  {}  {:<4} {:<19} {}",
                e.seq,
                iso_utc(e.at_ms),
                e.campaign.map_or("-".into(), |c| format!("c{c}")),
                term::line(kind),
                term::line(&summary)
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Fails unless campaign `id` has events in `events` (the log is the
/// source of truth) or a row.
fn require_campaign(
    store: &Store,
    ws: &Workspace,
    id: u64,
    events: &[RawEvent],
) -> anyhow::Result<()> {
    if !events.iter().any(|e| e.campaign == Some(id)) && store.campaign(id)?.is_none() {
        bail!(
            "no campaign {id} in {}; list them with `reagent status`",
            ws.dir.display()
        );
    }
    Ok(())
}

/// Longest summary `show` prints, in characters.
const SUMMARY_MAX: usize = 120;

/// A one-line summary of an event body's fields (its `type` excluded):
/// the fields that identify it first (`t12 succeeded`), then every other
/// field that is not null or `[]` as `name=value`, cut at `SUMMARY_MAX`
/// characters. Works for any body, including kinds this code does not know.
pub fn summarize(body: &Value) -> String {
    let Some(obj) = body.as_object() else {
        return truncate(body.to_string());
    };
    let mut used: Vec<&str> = vec!["type"];
    let mut parts: Vec<String> = Vec::new();
    let mut lead = |key: &'static str, fmt: &dyn Fn(&Value) -> String| {
        if let Some(v) = obj.get(key) {
            used.push(key);
            parts.push(fmt(v));
        }
    };
    let plain = |v: &Value| render(v);
    let trial = |v: &Value| format!("t{}", render(v));
    let hypothesis = |v: &Value| format!("h{}", render(v));
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "campaign-registered" => {
            lead("name", &plain);
            lead("file", &|v| format!("from {}", render(v)));
            // The whole campaign spec: too long for a line (see --json).
            lead("spec", &|_| String::new());
        }
        "state-changed" => {
            lead("from", &plain);
            lead("to", &|v| format!("-> {}", render(v)));
        }
        "stage-started" => lead("stage", &plain),
        "plan-approved" => lead("by", &|v| format!("by {}", render(v))),
        "strategy-called" => {
            lead("role", &plain);
            lead("outcome", &plain);
            lead("component_sha256", &|v| {
                format!(
                    "component={}",
                    v.as_str()
                        .map_or_else(|| render(v), |s| short(s).to_string())
                )
            });
        }
        "hypothesis-added" => {
            lead("id", &hypothesis);
            lead("stage", &plain);
            lead("origin", &plain);
            lead("title", &plain);
        }
        "hypothesis-status" => {
            lead("id", &hypothesis);
            lead("status", &plain);
        }
        "trial-queued" => {
            lead("id", &trial);
            lead("hypothesis", &hypothesis);
        }
        "trial-finished" => {
            lead("id", &trial);
            lead("status", &plain);
        }
        k if k.starts_with("trial-") => lead("id", &trial),
        "campaign-finished" => lead("state", &plain),
        _ => {}
    }
    for (key, value) in obj {
        let empty = value.is_null() || value.as_array().is_some_and(Vec::is_empty);
        if used.contains(&key.as_str()) || empty {
            continue;
        }
        if key == "assignments"
            && let Ok(list) = serde_json::from_value::<Vec<Assignment>>(value.clone())
        {
            let changes: Vec<String> = list
                .iter()
                .map(|a| format!("{}={}", a.knob, render_value(&a.value)))
                .collect();
            parts.push(format!("{{{}}}", changes.join(" ")));
            continue;
        }
        parts.push(format!("{key}={}", render(value)));
    }
    parts.retain(|p| !p.is_empty());
    truncate(parts.join(" "))
}

/// A JSON value for a summary: bare words bare, other strings quoted,
/// fractions to four decimals (tiny ones in e-notation), arrays and
/// objects as compact JSON.
fn render(value: &Value) -> String {
    match value {
        Value::String(s)
            if !s.is_empty()
                && !s
                    .chars()
                    .any(|c| c.is_whitespace() || c == '"' || c == '=' || c.is_control()) =>
        {
            s.clone()
        }
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x == 0.0 || x.abs() >= 1e-4 {
                let s = format!("{x:.4}");
                let s = s.trim_end_matches('0').trim_end_matches('.');
                s.to_string()
            } else {
                format!("{x:.2e}")
            }
        }
        other => other.to_string(),
    }
}

fn truncate(s: String) -> String {
    match s.char_indices().nth(SUMMARY_MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

pub use crate::time::iso_utc;

// ---------------------------------------------------------------- export

/// Is this event a strategy call whose full record was stored?
fn has_record(e: &RawEvent) -> bool {
    #[derive(serde::Deserialize)]
    struct Recorded {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        record: bool,
    }
    serde_json::from_str::<Recorded>(e.body.get())
        .is_ok_and(|r| r.kind == "strategy-called" && r.record)
}

fn export(
    ws: &Workspace,
    campaign: Option<u64>,
    output: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let store = open(ws)?;
    let all = store.events_raw(1)?;
    if let Some(id) = campaign {
        require_campaign(&store, ws, id, &all)?;
    }
    let mut text = Vec::new();
    let (mut events, mut records, mut lost) = (0u64, 0u64, Vec::new());
    for e in all {
        if campaign.is_some() && e.campaign != campaign {
            continue;
        }
        text.extend_from_slice(serde_json::to_string(&e)?.as_bytes());
        text.push(b'\n');
        events += 1;
        if has_record(&e) {
            match store.call(e.seq) {
                Ok(Some(record)) => {
                    let line = serde_json::json!({"call_record": e.seq, "record": record});
                    text.extend_from_slice(serde_json::to_string(&line)?.as_bytes());
                    text.push(b'\n');
                    records += 1;
                }
                Ok(None) => lost.push(format!(
                    "event {}: its call record is missing from the database",
                    e.seq
                )),
                Err(err) => lost.push(format!("event {}: {err:#}", e.seq)),
            }
        }
    }
    match output {
        Some(path) => {
            write_atomically(path, &text)?;
            println!(
                "wrote {events} events and {records} call records to {}",
                path.display()
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&text)?;
            out.flush()?;
        }
    }
    if lost.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for l in &lost {
        eprintln!("warning: {l}");
    }
    eprintln!(
        "the export is complete except for {} call record(s); check the log with `reagent audit verify`",
        lost.len()
    );
    Ok(ExitCode::from(EXIT_FAILED))
}

pub(super) use crate::files::write_atomic as write_atomically;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_lead_with_what_identifies_the_event() {
        let s = summarize(&serde_json::json!({
            "type": "trial-finished", "id": 12, "status": "succeeded",
            "objective": 0.812_345, "spent_cpu": 0.0003, "spent_gpu": 0.0, "summary": "ok"
        }));
        assert_eq!(
            s,
            "t12 succeeded objective=0.8123 spent_cpu=0.0003 spent_gpu=0 summary=ok"
        );
        let s = summarize(&serde_json::json!({
            "type": "state-changed", "from": "awaiting-approval", "to": "running", "reason": "plan approved"
        }));
        assert_eq!(s, "awaiting-approval -> running reason=\"plan approved\"");
    }

    #[test]
    fn unknown_events_fall_back_to_their_fields_and_are_cut() {
        let s = summarize(&serde_json::json!({
            "type": "some-future-event", "id": 3, "what": "budget", "payload": {"cpu_hours": 2},
            "note": null, "parents": []
        }));
        // Field order follows serde_json's map (sorted, or insertion order
        // when a dependency enables `preserve_order`).
        let mut parts: Vec<&str> = s.split(' ').collect();
        parts.sort();
        assert_eq!(parts, ["id=3", "payload={\"cpu_hours\":2}", "what=budget"]);
        let long = summarize(&serde_json::json!({"type": "x", "note": "y".repeat(500)}));
        assert_eq!(long.chars().count(), SUMMARY_MAX + 1);
        assert!(long.ends_with('…'));
        assert_eq!(summarize(&serde_json::json!([1, 2])), "[1,2]");
    }
}
