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

use super::engine::View;
pub use super::plots::curve_svg;
use super::plots::{
    Forest, budget_svg, confirm_svg, forest_rows, forest_svg, knobs_svg, progress_svg, timeline_svg,
};
use super::report::Report;

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
