//! `reagent audit`: the chain verifies after a whole campaign and every
//! kind of tampering with the stored log is named at the right entry;
//! recorded decisions replay identically and an altered record does not;
//! exports re-hash with nothing but sha256; `show` filters by campaign.
//!
//! One small campaign runs once (with a failing trial, so both strategy
//! roles are called); every test works on its own copy of that database.

use std::process::Output;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reagent::records::campaign::EventBody;
use reagent::sandbox::test_guests::{ECHO_GENERATOR, THREE_PHASE};
use reagent::store::Store;
use redb::{ReadableTable, TableDefinition};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::campaign::{Project, text};

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const CALLS: TableDefinition<u64, &[u8]> = TableDefinition::new("strategy_calls");
const CHUNKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("answer_chunks");

/// A finished campaign 1 and a planned (unapproved) campaign 2.
struct Finished {
    db: Vec<u8>,
    /// Events in the log.
    events: u64,
    head: String,
    /// Seqs of campaign 1's `StrategyCalled` events with a stored record,
    /// with their roles.
    calls: Vec<(u64, String)>,
    /// Events per campaign (1 and 2).
    per_campaign: [u64; 2],
}

fn finished() -> &'static Finished {
    static FINISHED: OnceLock<Finished> = OnceLock::new();
    FINISHED.get_or_init(|| {
        let p = Project::new(|t| {
            t.replace("max_trials = 24", "max_trials = 7")
                .replace("confirm_replicates = 2", "confirm_replicates = 1")
                .replace(
                    "resources = { cpus = 1 }",
                    "resources = { cpus = 1 }\nenv = { FAIL_T4 = \"crash\" }",
                )
        });
        let o = p.reagent(&["run", "toy.toml", "--yes"]);
        assert!(o.status.success(), "{}", text(&o));
        let o = p.reagent(&["plan", "toy.toml"]);
        assert!(o.status.success(), "{}", text(&o));
        snapshot(&p.path(".reagent/reagent.redb"))
    })
}

/// Copies the database once nobody holds it, and checks the copy.
fn snapshot(db: &std::path::Path) -> Finished {
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < Duration::from_secs(30), "no snapshot");
        // A job's supervisor may still be running its `reagent wake`.
        let Ok(store) = Store::open(db) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        drop(store);
        let bytes = std::fs::read(db).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("copy.redb");
        std::fs::write(&copy, &bytes).unwrap();
        let Ok(store) = Store::open(&copy) else {
            continue;
        };
        let events = store.events(0).unwrap();
        if store.verify_chain().unwrap() != Ok(events.len() as u64) {
            continue;
        }
        let calls = events
            .iter()
            .filter(|e| e.campaign == Some(1))
            .filter_map(|e| match &e.body {
                EventBody::StrategyCalled {
                    role, record: true, ..
                } => Some((e.seq, role.clone())),
                _ => None,
            })
            .collect();
        let count = |c: u64| events.iter().filter(|e| e.campaign == Some(c)).count() as u64;
        return Finished {
            db: bytes,
            events: events.len() as u64,
            head: store.head().unwrap().1,
            calls,
            per_campaign: [count(1), count(2)],
        };
    }
}

/// A fresh workspace holding a copy of the finished database, after
/// `tamper` changed it through redb directly.
fn workspace_with(tamper: impl FnOnce(&redb::Database)) -> Project {
    let f = finished();
    let p = Project::new(|t| t);
    let path = p.path(".reagent/reagent.redb");
    std::fs::write(&path, &f.db).unwrap();
    let db = redb::Database::open(&path).unwrap();
    tamper(&db);
    drop(db);
    p
}

fn edit(
    db: &redb::Database,
    table: TableDefinition<u64, &[u8]>,
    f: impl FnOnce(&mut redb::Table<'_, u64, &[u8]>),
) {
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx.open_table(table).unwrap();
        f(&mut t);
    }
    tx.commit().unwrap();
}

fn row(t: &redb::Table<'_, u64, &[u8]>, seq: u64) -> Vec<u8> {
    t.get(seq).unwrap().unwrap().value().to_vec()
}

