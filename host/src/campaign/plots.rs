//! The report's plots, drawn with plotters' SVG backend from the stored
//! trials (`campaign/html.rs` places them; `reagent serve` uses the
//! curve). Nothing a strategy or a job wrote is drawn: hypotheses are `hN`,
//! trials `tN`; knob and choice names are the operator's.

use plotters::prelude::*;

use super::engine::View;
use super::stats;
use crate::records::campaign::{Stage, TrialStatus};

const W: u32 = 760;
const H: u32 = 300;

fn stage_color(stage: Stage, baseline: bool) -> RGBColor {
    if baseline {
        return RGBColor(30, 30, 30);
    }
    match stage {
        Stage::Validate => RGBColor(31, 119, 180),
        Stage::Combine => RGBColor(255, 127, 14),
        Stage::Exploit => RGBColor(44, 160, 44),
        Stage::Confirm => RGBColor(148, 103, 189),
        _ => RGBColor(127, 127, 127),
    }
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing a plot: {e}")
}

/// (low, high) with a margin; a flat range is widened.
fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return None;
    }
    let pad = if hi > lo {
        0.06 * (hi - lo)
    } else {
        lo.abs().max(1e-6) * 0.05
    };
    Some((lo - pad, hi + pad))
}

/// The objective over trials, coloured by stage, with the best so far and
/// the baseline band (its mean ± the noise threshold a single run must
/// clear).
pub(super) fn progress_svg(view: &View) -> anyhow::Result<Option<String>> {
    let direction = view.row.spec.objective.direction;
    let points: Vec<(u64, f64, Stage, bool)> = view
        .trials
        .iter()
        .filter(|t| t.status == TrialStatus::Succeeded)
        .filter_map(|t| t.objective.map(|v| (t.id, v, t.stage, t.hypothesis == 0)))
        .collect();
    let Some((lo, hi)) = span(points.iter().map(|p| p.1)) else {
        return Ok(None);
    };
    let max_x = view.trials.iter().map(|t| t.id).max().unwrap_or(1).max(2) as f64;
    let band = view.baseline().map(|b| {
        let sigma = view.sigma().unwrap_or(0.0);
        let half = stats::threshold(sigma, 1, b.n);
        (b.mean - half, b.mean + half, b.mean)
    });
    let (lo, hi) = match band {
        Some((a, b, _)) if a.is_finite() && b.is_finite() => (lo.min(a), hi.max(b)),
        _ => (lo, hi),
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..max_x + 1.0, lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("trial")
            .y_desc("objective")
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        if let Some((a, b, mean)) = band.filter(|(a, b, _)| a.is_finite() && b.is_finite()) {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, a), (max_x + 1.0, b)],
                    RGBColor(200, 200, 200).mix(0.35).filled(),
                )))
                .map_err(err)?;
            chart
                .draw_series(LineSeries::new(
                    [(0.0, mean), (max_x + 1.0, mean)],
                    RGBColor(90, 90, 90).stroke_width(1),
                ))
                .map_err(err)?;
        }
        // Best so far over the exploration runs (confirmation runs use
        // fresh seeds and are judged apart).
        let mut best: Option<f64> = None;
        let mut line = Vec::new();
        for (id, v, stage, _) in &points {
            if *stage == Stage::Confirm {
                continue;
            }
            let better = best.is_none_or(|b| stats::improvement(direction, b, *v) > 0.0);
            if better {
                best = Some(*v);
            }
            line.push((*id as f64, best.unwrap_or(*v)));
        }
        chart
            .draw_series(LineSeries::new(line, RGBColor(214, 39, 40).stroke_width(2)))
            .map_err(err)?;
        chart
            .draw_series(points.iter().map(|(id, v, stage, base)| {
                Circle::new((*id as f64, *v), 3, stage_color(*stage, *base).filled())
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(Some(svg))
}

/// One row of the forest plot: a hypothesis' effect (positive = better)
/// with its 95% interval under the campaign's noise model.
pub(super) struct Forest {
    pub(super) id: u64,
    pub(super) effect: f64,
    pub(super) low: f64,
    pub(super) high: f64,
    pub(super) n: u32,
    pub(super) promising: bool,
}

pub(super) fn forest_rows(view: &View) -> Vec<Forest> {
    let judging = view.judging();
    let Some(b) = judging.baseline else {
        return Vec::new();
    };
    let df = f64::from(b.n.saturating_sub(1).max(1));
    let mut rows: Vec<Forest> = view
        .hypotheses
        .iter()
        .filter(|h| h.id != 0)
        .filter_map(|h| {
            let (Some(s), Some(effect), promising) = view.judge_with(&judging, h) else {
                return None;
            };
            let half = stats::t975(df)
                * judging.sigma
                * (1.0 / f64::from(s.n) + 1.0 / f64::from(b.n)).sqrt();
            Some(Forest {
                id: h.id,
                effect,
                low: effect - half,
                high: effect + half,
                n: s.n,
                promising,
            })
        })
        .collect();
    rows.sort_by(|a, b| b.effect.total_cmp(&a.effect).then(a.id.cmp(&b.id)));
    rows.truncate(25);
    rows
}

pub(super) fn forest_svg(rows: &[Forest]) -> anyhow::Result<Option<String>> {
    let Some((lo, hi)) = span(rows.iter().flat_map(|r| [r.low, r.high, 0.0])) else {
        return Ok(None);
    };
    let h = (60 + 18 * rows.len() as u32).max(140);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let n = rows.len() as f64;
        let labels: Vec<String> = rows.iter().map(|r| format!("h{}", r.id)).collect();
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(lo..hi, -0.5..n - 0.5)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("effect (positive = better), 95% interval")
            .y_labels(rows.len().max(1))
            .y_label_formatter(&|y: &f64| {
                let i = (n - 1.0 - y).round();
                if (n - 1.0 - y - i).abs() < 0.01 && i >= 0.0 && (i as usize) < labels.len() {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, -0.5), (0.0, n - 0.5)],
                RGBColor(90, 90, 90).stroke_width(1),
            ))
            .map_err(err)?;
        for (i, r) in rows.iter().enumerate() {
            // The largest effect on top.
            let y = n - 1.0 - i as f64;
            let color = if r.promising {
                RGBColor(44, 160, 44)
            } else {
                RGBColor(120, 120, 120)
            };
            chart
                .draw_series(LineSeries::new(
                    [(r.low, y), (r.high, y)],
                    color.stroke_width(2),
                ))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Circle::new(
                    (r.effect, y),
                    4,
                    color.filled(),
                )))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(Some(svg))
}

