//! The statistics the host computes from recorded trials: summaries, the
//! noise threshold that decides "promising", and the confirmation effect
//! with a 95% confidence interval (Welch).

use serde::{Deserialize, Serialize};

use crate::strategy::Direction;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub mean: f64,
    /// Sample standard deviation (0 when n < 2).
    pub sd: f64,
    pub n: u32,
}

pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = if values.len() < 2 {
        0.0
    } else {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    };
    Some(Summary {
        mean,
        sd,
        n: values.len() as u32,
    })
}

/// Improvement of `value` over `baseline`, positive = better.
pub fn improvement(direction: Direction, baseline: f64, value: f64) -> f64 {
    match direction {
        Direction::Minimize => baseline - value,
        Direction::Maximize => value - baseline,
    }
}

/// The per-run noise σ: training randomness (the baseline replicates'
/// spread) and evaluation-set noise (the mean standard error the job
/// reported) combined in quadrature.
pub fn noise_sigma(baseline_sd: f64, eval_stderr: Option<f64>) -> f64 {
    let e = eval_stderr.unwrap_or(0.0);
    (baseline_sd.powi(2) + e.powi(2)).sqrt()
}

/// The effect a mean over `n1` runs must clear against a baseline mean
/// over `n0` runs: `2·σ·√(1/n₁ + 1/n₀)`.
pub fn threshold(sigma: f64, n1: u32, n0: u32) -> f64 {
    if n1 == 0 || n0 == 0 {
        return f64::INFINITY;
    }
    2.0 * sigma * (1.0 / n1 as f64 + 1.0 / n0 as f64).sqrt()
}

/// Two-sided 97.5% quantile of Student's t with `df` degrees of freedom.
pub fn t975(df: f64) -> f64 {
    const TABLE: [(f64, f64); 16] = [
        (1.0, 12.706),
        (2.0, 4.303),
        (3.0, 3.182),
        (4.0, 2.776),
        (5.0, 2.571),
        (6.0, 2.447),
        (7.0, 2.365),
        (8.0, 2.306),
        (9.0, 2.262),
        (10.0, 2.228),
        (12.0, 2.179),
        (15.0, 2.131),
        (20.0, 2.086),
        (30.0, 2.042),
        (60.0, 2.000),
        (120.0, 1.980),
    ];
    if !df.is_finite() || df > 120.0 {
        return 1.96;
    }
    let df = df.max(1.0);
    for w in TABLE.windows(2) {
        let ((d0, t0), (d1, t1)) = (w[0], w[1]);
        if df <= d1 {
            // Interpolate in 1/df, which is close to linear for t.
            let x = (1.0 / df - 1.0 / d0) / (1.0 / d1 - 1.0 / d0);
            return t0 + x * (t1 - t0);
        }
    }
    1.96
}

/// An effect with its 95% confidence interval, positive = better.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    pub estimate: f64,
    pub ci95_low: f64,
    pub ci95_high: f64,
}

/// Effect of `treated` over `baseline` (Welch's t interval). `extra_var`
/// adds evaluation-set variance per run for metrics that are deterministic
/// across seeds.
pub fn effect(
    direction: Direction,
    baseline: &Summary,
    treated: &Summary,
    extra_var: f64,
) -> Effect {
    let estimate = improvement(direction, baseline.mean, treated.mean);
    let v0 = (baseline.sd.powi(2) + extra_var) / baseline.n.max(1) as f64;
    let v1 = (treated.sd.powi(2) + extra_var) / treated.n.max(1) as f64;
    let se = (v0 + v1).sqrt();
    let df = if v0 + v1 == 0.0 {
        f64::INFINITY
    } else {
        let d0 = if baseline.n > 1 {
            v0 * v0 / (baseline.n - 1) as f64
        } else {
            0.0
        };
        let d1 = if treated.n > 1 {
            v1 * v1 / (treated.n - 1) as f64
        } else {
            0.0
        };
        if d0 + d1 == 0.0 {
            f64::INFINITY
        } else {
            (v0 + v1).powi(2) / (d0 + d1)
        }
    };
    let half = t975(df) * se;
    Effect {
        estimate,
        ci95_low: estimate - half,
        ci95_high: estimate + half,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_and_thresholds() {
        let s = summarize(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.mean, s.n), (2.0, 3));
        assert!((s.sd - 1.0).abs() < 1e-12);
        assert_eq!(summarize(&[5.0]).unwrap().sd, 0.0);
        assert!((threshold(1.0, 1, 3) - 2.0 * (4.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((noise_sigma(3.0, Some(4.0)) - 5.0).abs() < 1e-12);
        assert_eq!(improvement(Direction::Minimize, 0.8, 0.7), 0.8 - 0.7);
    }

    #[test]
    fn t_quantiles_match_the_table_and_interpolate() {
        assert!((t975(1.0) - 12.706).abs() < 1e-9);
        assert!((t975(10.0) - 2.228).abs() < 1e-9);
        assert!(t975(11.0) < 2.228 && t975(11.0) > 2.179);
        assert_eq!(t975(1e6), 1.96);
    }

    #[test]
    fn welch_interval_covers_a_clear_effect() {
        let b = Summary {
            mean: 0.80,
            sd: 0.01,
            n: 3,
        };
        let t = Summary {
            mean: 0.75,
            sd: 0.01,
            n: 3,
        };
        let e = effect(Direction::Minimize, &b, &t, 0.0);
        assert!((e.estimate - 0.05).abs() < 1e-12);
        // se = sqrt(2 * 1e-4 / 3) ≈ 0.00816; df = 4 → t = 2.776
        assert!((e.ci95_high - e.ci95_low - 2.0 * 2.776 * (2e-4f64 / 3.0).sqrt()).abs() < 1e-9);
        assert!(e.ci95_low > 0.0);
    }
}
