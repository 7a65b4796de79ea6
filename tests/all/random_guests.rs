//! Random guests (issue 18): `tests/guests/random-guest` draws its
//! behaviour from the call's seed — imports called in random order with
//! random arguments and sizes, allocations, recursion, loops, traps,
//! floods, then a valid, invalid or oversized answer. Over many seeds,
//! under tight limits: the host never panics, every failure is a typed
//! error within its limit, usage stays within the limits, and every record
//! survives the audit log's JSON and replays identically. The same seed
//! twice gives the same record.
//!
//! `REAGENT_RANDOM_GUESTS=N` runs N seeds (default 200).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use reagent::sandbox::test_guests as g;
use reagent::sandbox::{Limits, Strategy};
use reagent::strategy::data::MemoryStore;
use reagent::strategy::record::{CallError, CallRecord};
use reagent::strategy::validate;
use reagent::strategy::{CallInput, CallOutput, Grants, Phase};

use crate::recording::data;
use crate::support::{context, guest, kind, sandbox};

/// Tight limits, so every fault is reached fast. The deadline is only a
/// backstop: spins stop on fuel, which replays exactly.
fn limits() -> Limits {
    Limits {
        fuel: 50_000_000,
        deadline_ms: 30_000,
        memory_bytes: 32 << 20,
        max_host_calls: 300,
        max_host_call_payload_bytes: 64 << 10,
        max_call_bytes: 1 << 20,
        max_recorded_bytes: 256 << 10,
        max_page_items: 50,
        max_output_bytes: 64 << 10,
        max_log_lines: 64,
        max_log_bytes: 64 << 10,
        max_stdio_bytes: 4 << 10,
        max_memory_store_bytes: 4 << 10,
        ..Limits::default()
    }
}

/// Outcomes the default run must see at least once each, so a guest that
/// degenerated (always trapping, never reaching a limit) fails the test.
const EXPECTED: &[&str] = &[
    "ok",
    "out-of-fuel",
    "memory-limit",
    "stack-overflow",
    "trap",
    "invalid-output",
    "host-call-limit",
    "payload-too-large",
    "byte-budget",
    "record-limit",
    "output-too-large",
];

/// What a `trap` outcome may say: a fault of the guest's own making (an
/// `unreachable` after a panic or abort, a wild load, a WASI exit). Any
/// other message would be a host error passed off as the guest's.
const GUEST_TRAPS: &[&str] = &[
    "wasm `unreachable` instruction executed",
    "out of bounds memory access",
    "Exited with i32 exit status",
];

const DEFAULT_SEEDS: u64 = 200;

