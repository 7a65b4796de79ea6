use std::collections::BTreeSet;

use reagent_sdk::testing::MockHost;
use reagent_sdk::{FailureClass, Insight, Phase, Value};

use super::*;

fn insight(assignments: Vec<Assignment>, effect: f64, failure: Option<FailureClass>) -> Insight {
    Insight {
        assignments,
        campaign: "older".into(),
        tags: vec![],
        metric: "acc".into(),
        effect,
        ci95_low: effect - 0.01,
        ci95_high: effect + 0.01,
        trials: 3,
        cost_cpu_hours: 1.0,
        failure,
    }
}

fn knob_names(out: &[Hypothesis]) -> Vec<String> {
    out.iter().map(|h| h.assignments[0].knob.clone()).collect()
}

/// The single changes of a slate (without the design points).
fn singles(out: Vec<Hypothesis>) -> Vec<Hypothesis> {
    out.into_iter().filter(|h| h.category != "design").collect()
}

#[test]
fn validate_covers_every_knob_kind_with_valid_single_changes() {
    let ctx = context(Phase::Validate, knobs());
    let (out, host) = call(MockHost::default(), &ctx, 100);
    assert_contract(&ctx, &host, &out, 100);
    let out = singles(out);
    assert!(
        out.iter()
            .all(|h| h.assignments.len() == 1 && h.parents.is_empty())
    );
    assert!(out.iter().all(|h| h.category == h.assignments[0].knob));

    let values =
        |knob: &str| -> Vec<Value> { out.iter().filter_map(|h| h.get(knob).cloned()).collect() };
    // log-float: factors of 3 (then 9), tidied.
    let lr = values("lr");
    assert_eq!(lr[..2], [Value::Float(0.003), Value::Float(0.0003333)]);
    assert!(lr.contains(&Value::Float(0.009)));
    // float: ± a quarter of the range (0.2), then half, clamped.
    assert_eq!(
        values("dropout"),
        [
            Value::Float(0.7),
            Value::Float(0.3),
            Value::Float(0.8),
            Value::Float(0.1)
        ]
    );
    // int: ± max(1, range / 4) = 1, then 2; 0 clamps to 1 and is dropped.
    assert_eq!(
        values("layers"),
        [Value::Int(3), Value::Int(1), Value::Int(4)]
    );
    // categorical: every other choice; flag: flipped.
    assert_eq!(
        values("optimizer"),
        [Value::Choice("adam".into()), Value::Choice("adamw".into())]
    );
    assert_eq!(values("use_bn"), [Value::Flag(true)]);

    assert_eq!(out[0].title, "lr ×3 (0.001 → 0.003)");
    assert!(out.iter().any(|h| h.title == "optimizer sgd → adamw"));
    assert!(host.logs[0].1.starts_with("validate: proposed"));
}

#[test]
fn validate_deals_round_robin_over_knobs_within_max() {
    let ctx = context(Phase::Validate, knobs());
    for max in [1, 3, 5] {
        let (out, host) = call(MockHost::default(), &ctx, max);
        assert_contract(&ctx, &host, &out, max);
        assert_eq!(out.len(), max as usize);
        let distinct: BTreeSet<String> = knob_names(&out).into_iter().collect();
        assert_eq!(distinct.len(), max as usize, "{:?}", knob_names(&out));
    }
    // Second pass: the other direction of each numeric knob before any
    // knob's third step (after the design points).
    let (out, _) = call(MockHost::default(), &ctx, 9 + 10);
    let out = singles(out);
    assert_eq!(
        knob_names(&out),
        [
            "lr",
            "dropout",
            "layers",
            "optimizer",
            "use_bn",
            "lr",
            "dropout",
            "layers",
            "optimizer"
        ]
    );
    assert_eq!(out[5].get("lr"), Some(&Value::Float(0.0003333)));
}

#[test]
fn validate_continues_where_history_left_off() {
    let ctx = context(Phase::Validate, knobs());
    let (first, _) = call(MockHost::default(), &ctx, 5);
    let history: Vec<HypothesisSummary> = first
        .iter()
        .enumerate()
        .map(|(i, h)| {
            summary(
                i as u64 + 1,
                Phase::Validate,
                h.assignments.clone(),
                Some(0.5),
                false,
            )
        })
        .collect();
    let host = MockHost {
        hypotheses: history,
        ..Default::default()
    };
    let mut next_ctx = ctx.clone();
    next_ctx.round = 1;
    let (second, host) = call(host, &next_ctx, 5);
    assert_contract(&next_ctx, &host, &second, 5);
    assert_eq!(second.len(), 5);
    assert_eq!(second[0].get("lr"), Some(&Value::Float(0.0003333)));
    assert_eq!(second[1].get("dropout"), Some(&Value::Float(0.3)));
}

