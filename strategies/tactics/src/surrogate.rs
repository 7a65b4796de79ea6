//! A small Gaussian-process surrogate of the objective, for ranking local
//! search candidates by expected improvement.
//!
//! Points are configurations encoded per knob: numeric knobs by their unit
//! position, categorical knobs and flags by their choice (two points differ
//! there by a fixed amount or not at all). The kernel is a squared
//! exponential in that distance; its length scale and the noise level are
//! picked from a small grid by marginal likelihood. Objective values are
//! oriented so that larger is better and standardised before fitting.

/// Squared distance a categorical or flag mismatch contributes (the same as
/// half the width of a numeric knob's range).
const MISMATCH: f64 = 0.25;
const LENGTH_SCALES: [f64; 4] = [0.1, 0.2, 0.4, 0.8];
/// Noise variance as a fraction of the (standardised) signal variance.
const NOISE_LEVELS: [f64; 2] = [0.03, 0.3];

/// An encoded configuration: a unit position per numeric knob, a choice
/// index per categorical knob or flag.
#[derive(Clone, Debug)]
pub struct Point {
    pub coords: Vec<f64>,
}

/// Squared distance between two encoded configurations.
pub fn dist2(a: &Point, b: &Point, categorical: &[bool]) -> f64 {
    a.coords
        .iter()
        .zip(&b.coords)
        .zip(categorical)
        .map(|((x, y), &cat)| {
            if cat {
                if x == y { 0.0 } else { MISMATCH }
            } else {
                (x - y) * (x - y)
            }
        })
        .sum()
}

pub struct Surrogate {
    points: Vec<Point>,
    categorical: Vec<bool>,
    /// Lower Cholesky factor of K + noise·I, row-major.
    chol: Vec<f64>,
    /// (K + noise·I)⁻¹ y.
    alpha: Vec<f64>,
    pub length_scale: f64,
    mean: f64,
    scale: f64,
    /// Best posterior mean at an observed point (standardised): the incumbent.
    incumbent: f64,
}

impl Surrogate {
    /// Fits on `points` with values `ys` (larger is better). `None` with too
    /// few points or no spread to learn from.
    pub fn fit(points: Vec<Point>, ys: &[f64], categorical: Vec<bool>) -> Option<Surrogate> {
        let n = points.len();
        if n < 3 || ys.len() != n {
            return None;
        }
        let mean = ys.iter().sum::<f64>() / n as f64;
        let var = ys.iter().map(|y| (y - mean) * (y - mean)).sum::<f64>() / n as f64;
        if var.is_nan() || var <= 1e-24 {
            return None;
        }
        let scale = var.sqrt();
        let z: Vec<f64> = ys.iter().map(|y| (y - mean) / scale).collect();
        let d2: Vec<f64> = (0..n * n)
            .map(|ij| dist2(&points[ij / n], &points[ij % n], &categorical))
            .collect();

        // (fit, length scale, Cholesky factor, alpha, the kernel matrix
        // without noise). Each length scale's kernel matrix is computed
        // once for both noise levels and kept for the incumbent: the same
        // numbers as recomputing it, for a third of the `exp` calls.
        type Fit = (f64, f64, Vec<f64>, Vec<f64>, std::rc::Rc<Vec<f64>>);
        let mut best: Option<Fit> = None;
        for &ls in &LENGTH_SCALES {
            let plain: std::rc::Rc<Vec<f64>> =
                std::rc::Rc::new(d2.iter().map(|&d| kernel(d, ls)).collect());
            for &noise in &NOISE_LEVELS {
                let mut k: Vec<f64> = plain.as_ref().clone();
                for i in 0..n {
                    k[i * n + i] += noise + 1e-9;
                }
                let Some(chol) = cholesky(k, n) else { continue };
                let alpha = solve(&chol, n, &z);
                let fit = -0.5 * z.iter().zip(&alpha).map(|(a, b)| a * b).sum::<f64>()
                    - (0..n).map(|i| chol[i * n + i].ln()).sum::<f64>();
                if best.as_ref().is_none_or(|b| fit > b.0) {
                    best = Some((fit, ls, chol, alpha, std::rc::Rc::clone(&plain)));
                }
            }
        }
        let (_, length_scale, chol, alpha, plain) = best?;
        let incumbent = (0..n)
            .map(|i| (0..n).map(|j| plain[i * n + j] * alpha[j]).sum::<f64>())
            .fold(f64::NEG_INFINITY, f64::max);
        Some(Surrogate {
            points,
            categorical,
            chol,
            alpha,
            length_scale,
            mean,
            scale,
            incumbent,
        })
    }