fn seeds() -> u64 {
    std::env::var("REAGENT_RANDOM_GUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_SEEDS)
}

fn input(seed: u64) -> CallInput {
    let phase = [Phase::Validate, Phase::Combine, Phase::Exploit][(seed % 3) as usize];
    CallInput::Propose {
        context: context("random", phase, seed),
        max: 1 + (seed % 6) as u32,
    }
}

/// The strategy's store before the call: empty, or holding a few entries
/// (some near the quota), so reads and over-quota writes both happen.
fn store(seed: u64) -> MemoryStore {
    let mut memory = MemoryStore::default();
    if !seed.is_multiple_of(4) {
        memory.entries.insert("calls".into(), vec![seed as u8]);
        memory
            .entries
            .insert("a".into(), vec![7; (seed % 3) as usize * 1500]);
    }
    memory
}

fn call(strategy: &Strategy, seed: u64) -> (CallRecord, MemoryStore) {
    sandbox().call(
        strategy,
        input(seed),
        Arc::new(data(120)),
        store(seed),
        &limits(),
    )
}

fn load() -> Strategy {
    sandbox()
        .load(&guest(g::RANDOM_GUEST), &Grants::default())
        .expect("the random guest loads")
}

/// The outcome is `ok` or a typed error that names the limit it hit, with
/// that limit's value.
fn check_outcome(r: &CallRecord, limits: &Limits, problems: &mut Vec<String>) {
    let Err(e) = &r.outcome else {
        return;
    };
    let fine = match e {
        CallError::OutOfFuel { limit } => *limit == limits.fuel && r.usage.fuel == limits.fuel,
        CallError::MemoryLimit { limit, requested } => {
            *limit == limits.memory_bytes && requested > limit
        }
        CallError::StackOverflow => true,
        CallError::HostCallLimit { limit } => {
            *limit == limits.max_host_calls && r.usage.host_calls == limit + 1
        }
        CallError::PayloadTooLarge { size, limit, .. } => {
            *limit == limits.max_host_call_payload_bytes && size > limit
        }
        CallError::ByteBudget { used, limit } => *limit == limits.max_call_bytes && used > limit,
        CallError::RecordLimit { size, limit } => {
            *limit == limits.max_recorded_bytes && size > limit
        }
        CallError::OutputTooLarge { size, limit } => {
            *limit == limits.max_output_bytes && size > limit
        }
        CallError::InvalidOutput { reason } => !reason.is_empty(),
        CallError::Trap { message, .. } => GUEST_TRAPS.iter().any(|t| message.contains(t)),
        // A deadline would not replay (it is wall-clock); the others are
        // beyond what this guest can do; divergence is replay's alone.
        CallError::Deadline { .. }
        | CallError::TableLimit { .. }
        | CallError::InstanceLimit { .. }
        | CallError::ReplayDiverged { .. } => false,
    };
    if !fine {
        problems.push(format!("unexpected error {}: {e}", e.kind()));
    }
}

/// Usage, log, stdio, transcript, store and output within the limits.
fn check_usage(r: &CallRecord, memory: &MemoryStore, limits: &Limits, problems: &mut Vec<String>) {
    let mut limited = Vec::new();
    let mut over = |what: &'static str, used: u64, limit: u64| limited.push((what, used, limit));
    over("fuel", r.usage.fuel, limits.fuel);
    over("memory", r.usage.peak_memory_bytes, limits.memory_bytes);
    let calls_allowed = match r.outcome {
        // The call that went past the limit is counted.
        Err(CallError::HostCallLimit { .. }) => limits.max_host_calls + 1,
        _ => limits.max_host_calls,
    };
    over("host calls", r.usage.host_calls, calls_allowed);
    over(
        "log lines",
        r.log.lines.len() as u64,
        u64::from(limits.max_log_lines),
    );
    let log_bytes: usize = r.log.lines.iter().map(|l| l.message.len()).sum();
    over("log bytes", log_bytes as u64, limits.max_log_bytes);
    over("stdout", r.log.stdout.len() as u64, limits.max_stdio_bytes);
    over("stderr", r.log.stderr.len() as u64, limits.max_stdio_bytes);
    over("memory store", memory.size(), limits.max_memory_store_bytes);
    if let (Ok(CallOutput::Hypotheses(h)), CallInput::Propose { max, .. }) = (&r.outcome, &r.input)
    {
        over("hypotheses", h.len() as u64, u64::from(*max));
        let size = validate::output_bytes(&CallOutput::Hypotheses(h.clone()));
        over("output bytes", size, limits.max_output_bytes);
    }
    let json = |v: &serde_json::Value| serde_json::to_vec(v).map_or(0, |b| b.len() as u64);
    let recorded: u64 = r
        .host_calls
        .iter()
        .filter(|c| c.withheld.is_none())
        .map(|c| c.function.len() as u64 + json(&c.request) + json(&c.response))
        .sum();
    over("recorded bytes", recorded, limits.max_recorded_bytes);
    for (what, used, limit) in limited {
        if used > limit {
            problems.push(format!("{what}: {used} past the limit of {limit}"));
        }
    }
    let withheld = r.host_calls.iter().position(|c| c.withheld.is_some());
    let at_a_byte_limit = matches!(
        r.outcome,
        Err(CallError::ByteBudget { .. } | CallError::RecordLimit { .. })
    );
    if let Some(at) = withheld
        && (at + 1 != r.host_calls.len() || !at_a_byte_limit)
    {
        problems.push(format!(
            "host call {at} of {} withheld, outcome {}",
            r.host_calls.len(),
            kind(r)
        ));
    }
    match &r.outcome {
        Ok(CallOutput::Hypotheses(_)) if r.output_sha256.is_none() => {
            problems.push("an ok outcome without an output hash".into());
        }
        Ok(CallOutput::Diagnosis(d)) => problems.push(format!("a generator answered {d:?}")),
        _ => {}
    }
}

/// The record survives JSON (as the audit log stores it) and replays to
/// the same outcome, transcript, log and usage.
fn check_replay(strategy: &Strategy, r: &CallRecord, problems: &mut Vec<String>) {
    let stored: CallRecord = match serde_json::to_vec(r)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
    {
        Ok(stored) => stored,
        Err(e) => {
            problems.push(format!("the record does not survive JSON: {e}"));
            return;
        }
    };
    if &stored != r {
        problems.push("the record changed through JSON".into());
    }
    let report = sandbox().replay(strategy, &stored);
    let replayed = &report.replayed;
    if !report.identical {
        problems.push(format!("replay differs: {:?}", report.differences));
    }
    if replayed.decision_bytes() != r.decision_bytes() {
        problems.push(format!(
            "replayed decision differs: outcome {} vs {}, {} vs {} host calls",
            kind(replayed),
            kind(r),
            replayed.host_calls.len(),
            r.host_calls.len()
        ));
    }
    if replayed.log != r.log {
        problems.push("replayed log differs".into());
    }
    let usage = |r: &CallRecord| (r.usage.fuel, r.usage.peak_memory_bytes, r.usage.host_calls);
    if usage(replayed) != usage(r) {
        problems.push(format!(
            "replayed usage (fuel, memory, calls) {:?}, recorded {:?}",
            usage(replayed),
            usage(r)
        ));
    }
}

/// A short label for a trap, for the summary.
fn trap_label(r: &CallRecord) -> Option<&'static str> {
    match &r.outcome {
        Err(CallError::Trap { message, .. }) => GUEST_TRAPS
            .iter()
            .copied()
            .find(|t| message.contains(t))
            .or(Some("other")),
        _ => None,
    }
}

