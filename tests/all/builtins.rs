//! The built-in strategies, called through the sandbox as a campaign will.

use std::sync::Arc;

use reagent::sandbox::Limits;
use reagent::strategy::data::{MemoryStore, StaticData};
use reagent::strategy::{
    Action, CallInput, CallOutput, Diagnosis, FailureClass, Grants, Phase, StrategySource, Value,
};

use crate::support::{context, failure, propose, sandbox};

fn three_phase() -> StrategySource {
    StrategySource::parse("builtin:three-phase")
}

#[test]
fn three_phase_validate_proposes_valid_single_changes_across_knobs() {
    let r = propose(
        &three_phase(),
        context("t", Phase::Validate, 3),
        5,
        &Limits::default(),
    );
    let Ok(CallOutput::Hypotheses(list)) = &r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert_eq!(list.len(), 5);
    let mut knobs: Vec<&str> = list
        .iter()
        .map(|h| {
            assert_eq!(h.assignments.len(), 1, "a single change: {h:?}");
            h.assignments[0].knob.as_str()
        })
        .collect();
    knobs.sort();
    knobs.dedup();
    assert_eq!(knobs.len(), 5, "five proposals cover five different knobs");
    // Within limits by a wide margin.
    assert!(r.usage.fuel < Limits::default().fuel / 100);
}

#[test]
fn three_phase_is_deterministic_for_a_seed_and_replays() {
    let a = propose(
        &three_phase(),
        context("t", Phase::Exploit, 21),
        6,
        &Limits::default(),
    );
    let b = propose(
        &three_phase(),
        context("t", Phase::Exploit, 21),
        6,
        &Limits::default(),
    );
    assert_eq!(a.output_sha256, b.output_sha256);
    assert!(a.outcome.is_ok(), "{:?}", a.outcome);
    let strategy = sandbox().load(&three_phase(), &Grants::default()).unwrap();
    assert!(sandbox().replay(&strategy, &a).identical);
}

fn diagnose(tail: &str, attempt: u32, assignments: Vec<(&str, Value)>) -> Diagnosis {
    let strategy = sandbox()
        .load(
            &StrategySource::parse("builtin:runbook"),
            &Grants::default(),
        )
        .unwrap();
    let mut report = failure(tail);
    report.attempt = attempt;
    report.assignments = assignments
        .into_iter()
        .map(|(k, v)| reagent::strategy::Assignment {
            knob: k.into(),
            value: v,
        })
        .collect();
    let (r, _) = sandbox().call(
        &strategy,
        CallInput::Diagnose {
            context: context("t", Phase::Validate, 1),
            failure: report,
        },
        Arc::new(StaticData::default()),
        MemoryStore::default(),
        &Limits::default(),
    );
    match r.outcome {
        Ok(CallOutput::Diagnosis(d)) => d,
        other => panic!("{other:?}"),
    }
}

fn retry_value(d: &Diagnosis, knob: &str) -> Value {
    match &d.action {
        Action::RetryWith(changes) => changes
            .iter()
            .find(|a| a.knob == knob)
            .unwrap_or_else(|| panic!("no change to {knob}: {d:?}"))
            .value
            .clone(),
        other => panic!("expected retry-with, got {other:?}"),
    }
}

