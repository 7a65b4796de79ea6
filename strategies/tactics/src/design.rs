//! Design: space-filling configurations over every knob at once.
//!
//! Single changes from the baseline cannot see interactions: a learning
//! rate that only helps with another optimizer, a dropout that only helps
//! with more layers. A few configurations spread over the whole space show
//! them to the surrogate early, before exploit. The design is a Latin
//! hypercube in unit space: each knob's range is cut into `n` equal strata
//! and every stratum is used once, so each knob is covered evenly however
//! few points there are. Log-scale knobs are stratified on the log scale
//! (`to_unit`/`from_unit`), integer knobs and choices take equal shares of
//! the unit interval (every choice of a categorical knob appears about
//! `n / choices` times), and flags split it in two. Of a few random
//! hypercubes the one whose closest pair of points (counting the baseline
//! and everything already tried) is farthest apart is kept (maximin).

use reagent_sdk::{Context, Hypothesis, KnobKind, KnobSpec, Rng, Value};

use crate::common::{Config, Slate, changed_knobs, show, tidy};
use crate::surrogate::{Point, dist2};

/// Random hypercubes drawn; the most spread-out one is kept.
const RESTARTS: usize = 24;

/// The value of `knob` at unit position `u`, with equal shares per integer
/// or choice.
pub fn value_at(knob: &KnobSpec, u: f64) -> Value {
    let u = if u.is_finite() {
        u.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let share = |count: usize| ((u * count as f64).floor() as usize).min(count.saturating_sub(1));
    match &knob.kind {
        KnobKind::Float(_) | KnobKind::LogFloat(_) => tidy(knob, knob.from_unit(u)),
        KnobKind::Int(r) => {
            let count = usize::try_from(i128::from(r.high) - i128::from(r.low) + 1)
                .unwrap_or(usize::MAX)
                .max(1);
            knob.clamp(Value::Int(r.low.saturating_add(share(count) as i64)))
        }
        KnobKind::Categorical(choices) if !choices.is_empty() => {
            Value::Choice(choices[share(choices.len())].clone())
        }
        KnobKind::Categorical(_) => knob.baseline.clone(),
        KnobKind::Flag => Value::Flag(share(2) == 1),
    }
}

/// Encodes a configuration the way the surrogate does: unit position per
/// numeric knob, choice index per categorical knob or flag.
pub fn encode(ctx: &Context, config: &Config) -> Point {
    let coords = ctx
        .knobs
        .iter()
        .zip(config)
        .map(|(knob, value)| match (&knob.kind, value) {
            (KnobKind::Categorical(choices), Value::Choice(c)) => {
                choices.iter().position(|x| x == c).unwrap_or(0) as f64
            }
            _ => knob.to_unit(value).unwrap_or(0.5),
        })
        .collect();
    Point { coords }
}

/// Whether each knob is compared by equality (categorical, flag).
pub fn categorical_mask(ctx: &Context) -> Vec<bool> {
    ctx.knobs
        .iter()
        .map(|k| matches!(k.kind, KnobKind::Categorical(_) | KnobKind::Flag))
        .collect()
}

/// `n` space-filling configurations (a maximin Latin hypercube), kept away
/// from `avoid` (the baseline and what was tried). Deterministic for `seed`.
pub fn hypercube(ctx: &Context, n: usize, seed: u64, avoid: &[Config]) -> Vec<Config> {
    let d = ctx.knobs.len();
    if n == 0 || d == 0 {
        return Vec::new();
    }
    let mut rng = Rng::new(seed ^ 0x6c68_735f_6465_7369);
    let categorical = categorical_mask(ctx);
    let avoid: Vec<Point> = avoid.iter().map(|c| encode(ctx, c)).collect();
    let mut best: Option<(f64, Vec<Config>)> = None;
    for _ in 0..RESTARTS {
        let mut configs: Vec<Config> = vec![Vec::with_capacity(d); n];
        for knob in &ctx.knobs {
            let mut strata: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut strata);
            for (config, stratum) in configs.iter_mut().zip(strata) {
                let u = (stratum as f64 + rng.f64()) / n as f64;
                config.push(value_at(knob, u));
            }
        }
        let points: Vec<Point> = configs.iter().map(|c| encode(ctx, c)).collect();
        let mut closest = f64::INFINITY;
        for (i, p) in points.iter().enumerate() {
            for q in points[..i].iter().chain(&avoid) {
                closest = closest.min(dist2(p, q, &categorical));
            }
        }
        if best.as_ref().is_none_or(|b| closest > b.0) {
            best = Some((closest, configs));
        }
    }
    best.map(|b| b.1).unwrap_or_default()
}

/// Adds up to `count` of `configs` to `slate` as design-point hypotheses
/// (category `design`). Returns how many were added.
pub fn offer(ctx: &Context, slate: &mut Slate, configs: &[Config], count: usize) -> usize {
    let total = configs.len();
    let mut added = 0;
    for (i, config) in configs.iter().enumerate() {
        if added >= count || slate.is_full() {
            break;
        }
        let moves: Vec<String> = changed_knobs(ctx, config)
            .into_iter()
            .map(|k| {
                format!(
                    "{} {} → {}",
                    ctx.knobs[k].name,
                    show(&ctx.knobs[k].baseline),
                    show(&config[k])
                )
            })
            .collect();
        let listed = crate::common::first_few(&moves);
        let hypothesis = Hypothesis::new(format!("design point {} of {total}: {listed}", i + 1))
            .because(format!(
                "Space-filling design (a Latin hypercube over all {} knobs, {total} points): every knob's range is covered evenly so that effects single changes cannot see, such as one knob's best value depending on another, show up before exploit. Changes from baseline: {}.",
                ctx.knobs.len(),
                moves.join(", ")
            ))
            .category("design");
        if slate.push(config, hypothesis) {
            added += 1;
        }
    }
    added
}
