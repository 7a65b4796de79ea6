use reagent_sdk::testing::MockHost;
use reagent_sdk::{Phase, Value};

use super::*;

fn lr(x: f64) -> Assignment {
    set("lr", Value::Float(x))
}
fn opt(c: &str) -> Assignment {
    set("optimizer", Value::Choice(c.into()))
}
fn bn() -> Assignment {
    set("use_bn", Value::Flag(true))
}
fn dropout(x: f64) -> Assignment {
    set("dropout", Value::Float(x))
}
fn layers(n: i64) -> Assignment {
    set("layers", Value::Int(n))
}

/// Baseline, three promising changes, one too small to count, one harmful.
fn history() -> Vec<HypothesisSummary> {
    vec![
        summary(0, Phase::Validate, vec![], Some(0.5), false),
        summary(1, Phase::Validate, vec![lr(0.003)], Some(0.60), true),
        summary(2, Phase::Validate, vec![opt("adam")], Some(0.55), true),
        summary(3, Phase::Validate, vec![bn()], Some(0.53), true),
        summary(4, Phase::Validate, vec![dropout(0.3)], Some(0.51), false),
        summary(5, Phase::Validate, vec![layers(3)], Some(0.45), false),
    ]
}

fn find<'a>(out: &'a [Hypothesis], parents: &[u64]) -> Option<&'a Hypothesis> {
    out.iter().find(|h| h.parents == parents)
}

#[test]
fn combine_builds_union_pairs_and_leave_one_out_from_promising_only() {
    let ctx = context(Phase::Combine, knobs());
    let host = MockHost {
        hypotheses: history(),
        ..Default::default()
    };
    let (out, host) = call(host, &ctx, 20);
    assert_contract(&ctx, &host, &out, 20);

    // The union of every promising change comes first.
    let union = &out[0];
    assert_eq!(union.parents, [1, 2, 3]);
    assert_eq!(union.get("lr"), Some(&Value::Float(0.003)));
    assert_eq!(union.get("optimizer"), Some(&Value::Choice("adam".into())));
    assert_eq!(union.get("use_bn"), Some(&Value::Flag(true)));
    assert_eq!(union.category, "combination");
    assert!(union.rationale.contains("+0.18"), "{}", union.rationale);

    // Pairs (and the leave-one-out variants, which are pairs here too).
    for parents in [[1, 2], [1, 3], [2, 3]] {
        let h = find(&out, &parents).unwrap_or_else(|| panic!("missing {parents:?}"));
        assert_eq!(h.assignments.len(), 2);
    }
    assert_eq!(out.len(), 4);
    // Nothing from the unpromising or harmful changes.
    assert!(
        out.iter()
            .all(|h| h.get("dropout").is_none() && h.get("layers").is_none())
    );
}

#[test]
fn combine_leaves_each_part_out_of_a_larger_union_and_mixes_kinds_first() {
    let ctx = context(Phase::Combine, knobs());
    let mut hypotheses = history();
    hypotheses[4].promising = true; // dropout joins: four parts.
    let host = MockHost {
        hypotheses,
        ..Default::default()
    };
    let (out, host) = call(host, &ctx, 3);
    assert_contract(&ctx, &host, &out, 3);
    // A short slate: the union, the best pair, the union without the weakest.
    assert_eq!(out[0].parents, [1, 2, 3, 4]);
    assert_eq!(out[1].parents, [1, 2]);
    assert_eq!(out[2].parents, [1, 2, 3]);
    assert!(out[2].rationale.contains("without h4"));

    let (all, _) = call(
        MockHost {
            hypotheses: history_with_four(),
            ..Default::default()
        },
        &ctx,
        50,
    );
    for parents in [&[2, 3, 4][..], &[1, 3, 4], &[1, 2, 4], &[1, 2, 3]] {
        assert!(
            find(&all, parents).is_some(),
            "missing leave-one-out {parents:?}"
        );
    }
}

