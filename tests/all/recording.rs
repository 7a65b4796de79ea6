//! Every call is recorded well enough to replay it bit-identically; the
//! imports answer from the data the host passed and nothing else.

use std::sync::Arc;

use reagent::sandbox::test_guests as g;
use reagent::sandbox::{Limits, Sandbox, SandboxConfig};
use reagent::strategy::data::{Curve, MemoryStore, StaticData};
use reagent::strategy::{
    Assignment, CallInput, CallOutput, Grants, HypothesisSummary, Insight, Phase, TrialStatus,
    TrialSummary, Value,
};

use crate::support::{context, guest, propose, propose_with, sandbox};

pub(crate) fn data(trials: usize) -> StaticData {
    let trials: Vec<TrialSummary> = (0..trials as u64)
        .map(|id| TrialSummary {
            id,
            hypothesis: 0,
            phase: Phase::Validate,
            assignments: vec![],
            seed: id,
            status: TrialStatus::Succeeded,
            objective: Some(0.8 + id as f64 * 1e-4),
            objective_stderr: Some(0.001),
            failure: None,
        })
        .collect();
    StaticData {
        trials,
        hypotheses: vec![HypothesisSummary {
            id: 0,
            title: "baseline".into(),
            category: "baseline".into(),
            phase: Phase::Validate,
            assignments: vec![],
            parents: vec![],
            outcome: None,
            effect: None,
            promising: false,
            trials: 3,
            failed: 0,
        }],
        curves: vec![Curve {
            trial: 0,
            metric: "valid_ne".into(),
            points: vec![(1, 0.9), (2, 0.85)],
        }],
        insights: vec![Insight {
            assignments: vec![Assignment {
                knob: "lr".into(),
                value: Value::Float(0.1),
            }],
            campaign: "earlier".into(),
            tags: vec!["test".into()],
            metric: "valid_ne".into(),
            effect: 0.01,
            ci95_low: 0.005,
            ci95_high: 0.015,
            trials: 4,
            cost_cpu_hours: 0.2,
            failure: None,
        }],
        ..StaticData::default()
    }
}

fn titles(output: &CallOutput) -> Vec<String> {
    match output {
        CallOutput::Hypotheses(h) => h.iter().map(|h| h.title.clone()).collect(),
        CallOutput::Diagnosis(d) => vec![d.rationale.clone()],
    }
}

#[test]
fn imports_answer_from_the_data_passed_and_every_answer_is_recorded() {
    let (r, memory) = propose_with(
        &guest(g::ECHO_GENERATOR),
        context("t", Phase::Validate, 9),
        3,
        &Limits::default(),
        Arc::new(data(600)),
    );
    let output = r.outcome.as_ref().expect("echo succeeds");
    let first = &titles(output)[0];
    // 600 trials came through three pages of the host's page cap.
    assert!(
        first.contains("trials=600 hyps=1 curve=2 insights=1 calls=1"),
        "{first}"
    );
    let functions: Vec<&str> = r.host_calls.iter().map(|c| c.function.as_str()).collect();
    assert_eq!(
        functions,
        [
            "history.trials",
            "history.trials",
            "history.trials",
            "history.hypotheses",
            "history.curve",
            "insights.find",
            "memory.get",
            "memory.set"
        ]
    );
    assert_eq!(memory.entries.get("calls"), Some(&vec![1u8]));
    assert_eq!(r.log.lines[0].message, "echo: phase validate round 0");
    assert_eq!(r.log.stdout, "echo on stdout\n");
    assert_eq!(r.log.stderr, "echo on stderr\n");
    assert!(r.usage.fuel > 0 && r.usage.peak_memory_bytes > 0);
    assert_eq!(r.usage.host_calls, 9, "8 recorded calls plus one log line");
}

#[test]
fn memory_survives_between_calls_through_the_host() {
    let sandbox = sandbox();
    let strategy = sandbox
        .load(&guest(g::ECHO_GENERATOR), &Grants::default())
        .unwrap();
    let mut memory = MemoryStore::default();
    for expected in 1..=3u8 {
        let (r, next) = sandbox.call(
            &strategy,
            CallInput::Propose {
                context: context("t", Phase::Validate, 1),
                max: 1,
            },
            Arc::new(StaticData::default()),
            memory,
            &Limits::default(),
        );
        assert!(titles(r.outcome.as_ref().unwrap())[0].ends_with(&format!("calls={expected}")));
        memory = next;
    }
    assert_eq!(memory.entries.get("calls"), Some(&vec![3u8]));
}

