//! Proposals led by past campaigns' records.

use reagent_sdk::testing::MockHost;
use reagent_sdk::{FailureClass, Phase, Value};

use super::*;

fn lr(x: f64) -> Assignment {
    set("lr", Value::Float(x))
}

fn with_insights(insights: Vec<Insight>) -> MockHost {
    MockHost {
        insights,
        ..Default::default()
    }
}

#[test]
fn insight_led_proposals_come_first_and_cite_the_campaign() {
    let mut ctx = context(Phase::Validate, knobs());
    ctx.tags = vec!["ranking".into()];
    let host = with_insights(vec![record(
        "ranker-v1",
        &["ranking", "dcn"],
        vec![lr(0.01)],
        0.03,
        (0.01, 0.05),
    )]);
    let (out, host) = call(host, &ctx, 6);
    assert_valid(&ctx, &host, &out, 6);
    assert_eq!(changes(&out)[0], "lr=0.01");
    assert_eq!(out[0].title, "lr 0.001 → 0.01, as in ranker-v1");
    assert_eq!(out[0].category, "lr");
    assert!(
        out[0].rationale.starts_with(
            "In campaign ranker-v1 (tags ranking, dcn; shares `ranking` with this one), setting lr 0.01 improved acc by 0.03 (95% CI [0.01, 0.05], 6 trials, 2.5 CPU-hours). The interval lies above zero"
        ),
        "{}",
        out[0].rationale
    );
    // Then every knob no record mentions, then lr's own steps.
    assert_eq!(
        changes(&out)[1..],
        [
            "dropout=0.7",
            "layers=3",
            "optimizer=adam",
            "use_bn=true",
            "lr=0.003"
        ]
    );
    assert!(out[1].rationale.contains("No past campaign"));
    assert!(!out[5].rationale.contains("No past campaign"));
    assert!(
        info(&host).starts_with(
            "researcher validate: 1 from insights (1 transferred, 0 far from a value that helped, 0 interactions), 0 from the language model (unavailable), 5 exploratory (max 6"
        ),
        "{}",
        info(&host)
    );
}

#[test]
fn whole_changes_from_campaigns_sharing_a_tag_come_first_then_far_knobs() {
    let mut ctx = context(Phase::Validate, knobs());
    ctx.tags = vec!["ranking".into()];
    let host = with_insights(vec![
        record(
            "vision",
            &["images"],
            vec![set("dropout", Value::Float(0.2))],
            0.05,
            (0.03, 0.07),
        ),
        record(
            "ranker-v1",
            &["ranking"],
            vec![lr(0.01), set("layers", Value::Int(4))],
            0.02,
            (0.005, 0.035),
        ),
        record(
            "ranker-v2",
            &["ranking"],
            vec![set("optimizer", Value::Choice("adam".into()))],
            0.01,
            (0.002, 0.018),
        ),
    ]);
    let (out, host) = call(host, &ctx, 8);
    assert_valid(&ctx, &host, &out, 8);
    assert_eq!(
        changes(&out),
        [
            // Transfers: the related campaign's whole change, its single
            // change, then the unrelated campaign's (stronger) one.
            "layers=4,lr=0.01",
            "optimizer=adam",
            "dropout=0.2",
            // Knobs far from what helped, on their own.
            "lr=0.01",
            "layers=4",
            // Two slots kept for exploration: the unmentioned knob first.
            "use_bn=true",
            "lr=0.003",
            "dropout=0.7",
        ][..],
        "{:#?}",
        out
    );
    assert_eq!(out[0].category, "transfer");
    assert!(out[0].rationale.contains("shares `ranking`"));
    assert!(!out[2].rationale.contains("shares"));
    assert!(
        out[3].rationale.starts_with(
            "lr is 0.001 here, 10× below 0.01, the value with which campaign ranker-v1 (together with layers 4) improved acc by 0.02"
        ),
        "{}",
        out[3].rationale
    );
    assert!(
        out[4]
            .rationale
            .starts_with("layers is 2 here, 29% of its range below 4,"),
        "{}",
        out[4].rationale
    );
    assert_eq!(
        out[4].title,
        "layers 2 → 4, toward what helped in ranker-v1"
    );
}