#[test]
fn random_guests_stay_within_their_limits_fail_typed_and_replay_identically() {
    let started = Instant::now();
    let strategy = load();
    let limits = limits();
    let n = seeds();
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    let mut traps: BTreeMap<&str, u32> = BTreeMap::new();
    let mut problems = Vec::new();
    for seed in 0..n {
        let (record, memory) = call(&strategy, seed);
        *counts.entry(kind(&record)).or_default() += 1;
        if let Some(label) = trap_label(&record) {
            *traps.entry(label).or_default() += 1;
        }
        let mut found = Vec::new();
        check_outcome(&record, &limits, &mut found);
        check_usage(&record, &memory, &limits, &mut found);
        check_replay(&strategy, &record, &mut found);
        problems.extend(found.into_iter().map(|p| format!("seed {seed}: {p}")));
    }
    let summary: Vec<String> = counts.iter().map(|(k, c)| format!("{k} {c}")).collect();
    let trap_summary: Vec<String> = traps.iter().map(|(k, c)| format!("{k:?} {c}")).collect();
    println!(
        "random guests: {n} seeds in {:.1} s: {} (traps: {})",
        started.elapsed().as_secs_f64(),
        summary.join(", "),
        trap_summary.join(", ")
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    if n >= DEFAULT_SEEDS {
        let missing: Vec<&&str> = EXPECTED
            .iter()
            .filter(|k| !counts.contains_key(**k))
            .collect();
        assert!(
            missing.is_empty(),
            "outcomes never seen over {n} seeds: {missing:?} (seen: {counts:?})"
        );
    }
}

#[test]
fn a_random_guest_does_the_same_for_the_same_seed() {
    let strategy = load();
    let bare = |mut r: CallRecord| {
        r.usage.wall_us = 0;
        r
    };
    for seed in [0, 1, 2, 3, 5, 8, 13, 21, 34, 55] {
        let (first, first_memory) = call(&strategy, seed);
        let (second, second_memory) = call(&strategy, seed);
        assert_eq!(bare(first), bare(second), "seed {seed}");
        assert_eq!(first_memory, second_memory, "seed {seed}");
    }
}
