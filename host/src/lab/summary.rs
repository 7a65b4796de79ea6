//! A bench's runs summarised per (task, budget, method), and the plot of
//! median best-so-far against trials.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Run;
use super::tasks::Task;

/// The share of the baseline-to-optimum gap a run must close to count as
/// having "reached" the target.
pub const TARGET_SHARE: f64 = 0.8;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub task: String,
    pub budget: u32,
    pub method: String,
    pub seeds: usize,
    /// Noise-free loss removed by what the method handed back (baseline −
    /// chosen): median, first and third quartiles.
    pub improvement_median: f64,
    pub improvement_q1: f64,
    pub improvement_q3: f64,
    /// Median share of the baseline-to-optimum gap closed (None without a
    /// known optimum).
    pub gap_closed: Option<f64>,
    /// Share of seeds whose hand-back beat the baseline on the holdout.
    pub p_beat_holdout: f64,
    /// The loss counted as "reached" and the median trial reaching it
    /// (None when fewer than half the seeds reached it).
    pub target: f64,
    pub trials_to_target: Option<f64>,
    pub reached: usize,
    /// Mean failed trials per campaign, and their share of trial time.
    pub failed_mean: f64,
    pub failed_time_share: f64,
    /// Median host time of one campaign, in milliseconds.
    pub host_ms_median: f64,
    /// Median trials spent searching (see `Run::search_trials`).
    pub search_trials_median: f64,
    /// Median best-so-far after each trial.
    pub curve: Vec<f64>,
}

/// The `q` quantile (linear interpolation) of sorted `xs`.
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let pos = q * (xs.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    xs[lo] + (xs[hi] - xs[lo]) * (pos - lo as f64)
}

fn sorted(mut xs: Vec<f64>) -> Vec<f64> {
    xs.sort_by(f64::total_cmp);
    xs
}

/// One row per (task, budget, method), in the order first seen.
pub fn summarise(runs: &[Run], tasks: &[Task]) -> Vec<Row> {
    let mut groups: BTreeMap<(usize, String, u32, String), Vec<&Run>> = BTreeMap::new();
    let mut order: Vec<(String, u32, String)> = Vec::new();
    for r in runs {
        let key = (r.task.clone(), r.budget, r.method.clone());
        if !order.contains(&key) {
            order.push(key.clone());
        }
        let pos = order.iter().position(|k| *k == key).unwrap_or(0);
        groups
            .entry((pos, key.0, key.1, key.2))
            .or_default()
            .push(r);
    }
    // The best any run of a task saw: the target when its optimum is unknown.
    let best_seen = |task: &str| {
        runs.iter()
            .filter(|r| r.task == task)
            .flat_map(|r| r.best_so_far.last().copied())
            .fold(f64::INFINITY, f64::min)
    };
    groups
        .into_iter()
        .map(|((_, task_name, budget, method), rs)| {
            let task = tasks.iter().find(|t| t.name == task_name);
            let improvement = sorted(rs.iter().map(|r| r.baseline - r.chosen).collect());
            let target = task.map_or(f64::NAN, |t| t.target(TARGET_SHARE, best_seen(&task_name)));
            let reach: Vec<f64> = rs
                .iter()
                .map(|r| {
                    r.best_so_far
                        .iter()
                        .position(|&b| b <= target)
                        .map_or(f64::INFINITY, |i| (i + 1) as f64)
                })
                .collect();
            let reached = reach.iter().filter(|x| x.is_finite()).count();
            let reach = sorted(reach);
            let median_reach = quantile(&reach, 0.5);
            let gap = task.and_then(|t| t.optimum).map(|opt| {
                quantile(
                    &sorted(
                        rs.iter()
                            .map(|r| (r.baseline - r.chosen) / (r.baseline - opt))
                            .collect(),
                    ),
                    0.5,
                )
            });
            let len = rs.iter().map(|r| r.best_so_far.len()).max().unwrap_or(0);
            let curve = (0..len)
                .map(|i| {
                    quantile(
                        &sorted(
                            rs.iter()
                                .map(|r| {
                                    r.best_so_far
                                        .get(i)
                                        .or(r.best_so_far.last())
                                        .copied()
                                        .unwrap_or(r.baseline)
                                })
                                .collect(),
                        ),
                        0.5,
                    )
                })
                .collect();
            let trial_secs: f64 = rs.iter().map(|r| r.trial_secs).sum();
            let failed_secs: f64 = rs.iter().map(|r| r.failed_secs).sum();
            Row {
                task: task_name,
                budget,
                method,
                seeds: rs.len(),
                improvement_median: quantile(&improvement, 0.5),
                improvement_q1: quantile(&improvement, 0.25),
                improvement_q3: quantile(&improvement, 0.75),
                gap_closed: gap,
                p_beat_holdout: rs.iter().filter(|r| r.beat_holdout).count() as f64
                    / rs.len() as f64,
                target,
                trials_to_target: median_reach.is_finite().then_some(median_reach),
                reached,
                failed_mean: rs.iter().map(|r| f64::from(r.failed)).sum::<f64>() / rs.len() as f64,
                failed_time_share: if trial_secs > 0.0 {
                    failed_secs / trial_secs
                } else {
                    0.0
                },
                host_ms_median: quantile(&sorted(rs.iter().map(|r| r.host_ms).collect()), 0.5),
                search_trials_median: quantile(
                    &sorted(rs.iter().map(|r| f64::from(r.search_trials)).collect()),
                    0.5,
                ),
                curve,
            }
        })
        .collect()
}