#[test]
fn a_knob_far_from_a_value_that_helped_is_moved_there_and_a_near_one_is_not() {
    let ctx = context(Phase::Validate, knobs());
    let host = with_insights(vec![
        record("old", &[], vec![lr(0.004)], 0.03, (-0.01, 0.07)),
        record(
            "old",
            &[],
            vec![set("dropout", Value::Float(0.45))],
            0.02,
            (-0.01, 0.05),
        ),
        record(
            "old",
            &[],
            vec![set("optimizer", Value::Choice("adamw".into()))],
            0.01,
            (-0.01, 0.03),
        ),
    ]);
    let (out, host) = call(host, &ctx, 5);
    assert_valid(&ctx, &host, &out, 5);
    assert_eq!(changes(&out)[..2], ["lr=0.004", "optimizer=adamw"]);
    assert!(
        out[0].rationale.starts_with(
            "lr is 0.001 here, 4× below 0.004, the value with which campaign old improved acc by 0.03 (95% CI [-0.01, 0.07], 6 trials)."
        ),
        "{}",
        out[0].rationale
    );
    assert!(out[0].rationale.ends_with("so the evidence is weak."));
    assert!(
        out[1]
            .rationale
            .starts_with("optimizer is sgd here, rather than adamw,")
    );
    // dropout 0.45 is within an eighth of the range of 0.5: not far.
    assert!(changes(&out).iter().all(|c| c != "dropout=0.45"));
    assert!(info(&host).contains("0 transferred, 2 far from a value that helped"));
}

#[test]
fn an_interaction_seen_before_is_proposed_as_a_combination() {
    let ctx = context(Phase::Validate, knobs());
    let adam = || set("optimizer", Value::Choice("adam".into()));
    let singles = vec![
        record("old", &[], vec![lr(0.003)], -0.02, (-0.04, 0.0)),
        record("old", &[], vec![adam()], -0.03, (-0.05, -0.01)),
    ];

    // Not significant on its own, but clearly better than either part.
    let mut insights = singles.clone();
    insights.push(record(
        "old",
        &[],
        vec![lr(0.003), adam()],
        0.01,
        (-0.01, 0.03),
    ));
    let (out, host) = call(with_insights(insights), &ctx, 4);
    assert_valid(&ctx, &host, &out, 4);
    assert_eq!(changes(&out)[0], "lr=0.003,optimizer=adam");
    assert_eq!(out[0].category, "interaction");
    assert_eq!(
        out[0].title,
        "lr 0.001 → 0.003, optimizer sgd → adam together (interaction seen in old)"
    );
    assert!(
        out[0].rationale.contains(
            "Alone, the best records of its knobs are lr -0.02, optimizer -0.03: together they did better than any part, an interaction."
        ),
        "{}",
        out[0].rationale
    );
    // The parts alone hurt: neither is proposed from the combination.
    assert!(
        changes(&out)
            .iter()
            .all(|c| c != "lr=0.003" && c != "optimizer=adam")
    );
    assert!(info(&host).contains("1 interactions"));

    // Significant and more than the sum of its parts: a transfer that says so.
    let mut insights = singles;
    insights.push(record(
        "old",
        &[],
        vec![lr(0.003), adam()],
        0.04,
        (0.02, 0.06),
    ));
    let (out, host) = call(with_insights(insights), &ctx, 4);
    assert_valid(&ctx, &host, &out, 4);
    assert_eq!(changes(&out)[0], "lr=0.003,optimizer=adam");
    assert!(
        out[0]
            .rationale
            .contains("better than any part and more than their sum, an interaction"),
        "{}",
        out[0].rationale
    );
    assert_eq!(
        out.iter().filter(|h| h.get("optimizer").is_some()).count(),
        1
    );
}

#[test]
fn a_known_failure_is_not_proposed_first() {
    let ctx = context(Phase::Validate, knobs());
    let insights = vec![
        record("a", &[], vec![lr(0.01)], 0.03, (0.01, 0.05)),
        failed("b", vec![lr(0.01)], FailureClass::Divergence),
    ];
    let (out, host) = call(with_insights(insights.clone()), &ctx, 3);
    assert_valid(&ctx, &host, &out, 3);
    assert!(changes(&out).iter().all(|c| c != "lr=0.01"), "{out:#?}");

    let (out, host) = call(with_insights(insights), &ctx, 20);
    assert_valid(&ctx, &host, &out, 20);
    let last = out.last().unwrap();
    assert_eq!(last.key(), "lr=0.01");
    assert!(
        last.rationale.ends_with(
            "A past campaign recorded this change as a failure (divergence in campaign b), so it comes last."
        ),
        "{}",
        last.rationale
    );
    assert!(info(&host).contains("1 recorded failures last"));
}