/// Confirmation runs of the winner and the baseline (fresh seeds), with
/// the holdout metric's values when the jobs reported one.
pub(super) fn confirm_svg(view: &View) -> anyhow::Result<Option<String>> {
    let Some(winner) = view.row.winner else {
        return Ok(None);
    };
    let runs: Vec<(usize, f64, Option<f64>)> = view
        .trials
        .iter()
        .filter(|t| t.stage == Stage::Confirm && t.status == TrialStatus::Succeeded)
        .filter(|t| t.hypothesis == 0 || t.hypothesis == winner)
        .filter_map(|t| {
            let arm = usize::from(t.hypothesis == winner);
            t.objective.map(|v| (arm, v, t.holdout))
        })
        .collect();
    if runs.is_empty() {
        return Ok(None);
    }
    let Some((lo, hi)) = span(runs.iter().flat_map(|r| [Some(r.1), r.2]).flatten()) else {
        return Ok(None);
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W / 2, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let names = ["baseline".to_string(), format!("h{winner}")];
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..1.5, lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(2)
            .x_label_formatter(&|x: &f64| {
                let i = x.round();
                if (x - i).abs() < 0.01 && (0.0..=1.0).contains(&i) {
                    names[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .y_desc("objective (filled) / holdout (ring)")
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(err)?;
        for (k, (arm, v, holdout)) in runs.iter().enumerate() {
            let x = *arm as f64 - 0.12 + 0.04 * (k % 7) as f64;
            let color = if *arm == 1 {
                RGBColor(148, 103, 189)
            } else {
                RGBColor(30, 30, 30)
            };
            chart
                .draw_series(std::iter::once(Circle::new((x, *v), 4, color.filled())))
                .map_err(err)?;
            if let Some(h) = holdout {
                chart
                    .draw_series(std::iter::once(Circle::new(
                        (x, *h),
                        5,
                        color.stroke_width(1),
                    )))
                    .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    Ok(Some(svg))
}

/// Where a knob's value sits on a plot's x axis: log knobs on the log
/// scale, choices by their index, flags 0/1.
fn knob_x(kind: &crate::strategy::KnobKind, v: &crate::strategy::Value) -> Option<f64> {
    use crate::strategy::{KnobKind, Value};
    match (kind, v) {
        (KnobKind::LogFloat(_), Value::Float(x)) if *x > 0.0 => Some(x.log10()),
        (_, Value::Float(x)) => Some(*x),
        (_, Value::Int(i)) => Some(*i as f64),
        (KnobKind::Categorical(choices), Value::Choice(c)) => {
            choices.iter().position(|x| x == c).map(|i| i as f64)
        }
        (_, Value::Flag(b)) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// The objective against each knob's value over the exploration runs (a
/// partial-dependence view: every other knob varies too).
pub(super) fn knobs_svg(view: &View) -> anyhow::Result<Option<String>> {
    let spec = &view.row.spec;
    let knobs: Vec<_> = spec.knobs.iter().take(9).collect();
    let runs: Vec<(Vec<(String, crate::strategy::Value)>, f64)> = view
        .trials
        .iter()
        .filter(|t| t.status == TrialStatus::Succeeded && t.stage != Stage::Confirm)
        .filter_map(|t| {
            t.objective
                .map(|v| (super::engine::full_config(spec, &t.assignments), v))
        })
        .collect();
    let Some((lo, hi)) = span(runs.iter().map(|r| r.1)) else {
        return Ok(None);
    };
    if knobs.is_empty() {
        return Ok(None);
    }
    let cols = knobs.len().min(3);
    let lines = knobs.len().div_ceil(cols);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, 220 * lines as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        for (knob, area) in knobs.iter().zip(root.split_evenly((lines, cols))) {
            let xs: Vec<(f64, f64)> = runs
                .iter()
                .filter_map(|(config, y)| {
                    let v = &config.iter().find(|(k, _)| *k == knob.name)?.1;
                    knob_x(&knob.kind, v).map(|x| (x, *y))
                })
                .collect();
            let Some((xlo, xhi)) = span(xs.iter().map(|p| p.0)) else {
                continue;
            };
            let log = matches!(knob.kind, crate::strategy::KnobKind::LogFloat(_));
            let mut chart = ChartBuilder::on(&area)
                .caption(
                    if log {
                        format!("log10 {}", knob.name)
                    } else {
                        knob.name.clone()
                    },
                    ("sans-serif", 13),
                )
                .margin(6)
                .x_label_area_size(22)
                .y_label_area_size(60)
                .build_cartesian_2d(xlo..xhi, lo..hi)
                .map_err(err)?;
            // Choices by name at their index (the operator's words: the
            // campaign file's).
            let choices: Vec<String> = match &knob.kind {
                crate::strategy::KnobKind::Categorical(c) => c.clone(),
                crate::strategy::KnobKind::Flag => vec!["false".into(), "true".into()],
                _ => Vec::new(),
            };
            let label = |x: &f64| {
                if choices.is_empty() {
                    return tick(*x);
                }
                let i = x.round();
                match choices.get(i as usize) {
                    Some(c) if (x - i).abs() < 0.01 && i >= 0.0 => c.chars().take(16).collect(),
                    _ => String::new(),
                }
            };
            chart
                .configure_mesh()
                .x_labels(if choices.is_empty() {
                    4
                } else {
                    2 * choices.len() + 1
                })
                .x_label_formatter(&label)
                .y_labels(4)
                .light_line_style(RGBColor(240, 240, 240))
                .draw()
                .map_err(err)?;
            chart
                .draw_series(
                    xs.iter()
                        .map(|(x, y)| Circle::new((*x, *y), 2, RGBColor(31, 119, 180).filled())),
                )
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(Some(svg))
}

/// One metric's curve, value by step (the trial page of `reagent serve`).
pub fn curve_svg(points: &[(u32, f64)]) -> anyhow::Result<Option<String>> {
    let points: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.1.is_finite())
        .map(|(s, v)| (f64::from(*s), *v))
        .collect();
    let (Some((x0, x1)), Some((lo, hi))) = (
        span(points.iter().map(|p| p.0)),
        span(points.iter().map(|p| p.1)),
    ) else {
        return Ok(None);
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, 240)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                RGBColor(31, 119, 180).stroke_width(2),
            ))
            .map_err(err)?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|p| Circle::new(*p, 3, RGBColor(31, 119, 180).filled())),
            )
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(Some(svg))
}

/// An axis tick: whole numbers as such, others with at most 3 decimals.
fn tick(x: f64) -> String {
    if x == x.round() && x.abs() < 1e15 {
        return format!("{x:.0}");
    }
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A unit for `span_ms` of elapsed time: (divisor in ms, its name).
fn time_unit(span_ms: u64) -> (f64, &'static str) {
    if span_ms < 120_000 {
        (1_000.0, "seconds")
    } else if span_ms < 7_200_000 {
        (60_000.0, "minutes")
    } else {
        (3_600_000.0, "hours")
    }
}

fn status_color(status: TrialStatus) -> RGBColor {
    match status {
        TrialStatus::Succeeded => RGBColor(44, 160, 44),
        TrialStatus::Failed => RGBColor(214, 39, 40),
        TrialStatus::Stopped => RGBColor(150, 150, 150),
        TrialStatus::Launching | TrialStatus::Running => RGBColor(31, 119, 180),
        _ => RGBColor(200, 160, 60),
    }
}

/// What ran when: one bar per trial from launch to end (minutes since the
/// first launch), coloured by how it ended.
pub(super) fn timeline_svg(view: &View, now_ms: u64) -> anyhow::Result<Option<String>> {
    let bars: Vec<(u64, u64, u64, TrialStatus)> = view
        .trials
        .iter()
        .filter_map(|t| {
            let start = t.launched_ms?;
            let end = t.finished_ms.unwrap_or(now_ms).max(start);
            Some((t.id, start, end, t.status))
        })
        .collect();
    let Some(t0) = bars.iter().map(|b| b.1).min() else {
        return Ok(None);
    };
    let t1 = bars.iter().map(|b| b.2).max().unwrap_or(t0).max(t0 + 1);
    let (unit, unit_name) = time_unit(t1 - t0);
    let minutes = |ms: u64| (ms - t0) as f64 / unit;
    let max_id = bars.iter().map(|b| b.0).max().unwrap_or(1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..minutes(t1), 0f64..max_id + 1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(format!("{unit_name} since the first launch"))
            .y_desc("trial")
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(err)?;
        let thick = (H as f64 / (max_id + 2.0) * 0.8).clamp(1.0, 8.0) as u32;
        chart
            .draw_series(bars.iter().map(|(id, s, e, status)| {
                PathElement::new(
                    vec![(minutes(*s), *id as f64), (minutes(*e), *id as f64)],
                    status_color(*status).stroke_width(thick),
                )
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(Some(svg))
}

/// CPU-hours spent over time (as trials settle), against the budget.
pub(super) fn budget_svg(view: &View) -> anyhow::Result<Option<String>> {
    let mut settled: Vec<(u64, f64)> = view
        .trials
        .iter()
        .filter_map(|t| t.finished_ms.map(|f| (f, t.spent_cpu)))
        .collect();
    settled.sort_by_key(|s| s.0);
    let Some(t0) = view
        .trials
        .iter()
        .filter_map(|t| t.launched_ms)
        .min()
        .or(settled.first().map(|s| s.0))
    else {
        return Ok(None);
    };
    let budget = view.row.budget().cpu_hours;
    let last = settled.last().map_or(t0, |s| s.0).max(t0 + 1);
    let (unit, unit_name) = time_unit(last - t0);
    let mut total = 0.0;
    let mut line = vec![(0.0, 0.0)];
    for (at, spent) in &settled {
        total += spent;
        line.push((at.saturating_sub(t0) as f64 / unit, total));
    }
    let reserved = view.row.ledger.reserved_cpu;
    let x_max = line.last().map_or(1.0, |p| p.0).max(1e-3);
    let y_max = (total + reserved).max(budget).max(1e-6) * 1.08;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W / 2, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(unit_name)
            .y_desc("CPU-hours")
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, budget), (x_max, budget)],
                RGBColor(214, 39, 40).stroke_width(1),
            ))
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                line,
                RGBColor(31, 119, 180).stroke_width(2),
            ))
            .map_err(err)?;
        if reserved > 0.0 {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x_max * 0.97, total), (x_max, total + reserved)],
                    RGBColor(31, 119, 180).mix(0.3).filled(),
                )))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(Some(svg))
}