fn history_with_four() -> Vec<HypothesisSummary> {
    let mut h = history();
    h[4].promising = true;
    h
}

#[test]
fn combine_takes_the_best_change_per_knob() {
    let ctx = context(Phase::Combine, knobs());
    let mut hypotheses = history();
    hypotheses.push(summary(
        6,
        Phase::Validate,
        vec![lr(0.0003)],
        Some(0.56),
        true,
    ));
    let host = MockHost {
        hypotheses,
        ..Default::default()
    };
    let (out, _) = call(host, &ctx, 10);
    assert_eq!(out[0].parents, [1, 2, 3]);
    assert_eq!(out[0].get("lr"), Some(&Value::Float(0.003)));
    // Both lr values never appear together, but the other one still pairs.
    assert!(find(&out, &[6, 2]).is_some());
    assert!(find(&out, &[1, 6]).is_none());
}

#[test]
fn combine_skips_combinations_already_tried() {
    let ctx = context(Phase::Combine, knobs());
    let mut hypotheses = history();
    let mut tried = summary(
        7,
        Phase::Combine,
        vec![bn(), opt("adam"), lr(0.003)],
        Some(0.7),
        true,
    );
    tried.parents = vec![1, 2, 3];
    hypotheses.push(tried);
    hypotheses.push(summary(
        8,
        Phase::Combine,
        vec![lr(0.003), opt("adam")],
        None,
        false,
    ));
    let host = MockHost {
        hypotheses,
        ..Default::default()
    };
    let (out, host) = call(host, &ctx, 10);
    assert_contract(&ctx, &host, &out, 10);
    // #7 is itself promising and now the best part; it overlaps every single
    // change, so only pairs of single changes remain new.
    assert!(
        out.iter()
            .all(|h| h.parents != [1, 2, 3] && h.parents != [1, 2])
    );
    assert!(find(&out, &[1, 3]).is_some());
    assert!(find(&out, &[2, 3]).is_some());
}

#[test]
fn combine_falls_back_to_pairs_of_positive_effects() {
    let ctx = context(Phase::Combine, knobs());
    let hypotheses = vec![
        summary(1, Phase::Validate, vec![lr(0.003)], Some(0.60), true),
        summary(2, Phase::Validate, vec![opt("adam")], Some(0.52), false),
        summary(3, Phase::Validate, vec![bn()], Some(0.51), false),
        summary(4, Phase::Validate, vec![layers(3)], Some(0.40), false),
    ];
    let host = MockHost {
        hypotheses,
        ..Default::default()
    };
    let (out, host) = call(host, &ctx, 10);
    assert_contract(&ctx, &host, &out, 10);
    let parents: Vec<Vec<u64>> = out.iter().map(|h| h.parents.clone()).collect();
    assert_eq!(parents, [vec![1, 2], vec![1, 3], vec![2, 3]]);
    assert!(host.logs[0].1.contains("fallback"));
}

#[test]
fn combine_proposes_nothing_without_two_positive_effects() {
    let ctx = context(Phase::Combine, knobs());
    for hypotheses in [
        vec![],
        vec![
            summary(1, Phase::Validate, vec![lr(0.003)], Some(0.60), true),
            summary(2, Phase::Validate, vec![opt("adam")], Some(0.45), false),
        ],
    ] {
        let host = MockHost {
            hypotheses,
            ..Default::default()
        };
        let (out, host) = call(host, &ctx, 10);
        assert!(out.is_empty());
        assert_eq!(host.logs.len(), 1);
    }
}

#[test]
fn combine_is_deterministic() {
    let ctx = context(Phase::Combine, knobs());
    let host = MockHost {
        hypotheses: history_with_four(),
        ..Default::default()
    };
    let (a, _) = call(host.clone(), &ctx, 6);
    let (b, _) = call(host, &ctx, 6);
    assert_eq!(a, b);
}
