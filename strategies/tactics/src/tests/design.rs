use std::collections::BTreeMap;

use reagent_sdk::testing::MockHost;
use reagent_sdk::{Phase, Value};

use super::*;
use crate::design::hypercube;

/// How often each value of `knob` appears in `configs`.
fn counts(ctx: &Context, configs: &[Vec<Value>], knob: &str) -> BTreeMap<String, usize> {
    let i = ctx.knobs.iter().position(|k| k.name == knob).unwrap();
    let mut out = BTreeMap::new();
    for c in configs {
        *out.entry(c[i].render()).or_insert(0) += 1;
    }
    out
}

#[test]
fn a_design_covers_every_knob_evenly_on_its_own_scale() {
    let ctx = context(Phase::Validate, knobs());
    let base = crate::common::baseline(&ctx);
    // 24 points: 3 choices × 8, 2 flag values × 12, 8 layer values × 3.
    let design = hypercube(&ctx, 24, 11, std::slice::from_ref(&base));
    assert_eq!(design.len(), 24);
    for c in &design {
        assert!(ctx.knobs.iter().zip(c).all(|(k, v)| k.accepts(v)), "{c:?}");
    }
    // Categorical and flag: equal shares.
    assert!(counts(&ctx, &design, "optimizer").values().all(|&n| n == 8));
    assert!(counts(&ctx, &design, "use_bn").values().all(|&n| n == 12));
    // Int 1..=8: every value three times.
    let layers = counts(&ctx, &design, "layers");
    assert_eq!(layers.len(), 8);
    assert!(layers.values().all(|&n| n == 3), "{layers:?}");
    // Log-float lr in [1e-4, 1]: one point per stratum of the log scale,
    // so a quarter of the points in each decade (a linear spread would put
    // all but one above 0.01).
    let lr: Vec<f64> = design.iter().map(|c| c[0].as_f64().unwrap()).collect();
    for decade in 0..4 {
        let (lo, hi) = (10f64.powi(decade - 4), 10f64.powi(decade - 3));
        let n = lr.iter().filter(|&&x| x >= lo && x < hi * 1.0001).count();
        assert!((5..=7).contains(&n), "decade {lo}..{hi}: {n} of 24: {lr:?}");
    }
    // Linear float dropout in [0, 0.8]: one point per stratum.
    let mut strata: Vec<usize> = design
        .iter()
        .map(|c| ((c[1].as_f64().unwrap() / 0.8 * 24.0).floor() as usize).min(23))
        .collect();
    strata.sort_unstable();
    strata.dedup();
    assert!(strata.len() >= 23, "{strata:?}");
}

#[test]
fn a_design_is_deterministic_for_a_seed() {
    let ctx = context(Phase::Validate, knobs());
    assert_eq!(hypercube(&ctx, 7, 3, &[]), hypercube(&ctx, 7, 3, &[]));
    assert_ne!(hypercube(&ctx, 7, 3, &[]), hypercube(&ctx, 7, 4, &[]));
    assert!(hypercube(&ctx, 0, 3, &[]).is_empty());
}

#[test]
fn validate_adds_a_design_after_every_knobs_first_step_on_its_first_call_only() {
    let ctx = context(Phase::Validate, knobs());
    // Five knobs, thirteen slots: five first steps, then eight design points.
    let (out, host) = call(MockHost::default(), &ctx, 13);
    assert_contract(&ctx, &host, &out, 13);
    let categories: Vec<&str> = out.iter().map(|h| h.category.as_str()).collect();
    assert_eq!(
        categories[..5],
        ["lr", "dropout", "layers", "optimizer", "use_bn"]
    );
    assert!(
        categories[5..].iter().all(|&c| c == "design"),
        "{categories:?}"
    );
    for h in &out[5..] {
        assert!(h.assignments.len() >= 3, "{:?}", h.assignments);
        assert!(h.title.starts_with("design point"), "{}", h.title);
        assert!(h.rationale.contains("Latin hypercube"));
    }
    assert!(
        host.logs[0].1.contains("8 design points"),
        "{:?}",
        host.logs
    );
    // Too small a slate for a step each way and a design: single changes only.
    let (out, _) = call(MockHost::default(), &ctx, 11);
    assert_eq!(out.len(), 11);
    assert!(out.iter().all(|h| h.category != "design"));
    // A later call (history holds the first slate) goes on with single steps.
    let history: Vec<HypothesisSummary> = out
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
    let (next, _) = call(host, &ctx, 13);
    assert!(!next.is_empty());
    assert!(next.iter().all(|h| h.category != "design"));
}
