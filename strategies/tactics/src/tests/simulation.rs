//! A small end-to-end optimisation: validate → combine → exploit on a
//! synthetic objective, feeding results back the way the host would. It
//! catches a strategy that stops making progress.

use reagent_sdk::testing::MockHost;
use reagent_sdk::{Estimate, Phase, Rng, Value};

use super::*;

const NOISE_SD: f64 = 0.04;
/// An effect counts as promising above this (a little over 2 sd of the
/// difference between one trial and the baseline mean).
const THRESHOLD: f64 = 0.1;

/// Larger is better. The best learning rate depends on the optimizer and
/// dropout matters more when the learning rate is off; the optimum (1.25)
/// is at lr 0.0023, dropout 0.37, 6 layers, adamw, batch norm on.
fn objective(ctx: &Context, config: &[Assignment]) -> f64 {
    let get = |name: &str| {
        config.iter().find(|a| a.knob == name).map_or_else(
            || ctx.knob(name).unwrap().baseline.clone(),
            |a| a.value.clone(),
        )
    };
    let lr = get("lr").as_f64().unwrap();
    let dropout = get("dropout").as_f64().unwrap();
    let layers = get("layers").as_f64().unwrap();
    let (bonus, best_lr): (f64, f64) = match get("optimizer").as_str().unwrap() {
        "adamw" => (0.2, 0.0023),
        "adam" => (0.15, 0.0031),
        _ => (0.0, 0.07),
    };
    let bn = if get("use_bn").as_bool().unwrap() {
        0.05
    } else {
        0.0
    };
    let lr_miss = lr.log10() - best_lr.log10();
    1.0 - 0.3 * lr_miss.powi(2)
        - 2.0 * (dropout - 0.37).powi(2) * (1.0 + 2.0 * lr_miss.abs())
        - 0.02 * (layers - 6.0).powi(2)
        + bonus
        + bn
}

struct Sim {
    ctx: Context,
    host: MockHost,
    noise: Rng,
    base_mean: f64,
}

impl Sim {
    fn new(noise_seed: u64) -> Sim {
        let ctx = context(Phase::Validate, knobs());
        let mut sim = Sim {
            ctx,
            host: MockHost::default(),
            noise: Rng::new(noise_seed),
            base_mean: 0.0,
        };
        let base = summary(0, Phase::Validate, vec![], None, false);
        let ys: Vec<f64> = (0..3).map(|_| sim.measure(&[])).collect();
        sim.base_mean = ys.iter().sum::<f64>() / 3.0;
        for y in ys {
            let id = sim.host.trials.len() as u64;
            sim.host.trials.push(trial(id, &base, y));
        }
        sim.host.hypotheses.push(HypothesisSummary {
            outcome: Some(Estimate {
                mean: sim.base_mean,
                sd: NOISE_SD,
                n: 3,
            }),
            effect: Some(0.0),
            trials: 3,
            ..base
        });
        sim.ctx.baseline = Some(Estimate {
            mean: sim.base_mean,
            sd: NOISE_SD,
            n: 3,
        });
        sim.ctx.noise = Some(THRESHOLD);
        sim
    }

    fn measure(&mut self, config: &[Assignment]) -> f64 {
        objective(&self.ctx, config) + NOISE_SD * self.noise.normal()
    }

    /// One call of the strategy, then one trial per proposal.
    fn round(&mut self, phase: Phase, max: u32) -> usize {
        self.ctx.phase = phase;
        self.ctx.seed = 1000 + u64::from(self.ctx.round);
        let (out, host) = call(std::mem::take(&mut self.host), &self.ctx, max);
        assert_contract(&self.ctx, &host, &out, max);
        self.host = MockHost {
            logs: vec![],
            ..host
        };
        self.ctx.round += 1;
        for h in &out {
            let y = self.measure(&h.assignments);
            let summary = HypothesisSummary {
                id: self.host.hypotheses.len() as u64,
                title: h.title.clone(),
                category: h.category.clone(),
                phase,
                assignments: h.assignments.clone(),
                parents: h.parents.clone(),
                outcome: Some(Estimate {
                    mean: y,
                    sd: 0.0,
                    n: 1,
                }),
                effect: Some(y - self.base_mean),
                promising: y - self.base_mean > THRESHOLD,
                trials: 1,
                failed: 0,
            };
            let id = self.host.trials.len() as u64;
            self.host.trials.push(trial(id, &summary, y));
            self.host.hypotheses.push(summary);
        }
        self.ctx.trials_done += out.len() as u32;
        out.len()
    }

    /// True objective of the configuration with the best measured mean.
    fn best_true_value(&self) -> f64 {
        let best = self
            .host
            .hypotheses
            .iter()
            .max_by(|a, b| {
                let (x, y) = (
                    a.outcome.as_ref().unwrap().mean,
                    b.outcome.as_ref().unwrap().mean,
                );
                x.total_cmp(&y)
            })
            .unwrap();
        objective(&self.ctx, &best.assignments)
    }
}

#[test]
fn simulated_campaign_improves_clearly_over_baseline() {
    for noise_seed in [42, 7, 2024] {
        campaign(noise_seed);
    }
}

fn campaign(noise_seed: u64) {
    let mut sim = Sim::new(noise_seed);
    let baseline = objective(&sim.ctx, &[]);
    let optimum = objective(
        &sim.ctx,
        &[
            set("lr", Value::Float(0.0023)),
            set("dropout", Value::Float(0.37)),
            set("layers", Value::Int(6)),
            set("optimizer", Value::Choice("adamw".into())),
            set("use_bn", Value::Flag(true)),
        ],
    );

    assert_eq!(sim.round(Phase::Validate, 10), 10);
    let after_validate = sim.best_true_value();
    assert!(sim.round(Phase::Combine, 6) >= 2);
    let after_combine = sim.best_true_value();
    for _ in 0..5 {
        assert!(sim.round(Phase::Exploit, 6) > 0);
    }
    let last = sim.best_true_value();
    let progress = (last - baseline) / (optimum - baseline);
    eprintln!(
        "noise seed {noise_seed}: baseline {baseline:.3}, validate {after_validate:.3}, combine {after_combine:.3}, final {last:.3}, optimum {optimum:.3} ({:.0}% of the gap closed, {} trials)",
        100.0 * progress,
        sim.ctx.trials_done
    );
    assert!(
        last > after_validate && last > after_combine,
        "exploiting helped"
    );
    assert!(
        progress > 0.9 && last > optimum - 0.15,
        "closed only {:.0}% of the gap",
        100.0 * progress
    );
}