#[test]
fn runbook_lowers_the_learning_rate_after_a_divergence() {
    let d = diagnose(
        "epoch 3 loss nan\nerror: loss exploded",
        1,
        vec![("lr", Value::Float(0.9))],
    );
    assert_eq!(d.class, FailureClass::Divergence);
    match retry_value(&d, "lr") {
        Value::Float(x) => assert!((x - 0.3).abs() < 1e-9, "lr {x}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn runbook_halves_the_batch_after_a_cuda_oom() {
    let d = diagnose(
        "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
        1,
        vec![("batch_size", Value::Int(512))],
    );
    assert_eq!(d.class, FailureClass::OutOfMemory);
    assert_eq!(retry_value(&d, "batch_size"), Value::Int(256));
}

#[test]
fn runbook_retries_infrastructure_errors_but_not_forever() {
    let d = diagnose(
        "NCCL error: unhandled system error, connection reset by peer",
        1,
        vec![],
    );
    assert_eq!(d.class, FailureClass::Infrastructure);
    assert_eq!(d.action, Action::Retry);
    let d = diagnose(
        "NCCL error: unhandled system error, connection reset by peer",
        3,
        vec![],
    );
    assert!(
        !matches!(d.action, Action::Retry | Action::RetryWith(_)),
        "{d:?}"
    );
}

/// A history of `n` trials over the shared test knobs: half the
/// hypotheses vary the learning rate and batch size, every tenth trial
/// failed out of memory.
fn big_history(n: u64) -> StaticData {
    use reagent::strategy::{Assignment, Estimate, HypothesisSummary, TrialStatus, TrialSummary};
    let mut data = StaticData::default();
    for h in 0..n / 2 {
        let lr = 0.001 + (h % 97) as f64 * 0.005;
        let assignments = vec![
            Assignment {
                knob: "lr".into(),
                value: Value::Float(lr),
            },
            Assignment {
                knob: "batch_size".into(),
                value: Value::Int(32 + (h % 61) as i64 * 32),
            },
        ];
        let mean = 0.8 - 0.01 * (1.0 - ((lr - 0.2) / 0.2).powi(2)).max(-1.0);
        data.hypotheses.push(HypothesisSummary {
            id: h + 1,
            title: format!("h{h}"),
            category: "exploit".into(),
            phase: Phase::Exploit,
            assignments: assignments.clone(),
            parents: vec![],
            outcome: Some(Estimate {
                mean,
                sd: 0.002,
                n: 2,
            }),
            effect: Some(0.8 - mean),
            promising: mean < 0.797,
            trials: 2,
            failed: 0,
        });
        for s in 0..2 {
            let id = h * 2 + s;
            let failed = id % 10 == 0;
            data.trials.push(TrialSummary {
                id,
                hypothesis: h + 1,
                phase: Phase::Exploit,
                assignments: assignments.clone(),
                seed: s + 1,
                status: if failed {
                    TrialStatus::Failed
                } else {
                    TrialStatus::Succeeded
                },
                objective: (!failed).then_some(mean),
                objective_stderr: None,
                failure: failed.then_some(FailureClass::OutOfMemory),
            });
        }
    }
    data
}

#[test]
fn three_phase_stays_within_the_default_limits_at_ten_thousand_trials_and_its_design_replays() {
    // Exploit scores its candidates against every trial (the failing-region
    // check among them): over 10,000 trials it must still answer within the
    // default limits.
    let (r, _) = crate::support::propose_with(
        &three_phase(),
        context("t", Phase::Exploit, 5),
        8,
        &Limits::default(),
        Arc::new(big_history(10_000)),
    );
    let Ok(CallOutput::Hypotheses(list)) = &r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert_eq!(list.len(), 8);
    assert!(
        r.usage.fuel < Limits::default().fuel / 2,
        "fuel {} of {}",
        r.usage.fuel,
        Limits::default().fuel
    );

    // Validate with room for a design (five knobs, sixteen slots): design
    // points, the same for the seed, and the call replays.
    let a = propose(
        &three_phase(),
        context("t", Phase::Validate, 9),
        16,
        &Limits::default(),
    );
    let b = propose(
        &three_phase(),
        context("t", Phase::Validate, 9),
        16,
        &Limits::default(),
    );
    assert_eq!(a.output_sha256, b.output_sha256);
    let Ok(CallOutput::Hypotheses(list)) = &a.outcome else {
        panic!("{:?}", a.outcome)
    };
    let design = list.iter().filter(|h| h.category == "design").count();
    assert!(design >= 5, "{list:#?}");
    let strategy = sandbox().load(&three_phase(), &Grants::default()).unwrap();
    assert!(sandbox().replay(&strategy, &a).identical);
}