/// The row with one letter of its body's last string value that starts
/// with a letter changed case:
/// still valid JSON, no longer what was hashed.
fn flip_in_body(row: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(row).unwrap();
    let body = text.find("\"body\":").unwrap();
    let at = text[body..]
        .rmatch_indices("\":\"")
        .map(|(i, _)| body + i + 3)
        .find(|&at| row[at].is_ascii_alphabetic())
        .unwrap_or_else(|| panic!("no string value starting with a letter: {text}"));
    let mut out = row.to_vec();
    assert!(out[at].is_ascii_alphabetic(), "{text}");
    out[at] ^= 0x20;
    serde_json::from_slice::<Value>(&out).expect("still valid JSON");
    out
}

/// `row` flipped as above, with its own hash recomputed to match.
fn rewrite_with_hash(row: &[u8]) -> Vec<u8> {
    let flipped = flip_in_body(row);
    let text = String::from_utf8(flipped).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let body = raw_body(&text);
    let hash = reagent::store::event_hash(
        v["prev_hash"].as_str().unwrap(),
        v["seq"].as_u64().unwrap(),
        v["at_ms"].as_u64().unwrap(),
        v["campaign"].as_u64(),
        body.as_bytes(),
    );
    let old = v["hash"].as_str().unwrap();
    assert_eq!(text.matches(old).count(), 1);
    text.replace(old, &hash).into_bytes()
}

/// The `body` of a stored row or an exported line: the last field, so
/// everything after the first `,"body":` up to the final `}`.
fn raw_body(line: &str) -> &str {
    let start = line.find(",\"body\":").expect("a body") + ",\"body\":".len();
    let end = line.rfind('}').unwrap();
    &line[start..end]
}

fn verify(p: &Project) -> (Option<i32>, Value) {
    let o = p.reagent(&["audit", "verify", "--json"]);
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    (o.status.code(), v)
}

/// Verification fails naming `seq`, with `problem` in its words.
fn assert_break(p: &Project, seq: u64, problem: &str) -> Value {
    let (code, v) = verify(p);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["break"]["seq"], seq, "{v}");
    let said = v["break"]["problem"].as_str().unwrap();
    assert!(said.contains(problem), "{v}");
    v
}

