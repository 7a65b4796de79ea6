//! What holds whatever the evidence: three-phase without evidence, the
//! slate size, history, determinism, the other phases.

use reagent_sdk::testing::MockHost;
use reagent_sdk::{Phase, Value};

use super::*;

/// Evidence of every kind and a model that suggests ten valid changes.
fn busy_host() -> MockHost {
    let suggestions: Vec<String> = (1..=10)
        .map(|i| {
            format!(
                r#"{{"title": "dropout {i}", "rationale": "try it", "assignments": {{"dropout": {}}}}}"#,
                0.05 * i as f64
            )
        })
        .collect();
    MockHost {
        insights: vec![
            record(
                "a",
                &[],
                vec![set("lr", Value::Float(0.01))],
                0.03,
                (0.01, 0.05),
            ),
            record(
                "a",
                &[],
                vec![set("lr", Value::Float(0.01)), set("layers", Value::Int(4))],
                0.05,
                (0.03, 0.07),
            ),
            record(
                "b",
                &[],
                vec![set("use_bn", Value::Flag(true))],
                0.02,
                (-0.01, 0.05),
            ),
            failed(
                "c",
                vec![set("lr", Value::Float(0.003))],
                FailureClass::Divergence,
            ),
        ],
        ..answering(&format!(r#"{{"hypotheses": [{}]}}"#, suggestions.join(",")))
    }
}

#[test]
fn without_insights_or_a_language_model_it_proposes_what_three_phase_validate_does() {
    let ctx = context(Phase::Validate, knobs());
    for max in [0, 1, 3, 5, 9, 100] {
        let (out, host) = call(MockHost::default(), &ctx, max);
        assert_valid(&ctx, &host, &out, max);
        let theirs = three_phase(MockHost::default(), &ctx, max);
        assert_eq!(changes(&out), changes(&theirs), "max {max}");
        for (ours, theirs) in out.iter().zip(&theirs) {
            assert_eq!(ours.title, theirs.title);
            assert!(ours.rationale.starts_with(&theirs.rationale));
            assert!(ours.rationale.contains("No past campaign"));
        }
        let warnings = lines(&host, Level::Warn);
        if max == 0 {
            assert!(host.llm_prompts.is_empty() && warnings.is_empty());
        } else {
            assert_eq!(
                warnings,
                [
                    "language model unavailable, going on without it: no language model in this test host"
                ]
            );
        }
    }
}

#[test]
fn it_never_returns_more_than_max_and_gives_the_model_at_most_half() {
    let ctx = context(Phase::Validate, knobs());
    for max in 0..=16 {
        let (out, host) = call(busy_host(), &ctx, max);
        assert_valid(&ctx, &host, &out, max);
        assert_eq!(out.len(), max as usize, "there is enough to fill {max}");
        let from_model = out
            .iter()
            .filter(|h| h.rationale.starts_with("Suggested by the language model"))
            .count();
        assert_eq!(from_model, (max as usize / 2).max(1).min(max as usize));
        assert_eq!(host.llm_prompts.len(), usize::from(max > 0));
    }
}

#[test]
fn it_is_deterministic_for_the_same_seed() {
    let ctx = context(Phase::Validate, knobs());
    let (a, host_a) = call(busy_host(), &ctx, 9);
    let (b, host_b) = call(busy_host(), &ctx, 9);
    assert_eq!(a, b);
    assert_eq!(host_a.logs, host_b.logs);
    assert_eq!(host_a.llm_prompts, host_b.llm_prompts);
}

#[test]
fn nothing_already_in_history_is_proposed_again() {
    let ctx = context(Phase::Validate, knobs());
    let mut host = busy_host();
    host.hypotheses = vec![
        summary(
            1,
            Phase::Validate,
            vec![set("lr", Value::Float(0.01))],
            Some(0.52),
            false,
        ),
        summary(
            2,
            Phase::Validate,
            vec![set("dropout", Value::Float(0.05))],
            None,
            false,
        ),
    ];
    let (out, host) = call(host, &ctx, 12);
    assert_valid(&ctx, &host, &out, 12);
    assert!(
        lines(&host, Level::Warn).contains(
            &"rejected language-model suggestion 1 (\"dropout 1\"): this configuration was already tried in this campaign"
        ),
        "{:?}",
        host.logs
    );
    // The prompt told the model what was tried.
    let user = &host.llm_prompts[0].0[1].content;
    assert!(user.contains("- lr=0.01: effect +0.02"), "{user}");
    assert!(user.contains("- dropout=0.05: no result yet"), "{user}");
}

#[test]
fn combine_and_exploit_are_three_phases() {
    let lr = |x: f64| set("lr", Value::Float(x));
    let adam = set("optimizer", Value::Choice("adam".into()));
    let hypotheses = vec![
        summary(0, Phase::Validate, vec![], Some(0.5), false),
        summary(1, Phase::Validate, vec![lr(0.003)], Some(0.60), true),
        summary(2, Phase::Validate, vec![adam.clone()], Some(0.56), true),
        summary(
            3,
            Phase::Validate,
            vec![set("use_bn", Value::Flag(true))],
            Some(0.55),
            true,
        ),
        summary(4, Phase::Combine, vec![lr(0.003), adam], Some(0.66), true),
    ];
    let trials = hypotheses
        .iter()
        .map(|h| trial(h.id, h, h.outcome.as_ref().unwrap().mean))
        .collect();
    let host = MockHost {
        hypotheses,
        trials,
        ..busy_host()
    };
    for phase in [Phase::Combine, Phase::Exploit] {
        let ctx = context(phase, knobs());
        let (out, logged) = call(host.clone(), &ctx, 6);
        assert_valid(&ctx, &logged, &out, 6);
        assert!(!out.is_empty());
        assert_eq!(out, three_phase(host.clone(), &ctx, 6), "{phase:?}");
        assert!(logged.llm_prompts.is_empty(), "no model outside validate");
    }
}

#[test]
fn long_knob_names_still_give_titles_and_categories_the_host_accepts() {
    let name = |c: char| c.to_string().repeat(400);
    let ctx = context(
        Phase::Validate,
        vec![
            float(&name('a'), 0.0, 1.0, 0.5),
            float(&name('b'), 0.0, 1.0, 0.5),
            flag(&name('c'), false),
        ],
    );
    let host = MockHost {
        insights: vec![record(
            &"campaign".repeat(100),
            &[],
            vec![
                set(&name('a'), Value::Float(0.1)),
                set(&name('b'), Value::Float(0.9)),
                set(&name('c'), Value::Flag(true)),
            ],
            0.05,
            (0.02, 0.08),
        )],
        ..Default::default()
    };
    let (out, host) = call(host, &ctx, 6);
    assert_valid(&ctx, &host, &out, 6);
    assert_eq!(out[0].assignments.len(), 3);
    assert!(out[0].title.ends_with('…'));
    assert!(
        out.iter()
            .all(|h| h.title.len() <= 512 && h.category.len() <= 128)
    );
}
