//! A surrogate task fitted to a recorded campaign: a Gaussian process
//! (squared-exponential kernel over the knobs scaled to [0, 1], log scale
//! for log knobs, one-hot choices) on the recorded objective, its noise
//! taken from the recorded replicates, and the recorded failures as a
//! failing region (a configuration whose nearest recorded trial failed,
//! fails). Cheap to evaluate, and close to the campaign where it has data.

use serde::{Deserialize, Serialize};

use crate::strategy::{KnobKind, KnobSpec, Value};

use super::tasks::{Config, Failure, config_key};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Surrogate {
    /// Encoded recorded configurations that succeeded.
    pub points: Vec<Vec<f64>>,
    /// K⁻¹ y over them (y standardised).
    pub alpha: Vec<f64>,
    pub lengthscale: f64,
    pub y_mean: f64,
    pub y_sd: f64,
    /// Encoded recorded configurations that failed.
    pub failed: Vec<Vec<f64>>,
}

/// A configuration as a point: each knob in [0, 1], choices one-hot.
pub fn encode(knobs: &[KnobSpec], c: &Config) -> Vec<f64> {
    let mut out = Vec::new();
    for k in knobs {
        let v = c.get(&k.name).unwrap_or(&k.baseline);
        let x = |v: &Value| match v {
            Value::Float(x) => *x,
            Value::Int(i) => *i as f64,
            _ => f64::NAN,
        };
        match &k.kind {
            KnobKind::Float(r) => out.push((x(v) - r.low) / (r.high - r.low)),
            KnobKind::LogFloat(r) => {
                out.push((x(v).ln() - r.low.ln()) / (r.high.ln() - r.low.ln()))
            }
            KnobKind::Int(r) => out.push((x(v) - r.low as f64) / (r.high - r.low) as f64),
            KnobKind::Categorical(choices) => {
                for ch in choices {
                    out.push(f64::from(matches!(v, Value::Choice(s) if s == ch)));
                }
            }
            KnobKind::Flag => out.push(f64::from(matches!(v, Value::Flag(true)))),
        }
    }
    out
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum()
}

fn kernel(a: &[f64], b: &[f64], l: f64) -> f64 {
    (-sq_dist(a, b) / (2.0 * l * l)).exp()
}

/// Lower Cholesky factor of a symmetric positive definite matrix.
fn cholesky(m: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = m.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = m[i][i] - s;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (m[i][j] - s) / l[j][j];
            }
        }
    }
    Some(l)
}

/// Solves L Lᵀ x = b.
fn cho_solve(l: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    let n = b.len();
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    x
}

/// What a fit found, for the person who asked for it.
#[derive(Debug, Clone)]
pub struct Fit {
    pub surrogate: Surrogate,
    /// Noise sd (objective units): pooled over recorded replicates, or a
    /// tenth of the objective's spread when nothing was replicated.
    pub noise_sd: f64,
    pub replicated_groups: usize,
    pub succeeded: usize,
}

