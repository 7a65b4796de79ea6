//! Fixtures for native tests of generators built on this crate: knobs of
//! every kind, a context, history rows, and the contract every answer must
//! meet. Compiled for this crate's tests and, with the feature `fixtures`,
//! for other crates' tests (`researcher` uses them).

use reagent_sdk::testing::MockHost;
use reagent_sdk::{
    Assignment, Context, Direction, Estimate, FloatRange, Hypothesis, HypothesisSummary, IntRange,
    KnobKind, KnobSpec, Level, Objective, Phase, TrialStatus, TrialSummary, Value,
};

pub fn float(name: &str, low: f64, high: f64, baseline: f64) -> KnobSpec {
    KnobSpec {
        name: name.into(),
        kind: KnobKind::Float(FloatRange { low, high }),
        baseline: Value::Float(baseline),
    }
}

pub fn log_float(name: &str, low: f64, high: f64, baseline: f64) -> KnobSpec {
    KnobSpec {
        name: name.into(),
        kind: KnobKind::LogFloat(FloatRange { low, high }),
        baseline: Value::Float(baseline),
    }
}

pub fn int(name: &str, low: i64, high: i64, baseline: i64) -> KnobSpec {
    KnobSpec {
        name: name.into(),
        kind: KnobKind::Int(IntRange { low, high }),
        baseline: Value::Int(baseline),
    }
}

pub fn categorical(name: &str, choices: &[&str], baseline: &str) -> KnobSpec {
    KnobSpec {
        name: name.into(),
        kind: KnobKind::Categorical(choices.iter().map(|c| c.to_string()).collect()),
        baseline: Value::Choice(baseline.into()),
    }
}

pub fn flag(name: &str, baseline: bool) -> KnobSpec {
    KnobSpec {
        name: name.into(),
        kind: KnobKind::Flag,
        baseline: Value::Flag(baseline),
    }
}

/// One knob of every kind.
pub fn knobs() -> Vec<KnobSpec> {
    vec![
        log_float("lr", 1e-4, 1.0, 1e-3),
        float("dropout", 0.0, 0.8, 0.5),
        int("layers", 1, 8, 2),
        categorical("optimizer", &["sgd", "adam", "adamw"], "sgd"),
        flag("use_bn", false),
    ]
}

pub fn context(phase: Phase, knobs: Vec<KnobSpec>) -> Context {
    Context {
        campaign: "test".into(),
        tags: vec![],
        objective: Objective {
            metric: "acc".into(),
            direction: Direction::Maximize,
        },
        knobs,
        phase,
        baseline: Some(Estimate {
            mean: 0.5,
            sd: 0.01,
            n: 3,
        }),
        noise: Some(0.02),
        seed: 7,
        round: 0,
        trials_done: 0,
        trials_left: 100,
    }
}

pub fn set(knob: &str, value: Value) -> Assignment {
    Assignment {
        knob: knob.into(),
        value,
    }
}

/// A hypothesis with one succeeded result of `mean` (when given), its effect
/// over a baseline of 0.5 and `promising` as given.
pub fn summary(
    id: u64,
    phase: Phase,
    assignments: Vec<Assignment>,
    mean: Option<f64>,
    promising: bool,
) -> HypothesisSummary {
    HypothesisSummary {
        id,
        title: format!("h{id}"),
        category: "test".into(),
        phase,
        assignments,
        parents: vec![],
        outcome: mean.map(|mean| Estimate {
            mean,
            sd: 0.0,
            n: 1,
        }),
        effect: mean.map(|m| m - 0.5),
        promising,
        trials: u32::from(mean.is_some()),
        failed: 0,
    }
}

pub fn trial(id: u64, h: &HypothesisSummary, objective: f64) -> TrialSummary {
    TrialSummary {
        id,
        hypothesis: h.id,
        phase: h.phase,
        assignments: h.assignments.clone(),
        seed: id,
        status: TrialStatus::Succeeded,
        objective: Some(objective),
        objective_stderr: None,
        failure: None,
    }
}

/// The common contract of every answer: within `max`, only changed knobs,
/// valid values, no duplicates, nothing already in `host`'s history, and
/// exactly one info line logged.
pub fn assert_contract(ctx: &Context, host: &MockHost, out: &[Hypothesis], max: u32) {
    assert!(out.len() <= max as usize, "{} > max {max}", out.len());
    let mut keys = std::collections::BTreeSet::new();
    for h in &host.hypotheses {
        keys.insert(full_key(ctx, &h.assignments));
    }
    for h in out {
        assert!(!h.assignments.is_empty(), "{}: no changes", h.title);
        assert!(!h.title.is_empty() && !h.rationale.is_empty());
        for a in &h.assignments {
            let knob = ctx.knob(&a.knob).expect("known knob");
            assert!(knob.accepts(&a.value), "{}: {:?} invalid", h.title, a);
            assert_ne!(
                a.value, knob.baseline,
                "{}: lists an unchanged knob",
                h.title
            );
        }
        assert!(
            keys.insert(full_key(ctx, &h.assignments)),
            "duplicate or already tried: {}",
            h.key()
        );
    }
    let infos = host.logs.iter().filter(|(l, _)| *l == Level::Info).count();
    assert_eq!(infos, 1, "logs: {:?}", host.logs);
}

/// Key of the full configuration, independent of how assignments are listed.
pub fn full_key(ctx: &Context, assignments: &[Assignment]) -> String {
    ctx.knobs
        .iter()
        .map(|k| {
            let v = assignments
                .iter()
                .find(|a| a.knob == k.name)
                .map_or(&k.baseline, |a| &a.value);
            format!("{}={}", k.name, v.render())
        })
        .collect::<Vec<_>>()
        .join(",")
}