#[test]
fn the_memory_quota_is_enforced_as_an_error_the_guest_sees() {
    let limits = Limits {
        max_memory_store_bytes: 4,
        ..Limits::default()
    };
    let r = propose(
        &guest(g::ECHO_GENERATOR),
        context("t", Phase::Validate, 1),
        1,
        &limits,
    );
    // The echo guest treats a quota error as fatal (expect), so it traps.
    assert!(
        r.log.stderr.contains("memory quota exceeded"),
        "{}",
        r.log.stderr
    );
    assert_eq!(
        r.host_calls.last().unwrap().response,
        serde_json::json!({"Err": "memory quota exceeded: the store would hold 6 bytes; the quota is 4"})
    );
}

/// The echo generator called once over 40 trials, with its record.
fn recorded_echo_call() -> (
    reagent::sandbox::Strategy,
    reagent::strategy::record::CallRecord,
) {
    let strategy = sandbox()
        .load(&guest(g::ECHO_GENERATOR), &Grants::default())
        .unwrap();
    let (record, _) = sandbox().call(
        &strategy,
        CallInput::Propose {
            context: context("t", Phase::Validate, 5),
            max: 3,
        },
        Arc::new(data(40)),
        MemoryStore::default(),
        &Limits::default(),
    );
    (strategy, record)
}

#[test]
fn a_recorded_call_replays_bit_identically() {
    let sandbox = sandbox();
    let (strategy, record) = recorded_echo_call();
    assert!(record.outcome.is_ok());
    // Through JSON, as the audit log stores it.
    let stored: reagent::strategy::record::CallRecord =
        serde_json::from_slice(&serde_json::to_vec(&record).unwrap()).unwrap();
    let report = sandbox.replay(&strategy, &stored);
    assert!(report.identical, "{:?}", report.differences);
    assert_eq!(report.replayed.decision_bytes(), record.decision_bytes());
    assert_eq!(report.replayed.usage.fuel, record.usage.fuel);
}

#[test]
fn replay_detects_an_altered_host_answer_or_input() {
    let sandbox = sandbox();
    let (strategy, record) = recorded_echo_call();

    let mut altered = record.clone();
    let get = altered
        .host_calls
        .iter_mut()
        .find(|c| c.function == "memory.get")
        .unwrap();
    get.response = serde_json::json!([7]);
    let report = sandbox.replay(&strategy, &altered);
    assert!(!report.identical);
    assert!(
        report
            .differences
            .iter()
            .any(|d| d.contains("output differs")),
        "{:?}",
        report.differences
    );

    let mut altered = record.clone();
    if let CallInput::Propose { context, .. } = &mut altered.input {
        context.seed = 6;
    }
    assert!(!sandbox.replay(&strategy, &altered).identical);

    let mut altered = record;
    altered.host_calls.truncate(2);
    let report = sandbox.replay(&strategy, &altered);
    assert!(!report.identical);
    assert!(
        report
            .differences
            .iter()
            .any(|d| d.contains("replay diverged")),
        "{:?}",
        report.differences
    );
}

#[test]
fn clocks_are_virtual_and_randomness_is_seeded_by_the_host() {
    let run = |seed| {
        let r = propose(
            &guest(g::WALL_CLOCK),
            context("t", Phase::Validate, seed),
            1,
            &Limits::default(),
        );
        let title = titles(r.outcome.as_ref().expect("valid output"))[0].clone();
        (r.output_sha256.clone(), title)
    };
    let (a, text) = run(11);
    let (b, _) = run(11);
    assert_eq!(a, b, "same seed, same output");
    assert!(text.contains("wall=1577836800000000000"), "{text}");
    // The monotonic clock advances one microsecond per read, not with time.
    assert!(text.contains("elapsed=1000 "), "{text}");
}