fn lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_finished_campaign_verifies_and_every_decision_replays_identically() {
    let f = finished();
    let p = workspace_with(|_| {});
    let (code, v) = verify(&p);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["events"], f.events, "{v}");
    assert_eq!(v["head"], f.head.as_str(), "{v}");
    assert_eq!(v["break"], Value::Null, "{v}");
    let o = p.reagent(&["audit", "verify"]);
    assert_eq!(
        text(&o).lines().next().unwrap(),
        format!("ok: {} events, chain head {}", f.events, &f.head[..16])
    );
    assert!(
        text(&o).contains(&format!("anchor {}:{} — keep it", f.events, f.head)),
        "{}",
        text(&o)
    );

    // Both roles made decisions, and each replays bit-identically.
    assert!(
        f.calls.iter().any(|(_, r)| r == "generator"),
        "{:?}",
        f.calls
    );
    assert!(
        f.calls.iter().any(|(_, r)| r == "debugger"),
        "{:?}",
        f.calls
    );
    let o = p.reagent(&["audit", "replay", "--campaign", "1", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["replayed"], f.calls.len(), "{r}");
    assert_eq!(r["identical"], f.calls.len(), "{r}");
    assert_eq!(r["different"], 0, "{r}");
    let seqs: Vec<u64> = r["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        f.calls.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        "{r}"
    );
    let o = p.reagent(&["audit", "replay", "--campaign", "1"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let n = f.calls.len();
    assert!(
        out.contains(&format!(
            "replayed {n} decisions: {n} identical, 0 different"
        )),
        "{out}"
    );
    assert_eq!(out.matches(" identical (fuel ").count(), n, "{out}");

    // Campaign 2 was only planned: nothing to replay is not a failure.
    let o = p.reagent(&["audit", "replay", "--campaign", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("made no strategy calls"), "{}", text(&o));
    // An event that is not a strategy call is a usage error.
    let o = p.reagent(&["audit", "replay", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not a strategy call"), "{}", text(&o));
}

#[test]
fn a_flipped_byte_in_an_event_body_is_named() {
    let p = workspace_with(|db| {
        edit(db, EVENTS, |t| {
            let r = flip_in_body(&row(t, 5));
            t.insert(5, r.as_slice()).unwrap();
        })
    });
    assert_break(&p, 5, "do not match its hash (altered)");
    let o = p.reagent(&["audit", "verify"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("chain broken at entry 5 (as stored: "),
        "{out}"
    );
    assert!(
        out.contains("everything from entry 5 on is untrusted"),
        "{out}"
    );
}

#[test]
fn a_removed_entry_is_named() {
    let p = workspace_with(|db| {
        edit(db, EVENTS, |t| {
            t.remove(5).unwrap();
        })
    });
    let v = assert_break(&p, 5, "entry 5 is missing");
    assert_eq!(v["events"], finished().events - 1, "{v}");
    // No decision is added on top of a broken log: campaign 2's plan
    // request stays pending and the log is untouched.
    let o = p.reagent(&["approve", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("the audit log is broken at entry 5"),
        "{}",
        text(&o)
    );
    let pending = p.json(&["approvals", "--json"]);
    assert_eq!(pending[0]["id"], 2, "{pending}");
    assert_eq!(pending[0]["state"], "pending", "{pending}");
    assert_eq!(verify(&p).1["events"], finished().events - 1);
}

#[test]
fn swapped_entries_are_named() {
    let p = workspace_with(|db| {
        edit(db, EVENTS, |t| {
            let (a, b) = (row(t, 5), row(t, 6));
            t.insert(5, b.as_slice()).unwrap();
            t.insert(6, a.as_slice()).unwrap();
        })
    });
    assert_break(&p, 5, "moved or swapped");
}

#[test]
fn entries_cut_from_the_end_are_named() {
    let n = finished().events;
    let p = workspace_with(|db| {
        edit(db, EVENTS, |t| {
            for seq in n - 2..=n {
                t.remove(seq).unwrap();
            }
        })
    });
    let v = assert_break(&p, n - 2, "removed from the end");
    assert_eq!(v["events"], n - 3, "{v}");
}

#[test]
fn a_rewritten_entry_with_a_recomputed_hash_is_named() {
    // Entry 5 is consistent with itself; entry 6 still links to the old 5.
    let p = workspace_with(|db| {
        edit(db, EVENTS, |t| {
            let r = rewrite_with_hash(&row(t, 5));
            t.insert(5, r.as_slice()).unwrap();
        })
    });
    assert_break(&p, 5, "rewritten and its hash recomputed");
    // The last entry has no successor: the head still has its old hash.
    let n = finished().events;
    let p = workspace_with(|db| {
        edit(db, EVENTS, |t| {
            let r = rewrite_with_hash(&row(t, n));
            t.insert(n, r.as_slice()).unwrap();
        })
    });
    assert_break(&p, n, "rewritten and its hash recomputed");
}

#[test]
fn an_unreadable_entry_is_reported_not_a_crash() {
    let p = workspace_with(|db| {
        edit(db, EVENTS, |t| {
            t.insert(7, b"\x00not json".as_slice()).unwrap();
        })
    });
    assert_break(&p, 7, "unreadable entry");
    let o = p.reagent(&["audit", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("chain broken at entry 7 (unreadable)"),
        "{}",
        text(&o)
    );
}

/// Rewrites the stored call record of event `seq` through `change`.
fn alter_record(seq: u64, change: impl FnOnce(&mut Value)) -> Project {
    workspace_with(|db| {
        edit(db, CALLS, |t| {
            // A record whose history pages went to shared chunks starts
            // with a 1 byte and holds the record under "record".
            let bytes = row(t, seq);
            let chunked = bytes.first() == Some(&1);
            let json = if chunked { &bytes[1..] } else { &bytes[..] };
            let mut v: Value = serde_json::from_slice(json).unwrap();
            change(if chunked { &mut v["record"] } else { &mut v });
            let mut out = if chunked { vec![1] } else { vec![] };
            out.extend(serde_json::to_vec(&v).unwrap());
            t.insert(seq, out.as_slice()).unwrap();
        })
    })
}

fn replay_fails_saying(p: &Project, seq: u64, what: &str) {
    let o = p.reagent(&["audit", "replay", &seq.to_string()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("DIFFERENT"), "{out}");
    assert!(out.contains(what), "{out}");
    assert!(
        out.contains("replayed 1 decision: 0 identical, 1 different"),
        "{out}"
    );
}

#[test]
fn replay_detects_an_altered_call_record() {
    let f = finished();
    let (seq, _) = f.calls.iter().find(|(_, r)| r == "generator").unwrap();
    // The recorded output hash.
    let p = alter_record(*seq, |v| {
        let h = v["output_sha256"].as_str().unwrap();
        let flipped = if h.starts_with('0') { "1" } else { "0" };
        v["output_sha256"] = Value::String(format!("{flipped}{}", &h[1..]));
    });
    // The record's sha256 is in its (hashed) event: any change is caught
    // before replaying, and named.
    replay_fails_saying(&p, *seq, "the stored call record was altered");

    // A host call's answer (the first call that made one).
    let db = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.redb");
        std::fs::write(&path, &f.db).unwrap();
        let store = Store::open(&path).unwrap();
        f.calls
            .iter()
            .map(|(s, _)| (*s, store.call(*s).unwrap().unwrap()))
            .find(|(_, r)| !r.host_calls.is_empty())
    };
    let (seq, _) = db.expect("some recorded call asked the host something");
    let p = alter_record(seq, |v| v["host_calls"][0]["response"] = Value::Null);
    // A history page's answer has its items in chunks: with the answer
    // gone they have nowhere to go, and the record does not read.
    let o = p.reagent(&["audit", "replay", &seq.to_string()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("the stored call record was altered")
            || out.contains("the stored call record is unreadable"),
        "{out}"
    );

    // A chunk of history shared between records: every record that names
    // it no longer matches its event.
    let p = workspace_with(|db| {
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(CHUNKS).unwrap();
            let (key, value) = {
                let first = t.iter().unwrap().next().expect("a chunk").unwrap();
                (first.0.value().to_vec(), first.1.value().to_vec())
            };
            let text = String::from_utf8(value).unwrap();
            // The first item's id, one more.
            let at = text.find("\"id\":").expect("an item") + 5;
            let digit = text.as_bytes()[at];
            let mut changed = text.clone().into_bytes();
            changed[at] = if digit == b'9' { b'8' } else { digit + 1 };
            let changed = String::from_utf8(changed).unwrap();
            assert_ne!(text, changed, "{text}");
            t.insert(key.as_slice(), changed.as_bytes()).unwrap();
        }
        tx.commit().unwrap();
    });
    let o = p.reagent(&["audit", "replay", "--campaign", "1"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("the stored call record was altered"), "{out}");

    // The fuel the record claims, against its hashed event.
    let p = alter_record(seq, |v| {
        let fuel = v["usage"]["fuel"].as_u64().unwrap();
        v["usage"]["fuel"] = (fuel + 1).into();
    });
    replay_fails_saying(&p, seq, "the stored call record was altered");
}

/// Checks exported lines: every hash recomputes with sha256 from the line
/// alone; with `chained`, each links to the one before from seq 1 on.
/// Returns the event lines as JSON and the call-record seqs.
fn check_export(text: &str, chained: bool) -> (Vec<Value>, Vec<u64>) {
    let mut events = Vec::new();
    let mut records = Vec::new();
    let mut prev = String::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(seq) = v["call_record"].as_u64() {
            let last = events.last().map(|e: &Value| e["seq"].as_u64().unwrap());
            assert_eq!(last, Some(seq), "a record follows its event: {line}");
            assert!(v["record"]["component_sha256"].is_string(), "{line}");
            records.push(seq);
            continue;
        }
        let seq = v["seq"].as_u64().unwrap();
        let prev_hash = v["prev_hash"].as_str().unwrap();
        let mut h = Sha256::new();
        h.update(prev_hash.as_bytes());
        h.update(seq.to_le_bytes());
        h.update(v["at_ms"].as_u64().unwrap().to_le_bytes());
        h.update(v["campaign"].as_u64().map_or(0, |c| c + 1).to_le_bytes());
        h.update(raw_body(line).as_bytes());
        assert_eq!(
            hex::encode(h.finalize()),
            v["hash"].as_str().unwrap(),
            "{line}"
        );
        if chained {
            assert_eq!(seq, events.len() as u64 + 1, "{line}");
            assert_eq!(prev_hash, prev, "{line}");
        }
        prev = v["hash"].as_str().unwrap().to_string();
        events.push(v);
    }
    (events, records)
}

#[test]
fn exported_lines_rehash_and_chain() {
    let f = finished();
    let p = workspace_with(|_| {});
    let o = p.reagent(&["audit", "export", "-o", "log.jsonl"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let file = std::fs::read_to_string(p.path("log.jsonl")).unwrap();
    let (events, records) = check_export(&file, true);
    assert_eq!(events.len() as u64, f.events);
    assert_eq!(events.last().unwrap()["hash"], f.head.as_str());
    assert_eq!(
        records,
        f.calls.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        "every stored call record, after its event"
    );
    // No temporary file is left beside it; stdout gets the same lines.
    let names: Vec<_> = std::fs::read_dir(p.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("log.jsonl"))
        .collect();
    assert_eq!(names, ["log.jsonl"]);
    let o = p.reagent(&["audit", "export"]);
    assert_eq!(String::from_utf8(o.stdout).unwrap(), file);

    // One campaign: only its events and records; each hash still
    // recomputes, but the chain has gaps.
    for (id, count) in [(1u64, f.per_campaign[0]), (2, f.per_campaign[1])] {
        let o = p.reagent(&["audit", "export", "--campaign", &id.to_string()]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let (events, records) = check_export(&String::from_utf8(o.stdout).unwrap(), false);
        assert_eq!(events.len() as u64, count);
        assert!(events.iter().all(|e| e["campaign"] == id));
        assert_eq!(records.len(), if id == 1 { f.calls.len() } else { 0 });
    }
}

#[test]
fn show_lists_one_campaign_and_nothing_else() {
    let f = finished();
    let p = workspace_with(|_| {});
    for (id, expected) in [(1u64, f.per_campaign[0]), (2, f.per_campaign[1])] {
        let o = p.reagent(&["audit", "show", "--campaign", &id.to_string()]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let lines = lines(&o);
        assert_eq!(lines.len() as u64, expected, "{lines:#?}");
        for l in &lines {
            let cols: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cols[2], format!("c{id}"), "{l}");
            // 2025-01-02T03:04:05Z
            let t = cols[1].as_bytes();
            assert!(t.len() == 20 && t[10] == b'T' && t[19] == b'Z', "{l}");
        }
        assert!(
            lines
                .iter()
                .any(|l| l.contains("campaign-registered toy from ")),
            "{lines:#?}"
        );
    }
    let o = p.reagent(&["audit", "show", "--campaign", "1"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.lines()
            .any(|l| l.contains("trial-finished") && l.contains("t1 succeeded objective=")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("strategy-called") && l.contains("debugger ok component=")),
        "{out}"
    );

    // All events, as JSON lines, from a seq on.
    let o = p.reagent(&["audit", "show", "--json", "--from", "5"]);
    let all: Vec<Value> = lines(&o)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(all.len() as u64, f.events - 4);
    assert_eq!(all[0]["seq"], 5);
    assert!(
        all.iter()
            .all(|e| e["type"].is_string() && e["body"].is_object())
    );

    let o = p.reagent(&["audit", "show", "--campaign", "9"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no campaign 9"), "{}", text(&o));
}

#[test]
fn replay_names_a_component_that_changed_since_the_decision() {
    let p = Project::new(|t| {
        t.replace("max_trials = 24", "max_trials = 5")
            .replace("confirm_replicates = 2", "confirm_replicates = 1")
            + "\n[strategies]\ngenerator = \"gen.wasm\"\n"
    });
    let sha = |path: &str| hex::encode(Sha256::digest(std::fs::read(path).unwrap()));
    std::fs::copy(THREE_PHASE, p.path("gen.wasm")).unwrap();
    let o = p.reagent(&["run", "toy.toml", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = p.reagent(&["audit", "replay", "--campaign", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // The strategy file is rebuilt into something else.
    std::fs::copy(ECHO_GENERATOR, p.path("gen.wasm")).unwrap();
    let o = p.reagent(&["audit", "replay", "--campaign", "1"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "component changed since the decision: recorded {}, now {}",
            sha(THREE_PHASE),
            sha(ECHO_GENERATOR)
        )),
        "{out}"
    );
    assert!(out.contains(" identical, "), "{out}");
    assert!(!out.contains(" 0 different"), "{out}");
}
