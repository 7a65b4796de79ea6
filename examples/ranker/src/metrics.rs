//! Evaluation metrics: logloss, normalized entropy (NE), AUC, NDCG@10, and
//! their standard errors over queries.
//!
//! Conventions:
//! - Clicks are labels > 0; predicted probabilities are `sigmoid(score)`.
//! - NE = mean logloss / entropy of the evaluated set's own click rate, so a
//!   constant predictor of that rate scores exactly 1 and lower is better.
//! - AUC pools all rows of the set; tied scores count one half. A set with
//!   only one class scores 0.5.
//! - NDCG@10 uses gains `2^label - 1` and discounts `1 / log2(rank + 1)`,
//!   per query, averaged over the queries that have at least one positive
//!   label. Tied scores get the expected DCG over random tie-breaking: each
//!   rank of a tie block receives the block's mean gain.
//! - Standard errors treat queries as the sampling unit: for NDCG the
//!   standard error of the mean of per-query values; for NE the delta-method
//!   (ratio estimator) standard error of `sum logloss / rows` over queries,
//!   divided by the base entropy.

use std::ops::Range;

/// The rank cut-off of NDCG.
pub const NDCG_K: usize = 10;

/// Logloss of one row from its score (logit) and binary label, computed
/// stably as `softplus(z) - y z`.
pub fn logloss_of_logit(z: f64, y: f64) -> f64 {
    let softplus = z.max(0.0) + (-z.abs()).exp().ln_1p();
    softplus - y * z
}

/// Binary entropy (nats) of a click rate; 0 at 0 and 1.
pub fn entropy(p: f64) -> f64 {
    if p <= 0.0 || p >= 1.0 {
        return 0.0;
    }
    -(p * p.ln() + (1.0 - p) * (1.0 - p).ln())
}

/// AUC of scores against binary labels (ties count one half).
pub fn auc(scores: &[f32], clicks: &[f32]) -> f64 {
    let n = scores.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let positives = clicks.iter().filter(|&&c| c > 0.0).count() as f64;
    let negatives = n as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return 0.5;
    }
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && scores[order[j]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j share their mean.
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        for &r in &order[i..j] {
            if clicks[r] > 0.0 {
                rank_sum += mean_rank;
            }
        }
        i = j;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

fn gain(label: f32) -> f64 {
    2f64.powf(label.max(0.0) as f64) - 1.0
}

fn discount(rank0: usize) -> f64 {
    1.0 / ((rank0 + 2) as f64).log2()
}

/// NDCG@k of one query; `None` if it has no positive label.
pub fn ndcg_at(scores: &[f32], labels: &[f32], k: usize) -> Option<f64> {
    let mut ideal: Vec<f64> = labels.iter().map(|&l| gain(l)).collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(r, g)| g * discount(r))
        .sum();
    if idcg <= 0.0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut dcg = 0.0;
    let mut i = 0;
    while i < order.len() && i < k {
        let mut j = i + 1;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            j += 1;
        }
        let mean_gain = order[i..j].iter().map(|&r| gain(labels[r])).sum::<f64>() / (j - i) as f64;
        dcg += (i..j.min(k)).map(|r| mean_gain * discount(r)).sum::<f64>();
        i = j;
    }
    Some(dcg / idcg)
}

/// All metrics of one evaluated split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eval {
    pub ne: f64,
    pub auc: f64,
    pub ndcg: f64,
    pub logloss: f64,
    pub ne_stderr: f64,
    pub ndcg_stderr: f64,
    pub queries_with_clicks: usize,
}

fn mean_and_stderr(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, (var / n as f64).sqrt())
}

/// Evaluates scores (logits) against graded labels grouped by query.
pub fn evaluate(scores: &[f32], labels: &[f32], groups: &[Range<usize>]) -> Eval {
    let rows = scores.len();
    let clicks: Vec<f32> = labels
        .iter()
        .map(|&l| if l > 0.0 { 1.0 } else { 0.0 })
        .collect();
    let ctr = clicks.iter().map(|&c| c as f64).sum::<f64>() / rows.max(1) as f64;
    let base = entropy(ctr);
    let mut total = 0.0;
    let mut per_query = Vec::with_capacity(groups.len());
    let mut ndcgs = Vec::with_capacity(groups.len());
    for g in groups {
        let loss: f64 = g
            .clone()
            .map(|r| logloss_of_logit(scores[r] as f64, clicks[r] as f64))
            .sum();
        total += loss;
        per_query.push((loss, g.len() as f64));
        if let Some(v) = ndcg_at(&scores[g.clone()], &labels[g.clone()], NDCG_K) {
            ndcgs.push(v);
        }
    }
    let logloss = total / rows.max(1) as f64;
    let ne = if base > 0.0 { logloss / base } else { f64::NAN };
    // Ratio estimator R = sum L_q / sum n_q, linearized over queries.
    let q = per_query.len() as f64;
    let ne_stderr = if q >= 2.0 && base > 0.0 {
        let ss: f64 = per_query
            .iter()
            .map(|(l, n)| (l - logloss * n).powi(2))
            .sum();
        (q / (q - 1.0) * ss).sqrt() / rows as f64 / base
    } else {
        0.0
    };
    let (ndcg, ndcg_stderr) = mean_and_stderr(&ndcgs);
    Eval {
        ne,
        auc: auc(scores, &clicks),
        ndcg,
        logloss,
        ne_stderr,
        ndcg_stderr,
        queries_with_clicks: ndcgs.len(),
    }
}

