//! `reagent report --format html`: the proposal as one self-contained HTML
//! file (no script, no network: styles and SVG plots inline) that a person
//! can mail or attach to a review.
//!
//! Plots are drawn with plotters' SVG backend (a well-kept crate the lab's
//! charts already use; it escapes the text it draws). Nothing a strategy
//! or a job wrote — titles, rationales, diagnoses, log tails — goes into a
//! plot: plots name hypotheses `hN` and trials `tN`, and those words go
//! into tables through [`esc`], like every other string of the page.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::prelude::*;

use super::engine::View;
use super::report::Report;
use super::stats;
use crate::records::campaign::{Stage, TrialStatus};

/// Escapes text for HTML element content and quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters (but tab and newline) are shown as their
            // code, never passed on.
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

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
fn progress_svg(view: &View) -> anyhow::Result<Option<String>> {
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
struct Forest {
    id: u64,
    effect: f64,
    low: f64,
    high: f64,
    n: u32,
    promising: bool,
}

fn forest_rows(view: &View) -> Vec<Forest> {
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

fn forest_svg(rows: &[Forest]) -> anyhow::Result<Option<String>> {
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
fn confirm_svg(view: &View) -> anyhow::Result<Option<String>> {
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
fn knobs_svg(view: &View) -> anyhow::Result<Option<String>> {
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
fn timeline_svg(view: &View, now_ms: u64) -> anyhow::Result<Option<String>> {
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
fn budget_svg(view: &View) -> anyhow::Result<Option<String>> {
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

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:820px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
.verdict{font-size:1.1em;background:#f4f7fb;border-left:4px solid #1f77b4;padding:.6em .8em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f8f8f8;padding:.4em;white-space:pre-wrap;font-size:.8em;max-height:12em;overflow:auto}
.key span{display:inline-block;margin-right:1em}.key i{display:inline-block;width:.8em;height:.8em;margin-right:.3em;border-radius:50%}
figure{margin:.5em 0}figcaption{font-size:.85em;color:#555}";

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6}")
    } else {
        "–".into()
    }
}

fn figure(out: &mut String, svg: Option<String>, caption: &str) {
    if let Some(svg) = svg {
        let _ = writeln!(
            out,
            "<figure>{svg}<figcaption>{}</figcaption></figure>",
            esc(caption)
        );
    } else {
        let _ = writeln!(
            out,
            "<p><em>{}: nothing to plot yet.</em></p>",
            esc(caption)
        );
    }
}

/// The page's styles (`reagent serve` uses them too).
pub fn style() -> &'static str {
    STYLE
}

/// The whole page.
pub fn page(view: &View, r: &Report, now_ms: u64) -> anyhow::Result<String> {
    let title = format!("Improvement proposal: {} (campaign {})", r.campaign, r.id);
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n<title>{}</title><style>{STYLE}</style></head><body>\n{}</body></html>\n",
        esc(&title),
        body(view, r, now_ms)?
    ))
}

/// The report's content: heading, verdict, tables and plots.
pub fn body(view: &View, r: &Report, now_ms: u64) -> anyhow::Result<String> {
    let mut o = String::new();
    let title = format!("Improvement proposal: {} (campaign {})", r.campaign, r.id);
    let _ = write!(
        o,
        "<h1>{}</h1>\n<p class=\"verdict\">{}</p>\n",
        esc(&title),
        esc(&r.verdict)
    );
    summary_table(&mut o, r);
    if let Some(b) = &r.best {
        o.push_str("<h2>Config change vs baseline</h2>\n<ul>\n");
        for d in &b.diff {
            let _ = writeln!(o, "<li><code>{}</code></li>", esc(d));
        }
        o.push_str("</ul>\n");
    }
    o.push_str("<h2>Progress</h2>\n<p class=\"key\"><span><i style=\"background:#1e1e1e\"></i>baseline</span><span><i style=\"background:#1f77b4\"></i>validate</span><span><i style=\"background:#ff7f0e\"></i>combine</span><span><i style=\"background:#2ca02c\"></i>exploit</span><span><i style=\"background:#9467bd\"></i>confirm</span><span><i style=\"background:#d62728\"></i>best so far</span></p>\n");
    figure(
        &mut o,
        progress_svg(view)?,
        &format!(
            "{} of every succeeded trial; the grey band is the baseline's mean ± the effect one run must clear to count",
            r.objective.metric
        ),
    );
    let rows = forest_rows(view);
    o.push_str("<h2>Effects of the hypotheses</h2>\n");
    figure(
        &mut o,
        forest_svg(&rows)?,
        "effect of each hypothesis over the baseline (exploration runs) with its 95% interval under the campaign's noise model; green = promising; the 25 largest",
    );
    hypotheses_table(&mut o, view, &rows);
    o.push_str("<h2>Confirmation</h2>\n");
    figure(
        &mut o,
        confirm_svg(view)?,
        "the winner and the baseline re-run with fresh seeds: the objective (filled) and the holdout metric (ring)",
    );
    o.push_str("<h2>Knobs</h2>\n");
    figure(
        &mut o,
        knobs_svg(view)?,
        "the objective against each knob over the exploration runs (the other knobs vary too)",
    );
    o.push_str("<h2>Timeline</h2>\n<p class=\"key\"><span><i style=\"background:#2ca02c\"></i>succeeded</span><span><i style=\"background:#d62728\"></i>failed</span><span><i style=\"background:#969696\"></i>stopped early</span><span><i style=\"background:#1f77b4\"></i>running</span><span><i style=\"background:#c8a03c\"></i>cancelled or dropped</span></p>\n");
    figure(&mut o, timeline_svg(view, now_ms)?, "what ran when");
    figure(
        &mut o,
        budget_svg(view)?,
        "CPU-hours spent as trials settled (blue), reserved by running trials (shaded), and the budget (red)",
    );
    phases_table(&mut o, r);
    failures_table(&mut o, view, r);
    Ok(o)
}

fn summary_table(o: &mut String, r: &Report) {
    let mut rows: Vec<(String, String)> = vec![
        ("state".into(), format!("{} (stage {})", r.state, r.stage)),
        (
            "objective".into(),
            format!("{} {}", r.objective.direction, r.objective.metric),
        ),
    ];
    if let Some(b) = &r.baseline {
        rows.push((
            "baseline".into(),
            format!("{} ± {} (sd, n = {})", num(b.mean), num(b.sd), b.n),
        ));
    }
    if let Some(b) = &r.best {
        rows.push((
            "best".into(),
            format!(
                "h{} “{}”: {} ± {} (sd, n = {})",
                b.hypothesis,
                b.title,
                num(b.mean),
                num(b.sd),
                b.n
            ),
        ));
    }
    if let Some(e) = &r.effect {
        rows.push((
            "effect".into(),
            format!(
                "{} (positive = better), 95% CI [{}, {}] — {}",
                num(e.estimate),
                num(e.ci95_low),
                num(e.ci95_high),
                if r.confirmed {
                    "fresh-seed confirmation"
                } else {
                    "from exploration runs"
                }
            ),
        ));
    }
    if let Some(h) = &r.holdout {
        rows.push((
            format!("holdout {}", h.metric),
            format!(
                "baseline {}, best {}",
                h.baseline_mean.map_or("n/a".into(), num),
                h.best_mean.map_or("n/a".into(), num)
            ),
        ));
    }
    rows.push((
        "compute".into(),
        format!(
            "{:.3} of {} CPU-hours, {:.3} of {} GPU-hours; {} trials ({} succeeded, {} failed, {} stopped) of at most {}",
            r.spent.cpu_hours,
            r.budget.cpu_hours,
            r.spent.gpu_hours,
            r.budget.gpu_hours,
            r.trials.total,
            r.trials.succeeded,
            r.trials.failed,
            r.trials.stopped,
            r.budget.max_trials
        ),
    ));
    if let Some(st) = &r.stopping {
        rows.push((
            "early stopping".into(),
            format!(
                "{} trial(s) stopped on {}; {:.3} CPU-hours spent on them, about {:.3} saved",
                st.stopped, st.metric, st.cpu_hours_spent, st.cpu_hours_saved
            ),
        ));
    }
    if let Some(n) = &r.note {
        rows.push(("note".into(), n.clone()));
    }
    o.push_str("<table>\n");
    for (k, v) in rows {
        let _ = writeln!(o, "<tr><th>{}</th><td>{}</td></tr>", esc(&k), esc(&v));
    }
    o.push_str("</table>\n");
}

fn hypotheses_table(o: &mut String, view: &View, rows: &[Forest]) {
    if rows.is_empty() {
        return;
    }
    let titles: BTreeMap<u64, (&str, &str)> = view
        .hypotheses
        .iter()
        .map(|h| {
            (
                h.id,
                (h.hypothesis.title.as_str(), h.hypothesis.rationale.as_str()),
            )
        })
        .collect();
    o.push_str("<table>\n<tr><th>hypothesis</th><th>title and rationale</th><th>runs</th><th>effect</th><th>95% interval</th></tr>\n");
    for r in rows {
        let (title, rationale) = titles.get(&r.id).copied().unwrap_or(("", ""));
        let _ = writeln!(
            o,
            "<tr><td>h{}{}</td><td>{}<br><small>{}</small></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">[{}, {}]</td></tr>",
            r.id,
            if r.promising { " ✓" } else { "" },
            esc(title),
            esc(rationale),
            r.n,
            num(r.effect),
            num(r.low),
            num(r.high)
        );
    }
    o.push_str("</table>\n");
}

fn phases_table(o: &mut String, r: &Report) {
    o.push_str("<h2>Phases</h2>\n<table>\n<tr><th>phase</th><th>hypotheses</th><th>trials</th><th>succeeded</th><th>failed</th><th>promising</th><th>best effect</th></tr>\n");
    for p in &r.phases {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&p.phase),
            p.hypotheses,
            p.trials,
            p.succeeded,
            p.failed,
            p.promising,
            p.best_effect.map_or("–".into(), num)
        );
    }
    o.push_str("</table>\n");
}

/// Failures with the debugger's diagnosis and the end of the job's log.
fn failures_table(o: &mut String, view: &View, r: &Report) {
    if r.failures.is_empty() {
        return;
    }
    o.push_str("<h2>Failures</h2>\n<table>\n<tr><th>trial</th><th>hypothesis</th><th>class</th><th>action</th><th>diagnosis and log tail</th></tr>\n");
    for f in &r.failures {
        let tail = view
            .trials
            .iter()
            .find(|t| t.id == f.trial)
            .and_then(|t| t.outcome.as_ref())
            .map(|o| {
                let lines: Vec<&str> = o.log_tail.lines().collect();
                lines[lines.len().saturating_sub(6)..].join("\n")
            })
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "<tr><td>t{}</td><td>h{} {}</td><td>{}</td><td>{}</td><td>{}<pre>{}</pre></td></tr>",
            f.trial,
            f.hypothesis,
            esc(&f.title),
            esc(&f.class),
            esc(&f.action),
            esc(&f.rationale),
            esc(&tail)
        );
    }
    o.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn everything_that_could_open_markup_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(esc("a\u{1b}[31mb\u{7}"), "a\\u{1b}[31mb\\u{7}");
        assert_eq!(esc("tab\tline\n"), "tab\tline\n");
    }
}