#[test]
fn values_outside_this_campaigns_space_are_not_proposed() {
    let ctx = context(Phase::Validate, knobs());
    let host = with_insights(vec![
        record("old", &[], vec![lr(5.0)], 0.05, (0.02, 0.08)),
        record(
            "old",
            &[],
            vec![set("dropout", Value::Float(0.2)), lr(5.0)],
            0.06,
            (0.02, 0.1),
        ),
        record("old", &[], vec![lr(f64::NAN)], 0.05, (0.02, 0.08)),
        record("old", &[], vec![lr(0.01)], f64::NAN, (0.02, 0.08)),
    ]);
    let (out, host) = call(host, &ctx, 100);
    assert_valid(&ctx, &host, &out, 100);
    // The same single steps as three-phase (dealt in another order: the
    // knobs no applicable record mentions first).
    let mut ours = changes(&out);
    let mut theirs = changes(&three_phase(MockHost::default(), &ctx, 100));
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
    assert!(
        info(&host).contains("0 from insights,")
            && info(&host).contains("4 insight records read, 4 not applicable here"),
        "{}",
        info(&host)
    );
}

#[test]
fn knobs_without_insights_are_still_explored() {
    let ctx = context(Phase::Validate, knobs());
    let values = [
        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.0002, 0.0003, 0.003, 0.005,
    ];
    let insights = values
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let effect = 0.1 - 0.005 * i as f64;
            record(
                "old",
                &[],
                vec![lr(x)],
                effect,
                (effect / 2.0, effect * 1.5),
            )
        })
        .collect();
    let (out, host) = call(with_insights(insights), &ctx, 8);
    assert_valid(&ctx, &host, &out, 8);
    assert_eq!(out.iter().filter(|h| h.get("lr").is_some()).count(), 6);
    assert_eq!(changes(&out)[6..], ["dropout=0.7", "layers=3"]);
    assert!(out[6].rationale.ends_with(
        "No past campaign in this workspace recorded a change of dropout, so this explores it."
    ));
}

#[test]
fn a_related_campaigns_replicated_best_combination_is_tried_even_when_its_interval_includes_zero() {
    let mut ctx = context(Phase::Validate, knobs());
    ctx.tags = vec!["ranking".into()];
    let adam = || set("optimizer", Value::Choice("adam".into()));
    let once = |effect| Insight {
        trials: 1,
        ..record(
            "ranker-v1",
            &["ranking"],
            vec![lr(0.02), adam()],
            effect,
            (-0.05, 0.09),
        )
    };
    let insights = vec![
        // Larger effect, but measured once.
        once(0.03),
        // The winner: confirmed with replicates, interval still includes zero.
        record(
            "ranker-v1",
            &["ranking"],
            vec![lr(0.01), adam()],
            0.02,
            (-0.04, 0.08),
        ),
        // Unrelated campaign: not transferred on weak evidence.
        record(
            "other",
            &["vision"],
            vec![lr(0.005), adam()],
            0.05,
            (-0.02, 0.12),
        ),
    ];
    let (out, host) = call(with_insights(insights), &ctx, 6);
    assert_valid(&ctx, &host, &out, 6);
    assert_eq!(
        changes(&out)[..2],
        ["lr=0.01,optimizer=adam", "lr=0.02,optimizer=adam"]
    );
    assert_eq!(out[0].category, "transfer");
    assert!(
        out[0]
            .rationale
            .contains("The interval includes zero, but it is among the best configurations a related campaign measured more than once"),
        "{}",
        out[0].rationale
    );
    assert!(
        !out[1].rationale.contains("more than once"),
        "{}",
        out[1].rationale
    );
    assert!(changes(&out).iter().all(|c| c != "lr=0.005,optimizer=adam"));
    assert!(info(&host).contains("2 transferred"), "{}", info(&host));
}