#[test]
fn validate_skips_steps_that_clamp_to_baseline() {
    let ctx = context(
        Phase::Validate,
        vec![
            log_float("lr", 1e-4, 0.1, 0.1),
            float("wd", 0.0, 1.0, 0.0),
            int("depth", 3, 3, 3),
            categorical("act", &["relu"], "relu"),
        ],
    );
    let (out, host) = call(MockHost::default(), &ctx, 10);
    assert_contract(&ctx, &host, &out, 10);
    let out = singles(out);
    let titles: Vec<&str> = out.iter().map(|h| h.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "lr ÷3 (0.1 → 0.03333)",
            "wd +0.25 (0 → 0.25)",
            "lr ÷9 (0.1 → 0.01111)",
            "wd +0.5 (0 → 0.5)"
        ]
    );
}

#[test]
fn validate_puts_knobs_that_helped_before_first_with_their_value() {
    let host = MockHost {
        insights: vec![
            insight(vec![set("layers", Value::Int(6))], 0.05, None),
            insight(vec![set("lr", Value::Float(2e-4))], 0.01, None),
            insight(vec![set("dropout", Value::Float(0.1))], -0.04, None),
        ],
        ..Default::default()
    };
    let ctx = context(Phase::Validate, knobs());
    // 30 slots: 10 go to the design.
    let (out, host) = call(host, &ctx, 30);
    assert_contract(&ctx, &host, &out, 30);
    let out = singles(out);
    assert_eq!(knob_names(&out)[..3], ["layers", "lr", "dropout"]);
    assert_eq!(out[0].get("layers"), Some(&Value::Int(6)));
    assert!(out[0].rationale.contains("campaign older"));
    // lr helped downwards: ÷3 comes before ×3 in lr's own order.
    assert_eq!(out[1].get("lr"), Some(&Value::Float(2e-4)));
    let lr: Vec<&Value> = out.iter().filter_map(|h| h.get("lr")).collect();
    assert_eq!(lr[1], &Value::Float(0.0003333));
    // layers' remaining steps: the upward ones first.
    let layers: Vec<&Value> = out.iter().filter_map(|h| h.get("layers")).collect();
    assert_eq!(
        layers,
        [
            &Value::Int(6),
            &Value::Int(3),
            &Value::Int(4),
            &Value::Int(1)
        ]
    );
}

#[test]
fn validate_puts_known_failures_last() {
    let host = MockHost {
        insights: vec![insight(
            vec![set("lr", Value::Float(0.003))],
            0.0,
            Some(FailureClass::Divergence),
        )],
        ..Default::default()
    };
    let ctx = context(Phase::Validate, knobs());
    let (out, host) = call(host, &ctx, 5);
    assert_contract(&ctx, &host, &out, 5);
    assert!(
        out.iter()
            .all(|h| h.get("lr") != Some(&Value::Float(0.003)))
    );
    assert_eq!(out[4].get("lr"), Some(&Value::Float(0.0003333)));

    let (all, _) = call(
        MockHost {
            insights: host.insights,
            ..Default::default()
        },
        &ctx,
        100,
    );
    let last = all.last().unwrap();
    assert_eq!(last.get("lr"), Some(&Value::Float(0.003)));
    assert!(last.rationale.contains("failure"));
}

#[test]
fn validate_returns_nothing_when_max_is_zero_or_all_is_tried() {
    let ctx = context(Phase::Validate, knobs());
    let (out, host) = call(MockHost::default(), &ctx, 0);
    assert!(out.is_empty());
    assert_eq!(host.logs.len(), 1);

    let ctx = context(Phase::Validate, vec![flag("ema", false)]);
    let host = MockHost {
        hypotheses: vec![summary(
            1,
            Phase::Validate,
            vec![set("ema", Value::Flag(true))],
            None,
            false,
        )],
        ..Default::default()
    };
    let (out, _) = call(host, &ctx, 4);
    assert!(out.is_empty());
}

#[test]
fn validate_is_deterministic() {
    let ctx = context(Phase::Validate, knobs());
    let (a, _) = call(MockHost::default(), &ctx, 7);
    let (b, _) = call(MockHost::default(), &ctx, 7);
    assert_eq!(a, b);
}