/// Platt scaling: `(a, b)` minimising the logloss of `sigmoid(a·s + b)`
/// against clicks (damped Newton on standardized scores, a tiny ridge).
/// Used to turn the scores of pairwise / listwise models, which have no
/// fixed scale or offset, into probabilities.
pub fn fit_platt(scores: &[f32], clicks: &[f32]) -> (f64, f64) {
    let n = scores.len().max(1) as f64;
    let mean = scores.iter().map(|&s| s as f64).sum::<f64>() / n;
    let var = scores
        .iter()
        .map(|&s| (s as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let sd = if var > 1e-24 { var.sqrt() } else { 1.0 };
    let xs: Vec<f64> = scores.iter().map(|&s| (s as f64 - mean) / sd).collect();
    let ctr = (clicks.iter().map(|&c| c as f64).sum::<f64>() / n).clamp(1e-6, 1.0 - 1e-6);
    let loss = |a: f64, b: f64| -> f64 {
        xs.iter()
            .zip(clicks)
            .map(|(&x, &y)| logloss_of_logit(a * x + b, y as f64))
            .sum::<f64>()
            + 1e-6 * n * a * a
    };
    let (mut a, mut b) = (0.0, (ctr / (1.0 - ctr)).ln());
    let mut current = loss(a, b);
    for _ in 0..50 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (2e-6 * n * a, 0.0, 2e-6 * n, 0.0, 1e-9);
        for (&x, &y) in xs.iter().zip(clicks) {
            let p = 1.0 / (1.0 + (-(a * x + b)).exp());
            let w = p * (1.0 - p);
            ga += (p - y as f64) * x;
            gb += p - y as f64;
            haa += w * x * x;
            hab += w * x;
            hbb += w;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-18 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        let mut t = 1.0;
        let mut improved = false;
        while t > 1e-4 {
            let trial = loss(a - t * da, b - t * db);
            if trial <= current {
                a -= t * da;
                b -= t * db;
                improved = current - trial > 1e-10 * n;
                current = trial;
                break;
            }
            t /= 2.0;
        }
        if !improved {
            break;
        }
    }
    // Back to raw scores: a·(s - mean)/sd + b.
    (a / sd, b - a * mean / sd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn auc_by_hand() {
        // Positives at 0.9 and 0.4; negatives at 0.8, 0.3, 0.1.
        // Pairs won: 0.9 beats 3, 0.4 beats 2 -> 5 / 6.
        let s = [0.9, 0.8, 0.4, 0.3, 0.1];
        let y = [1.0, 0.0, 1.0, 0.0, 0.0];
        assert!(close(auc(&s, &y), 5.0 / 6.0));
        // A tie between a positive and a negative counts one half:
        // pos 0.5 vs neg 0.5 (1/2), vs neg 0.2 (1); pos 0.9 beats both -> 3.5/4.
        let s = [0.5, 0.5, 0.9, 0.2];
        let y = [1.0, 0.0, 1.0, 0.0];
        assert!(close(auc(&s, &y), 3.5 / 4.0));
        // Constant scores: 0.5. One class only: 0.5.
        assert!(close(auc(&[0.3; 4], &[1.0, 0.0, 1.0, 0.0]), 0.5));
        assert!(close(auc(&[0.1, 0.2], &[1.0, 1.0]), 0.5));
    }

    #[test]
    fn ndcg_by_hand() {
        // Perfect order: 1.
        assert!(close(
            ndcg_at(&[3.0, 2.0, 1.0], &[2.0, 1.0, 0.0], 10).unwrap(),
            1.0
        ));
        // Reversed order of labels 0,1,2 scored 3,2,1:
        // DCG = 0/log2(2) + 1/log2(3) + 3/log2(4); IDCG = 3 + 1/log2(3).
        let got = ndcg_at(&[3.0, 2.0, 1.0], &[0.0, 1.0, 2.0], 10).unwrap();
        let want = (1.0 / 3f64.log2() + 3.0 / 2.0) / (3.0 + 1.0 / 3f64.log2());
        assert!(close(got, want), "{got} vs {want}");
        // No positive label: undefined.
        assert_eq!(ndcg_at(&[1.0, 2.0], &[0.0, 0.0], 10), None);
    }

    #[test]
    fn ndcg_ties_take_the_mean_gain() {
        // Two rows tied at the top, one relevant (gain 1): each of ranks 1 and
        // 2 gets gain 1/2. DCG = 0.5 + 0.5/log2(3); IDCG = 1.
        let got = ndcg_at(&[1.0, 1.0, 0.0], &[1.0, 0.0, 0.0], 10).unwrap();
        assert!(close(got, 0.5 + 0.5 / 3f64.log2()), "{got}");
        // All scores tied: the expected DCG under a random order.
        let got = ndcg_at(&[0.0; 3], &[1.0, 0.0, 0.0], 10).unwrap();
        let want = (1.0 + 1.0 / 3f64.log2() + 0.5) / 3.0;
        assert!(close(got, want), "{got} vs {want}");
    }

    #[test]
    fn ndcg_cuts_at_ten() {
        // The only relevant row is ranked 11th: NDCG@10 = 0.
        let mut s: Vec<f32> = (0..12).map(|i| -(i as f32)).collect();
        let mut y = vec![0.0; 12];
        y[10] = 1.0;
        assert!(close(ndcg_at(&s, &y, 10).unwrap(), 0.0));
        // A tie block straddling the cut-off: ranks 10 and 11 (1-based) are
        // tied, one relevant; only rank 10 counts, with gain 1/2.
        s[9] = s[10];
        let got = ndcg_at(&s, &y, 10).unwrap();
        assert!(close(got, 0.5 / 11f64.log2()), "{got}");
    }

    #[test]
    fn constant_predictor_at_the_base_rate_has_ne_one() {
        let labels = [1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0];
        let p: f64 = 2.0 / 8.0;
        let logit = (p / (1.0 - p)).ln() as f32;
        let e = evaluate(&[logit; 8], &labels, &[0..4, 4..8]);
        assert!((e.ne - 1.0).abs() < 1e-6, "{}", e.ne);
        assert!((e.logloss - entropy(0.25)).abs() < 1e-6);
        assert!(close(e.auc, 0.5));
        assert_eq!(e.queries_with_clicks, 2);
        // A better-than-constant predictor has NE < 1.
        let good = [2.0, -2.0, -2.0, -2.0, 2.0, -2.0, -2.0, -2.0];
        let e = evaluate(&good, &labels, &[0..4, 4..8]);
        assert!(e.ne < 0.5 && close(e.auc, 1.0) && close(e.ndcg, 1.0));
    }

    #[test]
    fn logloss_by_hand() {
        assert!(close(logloss_of_logit(0.0, 1.0), 2f64.ln()));
        let z = 1.5f64;
        let p = 1.0 / (1.0 + (-z).exp());
        assert!(close(logloss_of_logit(z, 0.0), -(1.0 - p).ln()));
        assert!(close(logloss_of_logit(z, 1.0), -p.ln()));
        // Stable for large logits.
        assert!(close(logloss_of_logit(800.0, 1.0), 0.0));
        assert!(close(logloss_of_logit(-800.0, 1.0), 800.0));
    }

    #[test]
    fn platt_recovers_a_known_calibration() {
        // Clicks drawn (deterministically, by thresholds) from sigmoid(2s - 1)
        // on raw scores 10·s: the fit should find a ≈ 0.2, b ≈ -1.
        let mut scores = Vec::new();
        let mut clicks = Vec::new();
        for i in 0..400 {
            let s = (i as f64 / 400.0) * 4.0 - 2.0;
            let p = 1.0 / (1.0 + (-(2.0 * s - 1.0)).exp());
            for k in 0..50 {
                scores.push((10.0 * s) as f32);
                clicks.push(if (k as f64 + 0.5) / 50.0 < p {
                    1.0
                } else {
                    0.0
                });
            }
        }
        let (a, b) = fit_platt(&scores, &clicks);
        assert!(
            (a - 0.2).abs() < 0.01 && (b + 1.0).abs() < 0.05,
            "a {a} b {b}"
        );
    }

    #[test]
    fn standard_errors_over_queries() {
        // Two queries with NDCG 1 and 0.5... use values whose stderr is easy.
        let labels = [1.0, 0.0, 0.0, 1.0];
        let scores = [1.0, 0.0, 1.0, 0.0];
        let e = evaluate(&scores, &labels, &[0..2, 2..4]);
        let n2 = 1.0 / 3f64.log2();
        assert!(close(e.ndcg, (1.0 + n2) / 2.0));
        // sd of {1, n2} / sqrt(2) = |1 - n2| / 2.
        assert!(close(e.ndcg_stderr, (1.0 - n2) / 2.0), "{}", e.ndcg_stderr);
        // Identical queries: no spread, zero NE standard error.
        let e = evaluate(&[1.0, 0.0, 1.0, 0.0], &[1.0, 0.0, 1.0, 0.0], &[0..2, 2..4]);
        assert!(e.ne_stderr.abs() < 1e-12);
    }
}