    /// Posterior mean and standard deviation at `x`, standardised.
    fn posterior(&self, x: &Point) -> (f64, f64) {
        let n = self.points.len();
        let k: Vec<f64> = self
            .points
            .iter()
            .map(|p| kernel(dist2(p, x, &self.categorical), self.length_scale))
            .collect();
        let mu = k.iter().zip(&self.alpha).map(|(a, b)| a * b).sum::<f64>();
        let v = forward(&self.chol, n, &k);
        let var = (1.0 - v.iter().map(|x| x * x).sum::<f64>()).max(1e-12);
        (mu, var.sqrt())
    }

    /// Predicted value at `x` in the caller's units, with its uncertainty.
    pub fn predict(&self, x: &Point) -> (f64, f64) {
        let (mu, sd) = self.posterior(x);
        (self.mean + self.scale * mu, self.scale * sd)
    }

    /// Expected improvement over the incumbent, in the caller's units.
    pub fn expected_improvement(&self, x: &Point) -> f64 {
        let (mu, sd) = self.posterior(x);
        let z = (mu - self.incumbent) / sd;
        self.scale * ((mu - self.incumbent) * normal_cdf(z) + sd * normal_pdf(z))
    }
}

fn kernel(d2: f64, length_scale: f64) -> f64 {
    (-0.5 * d2 / (length_scale * length_scale)).exp()
}

/// Cholesky factorisation of a symmetric positive-definite n×n matrix.
fn cholesky(mut a: Vec<f64>, n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut diag = a[j * n + j];
        for k in 0..j {
            diag -= a[j * n + k] * a[j * n + k];
        }
        if diag.is_nan() || diag <= 0.0 {
            return None;
        }
        let diag = diag.sqrt();
        a[j * n + j] = diag;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / diag;
        }
        for i in 0..j {
            a[i * n + j] = 0.0;
        }
    }
    Some(a)
}

/// Solves L v = b.
fn forward(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut v = vec![0.0; n];
    for i in 0..n {
        let s = (0..i).map(|k| l[i * n + k] * v[k]).sum::<f64>();
        v[i] = (b[i] - s) / l[i * n + i];
    }
    v
}

/// Solves L Lᵀ x = b.
fn solve(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let v = forward(l, n, b);
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s = (i + 1..n).map(|k| l[k * n + i] * x[k]).sum::<f64>();
        x[i] = (v[i] - s) / l[i * n + i];
    }
    x
}

fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Standard normal CDF (Abramowitz & Stegun 7.1.26, error < 1.5e-7).
fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(x: f64) -> Point {
        Point { coords: vec![x] }
    }

    #[test]
    fn recovers_a_smooth_curve_and_prefers_its_peak() {
        let xs: Vec<f64> = (0..9).map(|i| i as f64 / 8.0).collect();
        let ys: Vec<f64> = xs.iter().map(|x| -(x - 0.6) * (x - 0.6)).collect();
        let model = Surrogate::fit(xs.iter().map(|&x| pt(x)).collect(), &ys, vec![false]).unwrap();
        let (near_peak, _) = model.predict(&pt(0.6));
        let (far, _) = model.predict(&pt(0.05));
        assert!(near_peak > far);
        assert!((near_peak - 0.0).abs() < 0.02, "{near_peak}");
        assert!(model.expected_improvement(&pt(0.6)) > model.expected_improvement(&pt(0.0)));
    }

    #[test]
    fn refuses_too_little_or_flat_data() {
        assert!(Surrogate::fit(vec![pt(0.1), pt(0.2)], &[1.0, 2.0], vec![false]).is_none());
        let flat = Surrogate::fit(vec![pt(0.1), pt(0.2), pt(0.3)], &[1.0; 3], vec![false]);
        assert!(flat.is_none());
    }

    #[test]
    fn normal_cdf_is_accurate() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-1.0) - 0.158_655_25).abs() < 1e-6);
    }
}