/// An SVG of median best-so-far against trials: one panel per (task,
/// budget), one line per method.
pub fn plot_svg(rows: &[Row]) -> anyhow::Result<String> {
    use plotters::prelude::*;
    let mut panels: Vec<(String, u32)> = Vec::new();
    for r in rows {
        if !panels.contains(&(r.task.clone(), r.budget)) {
            panels.push((r.task.clone(), r.budget));
        }
    }
    let cols = panels.len().clamp(1, 3);
    let lines = panels.len().div_ceil(cols).max(1);
    let (w, h) = (420 * cols as u32, 320 * lines as u32);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        let areas = root.split_evenly((lines, cols));
        let methods: Vec<String> = rows.iter().fold(Vec::new(), |mut m, r| {
            if !m.contains(&r.method) {
                m.push(r.method.clone());
            }
            m
        });
        for ((task, budget), area) in panels.iter().zip(areas) {
            let mine: Vec<&Row> = rows
                .iter()
                .filter(|r| &r.task == task && r.budget == *budget)
                .collect();
            let values = mine.iter().flat_map(|r| r.curve.iter().copied());
            let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
            let (lo, hi) = if lo.is_finite() && hi > lo {
                (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
            } else {
                (lo - 1.0, lo + 1.0)
            };
            let mut chart = ChartBuilder::on(&area)
                .caption(format!("{task}, {budget} trials"), ("sans-serif", 16))
                .margin(8)
                .x_label_area_size(28)
                .y_label_area_size(56)
                .build_cartesian_2d(1f64..f64::from(*budget).max(2.0), lo..hi)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            chart
                .configure_mesh()
                .x_desc("trials")
                .y_desc("median best loss")
                .light_line_style(WHITE)
                .draw()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for r in mine {
                let i = methods.iter().position(|m| *m == r.method).unwrap_or(0);
                let color = Palette99::pick(i).to_rgba();
                chart
                    .draw_series(LineSeries::new(
                        r.curve
                            .iter()
                            .enumerate()
                            .map(|(k, v)| ((k + 1) as f64, *v)),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .label(r.method.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&xs, 0.5), 2.5);
        assert_eq!(quantile(&xs, 0.0), 1.0);
        assert_eq!(quantile(&xs, 1.0), 4.0);
        assert_eq!(quantile(&xs, 0.25), 1.75);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