/// Fits a surrogate to `(configuration, loss or None when it failed)`.
pub fn fit(knobs: &[KnobSpec], trials: &[(Config, Option<f64>)]) -> anyhow::Result<Fit> {
    let ok: Vec<(&Config, f64)> = trials
        .iter()
        .filter_map(|(c, y)| y.filter(|y| y.is_finite()).map(|y| (c, y)))
        .collect();
    if ok.len() < 3 {
        anyhow::bail!(
            "the campaign has {} succeeded trials; a surrogate needs at least 3",
            ok.len()
        );
    }
    let n = ok.len() as f64;
    let y_mean = ok.iter().map(|(_, y)| y).sum::<f64>() / n;
    let spread = (ok.iter().map(|(_, y)| (y - y_mean).powi(2)).sum::<f64>() / n).sqrt();
    let y_sd = if spread > 0.0 { spread } else { 1.0 };
    // Replicates: trials of the same configuration.
    let mut groups: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for (c, y) in &ok {
        groups.entry(config_key(c)).or_default().push(*y);
    }
    let (mut ss, mut dof, mut replicated) = (0.0, 0usize, 0usize);
    for ys in groups.values().filter(|ys| ys.len() > 1) {
        let m = ys.iter().sum::<f64>() / ys.len() as f64;
        ss += ys.iter().map(|y| (y - m).powi(2)).sum::<f64>();
        dof += ys.len() - 1;
        replicated += 1;
    }
    let noise_sd = if dof > 0 && ss > 0.0 {
        (ss / dof as f64).sqrt()
    } else {
        0.1 * spread
    };
    let points: Vec<Vec<f64>> = ok.iter().map(|(c, _)| encode(knobs, c)).collect();
    let y: Vec<f64> = ok.iter().map(|(_, y)| (y - y_mean) / y_sd).collect();
    let nugget = ((noise_sd / y_sd).powi(2)).max(1e-6);
    // The lengthscale with the highest marginal likelihood on a grid.
    let mut best: Option<(f64, f64, Vec<f64>)> = None;
    for l in [0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.7, 1.0, 1.5, 2.5] {
        let k: Vec<Vec<f64>> = points
            .iter()
            .enumerate()
            .map(|(i, a)| {
                points
                    .iter()
                    .enumerate()
                    .map(|(j, b)| kernel(a, b, l) + if i == j { nugget } else { 0.0 })
                    .collect()
            })
            .collect();
        let Some(ch) = cholesky(&k) else { continue };
        let alpha = cho_solve(&ch, &y);
        let fit_term: f64 = y.iter().zip(&alpha).map(|(a, b)| a * b).sum();
        let log_det: f64 = (0..ch.len()).map(|i| ch[i][i].ln()).sum::<f64>() * 2.0;
        let lml = -0.5 * fit_term - 0.5 * log_det;
        if best.as_ref().is_none_or(|(b, ..)| lml > *b) {
            best = Some((lml, l, alpha));
        }
    }
    let Some((_, lengthscale, alpha)) = best else {
        anyhow::bail!(
            "the Gaussian process could not be fitted (no lengthscale gave a positive definite kernel)"
        );
    };
    let failed = trials
        .iter()
        .filter(|(_, y)| y.is_none())
        .map(|(c, _)| encode(knobs, c))
        .collect();
    Ok(Fit {
        surrogate: Surrogate {
            points,
            alpha,
            lengthscale,
            y_mean,
            y_sd,
            failed,
        },
        noise_sd,
        replicated_groups: replicated,
        succeeded: ok.len(),
    })
}

impl Surrogate {
    /// The posterior mean at `c`, or a recorded failure when the nearest
    /// recorded trial failed.
    pub fn truth(&self, knobs: &[KnobSpec], c: &Config) -> Result<f64, Failure> {
        let x = encode(knobs, c);
        let nearest = |ps: &[Vec<f64>]| {
            ps.iter()
                .map(|p| sq_dist(p, &x))
                .fold(f64::INFINITY, f64::min)
        };
        if !self.failed.is_empty() && nearest(&self.failed) < nearest(&self.points) {
            return Err(Failure::Recorded);
        }
        let m: f64 = self
            .points
            .iter()
            .zip(&self.alpha)
            .map(|(p, a)| kernel(p, &x, self.lengthscale) * a)
            .sum();
        Ok(self.y_mean + self.y_sd * m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::FloatRange;

    #[test]
    fn a_fit_reproduces_a_smooth_function_between_its_points() {
        let knobs = vec![KnobSpec {
            name: "x".into(),
            kind: KnobKind::Float(FloatRange {
                low: 0.0,
                high: 1.0,
            }),
            baseline: Value::Float(0.5),
        }];
        let cfg = |x: f64| -> Config { [("x".to_string(), Value::Float(x))].into() };
        let f = |x: f64| (x - 0.3).powi(2);
        let mut trials: Vec<(Config, Option<f64>)> = (0..=10)
            .map(|i| (cfg(i as f64 / 10.0), Some(f(i as f64 / 10.0))))
            .collect();
        trials.push((cfg(0.95), None));
        let fit = fit(&knobs, &trials).unwrap();
        for x in [0.25, 0.45, 0.65] {
            let got = fit.surrogate.truth(&knobs, &cfg(x)).unwrap();
            assert!((got - f(x)).abs() < 0.02, "{x}: {got} vs {}", f(x));
        }
        // Nearest to the failed trial: fails.
        assert_eq!(
            fit.surrogate.truth(&knobs, &cfg(0.96)),
            Err(Failure::Recorded)
        );
        assert!(fit.surrogate.truth(&knobs, &cfg(0.9)).is_ok());
    }
}
