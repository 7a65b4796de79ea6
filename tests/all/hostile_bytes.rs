//! Strategies that try to make the host copy, record or store more than
//! their own limits allow, by moving bytes across the boundary
//! (`tests/guests/boundary-flood`, one mode per attack). Each call must end
//! with the named limit, and its call record — what the audit log stores —
//! must stay bounded.

use std::sync::Arc;

use reagent::sandbox::Limits;
use reagent::sandbox::test_guests as g;
use reagent::strategy::data::{MemoryStore, StaticData};
use reagent::strategy::record::{CallError, CallRecord};
use reagent::strategy::{Assignment, CallInput, Grants, Phase, TrialStatus, TrialSummary, Value};

use crate::support::{context, guest, kind, sandbox};

const MIB: u64 = 1 << 20;

/// A campaign history of 1,000 trials: one full page is ~150 KB of JSON.
fn history() -> StaticData {
    let trials = (0..1_000u64)
        .map(|id| TrialSummary {
            id,
            hypothesis: id / 3,
            phase: Phase::Validate,
            assignments: vec![
                Assignment {
                    knob: "lr".into(),
                    value: Value::Float(0.01 + id as f64 * 1e-6),
                },
                Assignment {
                    knob: "optimizer".into(),
                    value: Value::Choice("adam".into()),
                },
            ],
            seed: id,
            status: TrialStatus::Succeeded,
            objective: Some(0.8 + id as f64 * 1e-5),
            objective_stderr: Some(0.001),
            failure: None,
        })
        .collect();
    StaticData {
        trials,
        ..StaticData::default()
    }
}

fn run(mode: &str, limits: &Limits, data: StaticData) -> CallRecord {
    let grants = Grants {
        llm: true,
        ..Grants::default()
    };
    let strategy = sandbox()
        .load(&guest(g::BOUNDARY_FLOOD), &grants)
        .unwrap_or_else(|e| panic!("load: {e}"));
    sandbox()
        .call(
            &strategy,
            CallInput::Propose {
                context: context(mode, Phase::Validate, 1),
                max: 4,
            },
            Arc::new(data),
            MemoryStore::default(),
            limits,
        )
        .0
}

/// Replays `r` from its record alone: it must stop at the same limit.
fn assert_replays(r: &CallRecord) {
    let grants = Grants {
        llm: true,
        ..Grants::default()
    };
    let strategy = sandbox().load(&guest(g::BOUNDARY_FLOOD), &grants).unwrap();
    let report = sandbox().replay(&strategy, r);
    assert!(report.identical, "{:?}", report.differences);
    assert_eq!(report.replayed.outcome, r.outcome);
}

/// The size of the call record as the store keeps it.
fn stored_bytes(r: &CallRecord) -> u64 {
    serde_json::to_vec(r).unwrap().len() as u64
}

#[test]
fn a_history_trials_flood_ends_at_the_record_limit_with_a_bounded_record() {
    // The host-call limit is lowered only so the old code (which stopped at
    // nothing else) could not take the test machine's memory.
    let limits = Limits {
        max_host_calls: 300,
        ..Limits::default()
    };
    let r = run("trials-flood", &limits, history());
    assert_eq!(kind(&r), "record-limit", "{:?}", r.outcome);
    match &r.outcome {
        Err(CallError::RecordLimit { size, limit }) => {
            assert_eq!(*limit, limits.max_recorded_bytes);
            assert!(size > limit);
        }
        other => panic!("{other:?}"),
    }
    let stored = stored_bytes(&r);
    assert!(
        stored <= limits.max_recorded_bytes + MIB,
        "the record is {stored} bytes"
    );
    assert!(r.host_calls.len() > 10, "the flood did run");
    // The refused call is recorded with the size of the answer withheld,
    // not the answer.
    let last = r.host_calls.last().unwrap();
    assert!(
        last.withheld.is_some() && last.response.is_null(),
        "{last:?}"
    );
    assert_replays(&r);
}

#[test]
fn a_history_trials_flood_ends_at_a_smaller_byte_budget_named() {
    let limits = Limits {
        max_host_calls: 300,
        max_call_bytes: 4 * MIB,
        ..Limits::default()
    };
    let r = run("trials-flood", &limits, history());
    match &r.outcome {
        Err(CallError::ByteBudget { used, limit }) => {
            assert_eq!(*limit, 4 * MIB);
            assert!(used > limit);
        }
        other => panic!("expected byte-budget, got {other:?}"),
    }
    assert!(stored_bytes(&r) < 5 * MIB, "{}", stored_bytes(&r));
    assert_replays(&r);
}

#[test]
fn two_million_empty_messages_in_one_llm_call_are_refused_before_they_are_copied() {
    let limits = Limits {
        memory_bytes: 256 * MIB,
        ..Limits::default()
    };
    let r = run("llm-one-call", &limits, StaticData::default());
    match &r.outcome {
        Err(CallError::PayloadTooLarge {
            function,
            size,
            limit,
        }) => {
            assert_eq!(function, "llm.complete");
            // Each message costs its fixed overhead even when empty.
            assert!(
                *size >= 2_000_000 * reagent::limits::ITEM_OVERHEAD_BYTES,
                "{size}"
            );
            assert_eq!(*limit, limits.max_host_call_payload_bytes);
        }
        other => panic!("expected payload-too-large, got {other:?}"),
    }
    assert!(r.host_calls.is_empty());
    assert!(stored_bytes(&r) < MIB, "{}", stored_bytes(&r));
}

#[test]
fn a_flood_of_empty_llm_messages_ends_at_a_named_limit_with_a_bounded_record() {
    let limits = Limits {
        max_host_calls: 50,
        ..Limits::default()
    };
    let r = run("llm-flood", &limits, StaticData::default());
    assert!(
        matches!(kind(&r), "record-limit" | "byte-budget"),
        "{:?}",
        r.outcome
    );
    let stored = stored_bytes(&r);
    assert!(
        stored <= limits.max_recorded_bytes + MIB,
        "the record is {stored} bytes"
    );
    assert_replays(&r);
}

#[test]
fn a_30_mb_choice_value_is_output_too_large() {
    let limits = Limits::default();
    let r = run("huge-choice", &limits, StaticData::default());
    match &r.outcome {
        Err(CallError::OutputTooLarge { size, limit }) => {
            assert_eq!(*limit, limits.max_output_bytes);
            assert!(*size > 30 * MIB, "{size}");
        }
        other => panic!("expected output-too-large, got {other:?}"),
    }
    assert!(stored_bytes(&r) < MIB);
}

#[test]
fn a_long_choice_value_is_refused_even_where_out_of_space_values_become_requests() {
    // In a campaign an out-of-space value becomes an approval request; a
    // 100 KB choice must not become its payload.
    let data = StaticData {
        out_of_space_requests: true,
        ..StaticData::default()
    };
    let r = run("big-choice", &Limits::default(), data);
    match &r.outcome {
        Err(CallError::InvalidOutput { reason }) => {
            assert!(reason.contains("choice"), "{reason}");
            assert!(reason.contains("102400 bytes"), "{reason}");
        }
        other => panic!("expected invalid-output, got {other:?}"),
    }
}