#[test]
fn compiled_components_are_cached_on_disk_and_a_bad_cache_file_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        pooling: false,
    };
    let source = guest(g::ECHO_DEBUGGER);
    let first = Sandbox::new(config.clone()).unwrap();
    assert!(first.inspect(&source, &Grants::default()).unwrap().compiled);
    drop(first);
    let second = Sandbox::new(config.clone()).unwrap();
    assert!(
        !second
            .inspect(&source, &Grants::default())
            .unwrap()
            .compiled,
        "cache hit"
    );
    drop(second);

    for entry in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let third = Sandbox::new(config).unwrap();
    let info = third.inspect(&source, &Grants::default()).unwrap();
    assert!(info.compiled, "a corrupt cache entry is recompiled");
    // And it still runs, without the pooling allocator too.
    let strategy = third.load(&source, &Grants::default()).unwrap();
    let (r, _) = third.call(
        &strategy,
        CallInput::Diagnose {
            context: context("nopool", Phase::Validate, 1),
            failure: crate::support::failure("boom"),
        },
        Arc::new(data(2)),
        MemoryStore::default(),
        &Limits::default(),
    );
    assert_eq!(
        titles(r.outcome.as_ref().unwrap()),
        vec!["campaign nopool trials=2 tail=4"]
    );
}

/// A built-in strategy reads the whole history at every call, and its record
/// holds every answer. Stored whole, N calls over a history of about T trials
/// take N × T trials' worth of database (2,500 trials made 625 MB). History
/// pages are stored once, in chunks shared between records: the database
/// stays a small fraction of the records' size, and every record reads back
/// as written, down to the bytes its event's hash covers.
#[test]
fn history_pages_are_stored_once_however_often_a_strategy_reads_them() {
    use reagent::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.redb");
    // A database of the schema before chunks: its first chunked record
    // makes it one that an older reagent refuses rather than misreads.
    drop(Store::open(&path).unwrap());
    set_schema(&path, 1);
    let store = Store::open(&path).unwrap();
    let mut data = data(1500);
    let mut whole = 0usize;
    let mut records = Vec::new();
    for seq in 1..=24u64 {
        // One more trial, and one trial's result arriving, between calls.
        let next = data.trials.len() as u64;
        let mut t = data.trials[0].clone();
        t.id = next;
        t.status = TrialStatus::Running;
        t.objective = None;
        data.trials.push(t);
        if let Some(prev) = data.trials.get_mut(next as usize - 1) {
            prev.status = TrialStatus::Succeeded;
            prev.objective = Some(0.7);
        }
        let (r, _) = propose_with(
            &reagent::strategy::StrategySource::parse("builtin:three-phase"),
            context("t", Phase::Exploit, 5),
            4,
            &Limits::default(),
            Arc::new(data.clone()),
        );
        assert!(r.outcome.is_ok(), "{:?}", r.outcome);
        let pages = r
            .host_calls
            .iter()
            .filter(|h| h.function == "history.trials")
            .count();
        assert!(pages >= 2, "the strategy read {pages} pages of trials");
        whole += serde_json::to_vec(&r).unwrap().len();
        store.write(|tx| tx.put_call(seq, &r)).unwrap();
        records.push(r);
    }
    for (seq, r) in (1u64..).zip(&records) {
        assert_eq!(store.call(seq).unwrap().as_ref(), Some(r), "record {seq}");
        assert_eq!(
            store.call_bytes(seq).unwrap().unwrap(),
            serde_json::to_vec(r).unwrap(),
            "record {seq}'s bytes"
        );
    }
    drop(store);
    let size = std::fs::metadata(&path).unwrap().len() as usize;
    eprintln!("24 records of {whole} bytes in a database of {size} bytes");
    assert!(
        size * 4 < whole,
        "24 records of {whole} bytes made a database of {size} bytes"
    );
    assert_eq!(schema(&path), reagent::store::SCHEMA_VERSION);
    // Reopened, the records still read back whole.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.call(24).unwrap().as_ref(), records.last());
}

const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");

fn set_schema(path: &std::path::Path, v: u32) {
    let db = redb::Database::open(path).unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_table(META)
        .unwrap()
        .insert("schema", v.to_le_bytes().as_slice())
        .unwrap();
    tx.commit().unwrap();
}

fn schema(path: &std::path::Path) -> u32 {
    use redb::ReadableDatabase;
    let db = redb::Database::open(path).unwrap();
    let read = db.begin_read().unwrap();
    let t = read.open_table(META).unwrap();
    let v = t.get("schema").unwrap().unwrap();
    u32::from_le_bytes(v.value().try_into().unwrap())
}
