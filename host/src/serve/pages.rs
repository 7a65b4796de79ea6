//! The pages of `reagent serve`, rendered from the store. Every string
//! that is not this file's own goes through `esc`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::campaign::engine::View;
use crate::campaign::html::{body, esc, style};
use crate::campaign::report;
use crate::governance::{self, ApprovalState, Decision, Identity};
use crate::store::{Store, now_ms};
use crate::time::utc;
use crate::workspace::Workspace;

use super::TrialQuery;

/// The page script: on each server-sent `change`, refetch this page and
/// swap in its `<main>` (no reload, scroll and inputs kept elsewhere).
pub const LIVE_JS: &str = "(function(){var s=new EventSource('/events');var busy=false;\
s.addEventListener('change',function(){if(busy)return;busy=true;\
fetch(location.href,{credentials:'same-origin'}).then(function(r){return r.text();}).then(function(t){\
var d=new DOMParser().parseFromString(t,'text/html');var n=d.querySelector('main');var o=document.querySelector('main');\
if(n&&o&&!o.querySelector('form:focus-within')){o.replaceWith(n);}document.body.dataset.updates=String(1+Number(document.body.dataset.updates||0));}).finally(function(){busy=false;});});})();";

fn open(ws: &Workspace) -> anyhow::Result<Store> {
    ws.open_store(Duration::from_secs(30))
}

fn layout(title: &str, main: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\n<title>{} — reagent</title><style>{}\nnav a{{margin-right:1em}}main{{min-height:50vh}}.flash{{background:#fff8e1;padding:.5em}}</style></head>\n<body><nav><a href=\"/\">campaigns</a><a href=\"/approvals\">approvals</a><a href=\"/insights\">insights</a><a href=\"/audit\">audit log</a></nav>\n<main>\n{main}</main>\n<script src=\"/static/live.js\"></script></body></html>\n",
        esc(title),
        style()
    )
}

pub fn refused(why: &str) -> String {
    layout(
        "not allowed",
        &format!("<h1>Not allowed</h1><p>{}</p>", esc(why)),
    )
}

pub fn failed(why: &str) -> String {
    layout(
        "error",
        &format!("<h1>Something went wrong</h1><pre>{}</pre>", esc(why)),
    )
}

/// All campaigns: state, stage, best so far, spend vs budget, requests.
pub fn index(ws: &Workspace, who: &str) -> anyhow::Result<String> {
    let store = open(ws)?;
    let mut o = String::new();
    let _ = writeln!(o, "<h1>Campaigns</h1><p>Signed in as {}.</p>", esc(who));
    if let Some(q) = crate::quota::load(&ws.dir)? {
        let s = crate::quota::standing(&store, &q, now_ms())?;
        let _ = writeln!(
            o,
            "<p>Workspace quota: {} — {} running now.</p>",
            esc(&q.describe()),
            s.running
        );
    }
    let pending: Vec<_> = store
        .approvals()?
        .into_iter()
        .filter(|a| a.state == ApprovalState::Pending)
        .collect();
    o.push_str("<table><tr><th>id</th><th>name</th><th>state</th><th>stage</th><th>trials</th><th>best so far</th><th>CPU-hours</th><th>waiting on a person</th></tr>\n");
    for c in store.campaigns()? {
        let tally = match &c.tally {
            Some(t) => t.clone(),
            None => View::load(&store, c.id)?.tally(),
        };
        let best = match (&tally.baseline, &tally.best) {
            (Some(b), Some(best)) => format!(
                "h{} {:.6} vs baseline {:.6} ({:+.6})",
                best.hypothesis, best.mean, b.mean, best.improvement
            ),
            (Some(b), None) => format!("baseline {:.6}", b.mean),
            _ => "–".into(),
        };
        let waiting: Vec<String> = pending
            .iter()
            .filter(|a| a.campaign == c.id)
            .map(|a| {
                format!(
                    "<a href=\"/approvals#r{}\">request {} ({})</a>",
                    a.id,
                    a.id,
                    esc(a.kind.name())
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "<tr><td><a href=\"/campaigns/{id}\">{id}</a></td><td>{}</td><td>{}{}</td><td>{}</td><td class=\"n\">{} done, {} running, {} failed</td><td>{}</td><td class=\"n\">{:.3} + {:.3} reserved of {}</td><td>{}</td></tr>",
            esc(&c.spec.name),
            esc(c.state.name()),
            if c.paused { " (paused)" } else { "" },
            esc(c.stage.name()),
            tally.succeeded,
            tally.running,
            tally.failed,
            esc(&best),
            c.ledger.spent_cpu,
            c.ledger.reserved_cpu,
            c.budget().cpu_hours,
            waiting.join(", "),
            id = c.id
        );
    }
    o.push_str("</table>\n");
    Ok(layout("campaigns", &o))
}

/// One campaign: the report's plots and tables, and the trials grid.
pub fn campaign(
    ws: &Workspace,
    id: u64,
    q: &TrialQuery,
    csrf: &str,
) -> anyhow::Result<Option<String>> {
    let store = open(ws)?;
    if store.campaign(id)?.is_none() {
        return Ok(None);
    }
    let view = View::load(&store, id)?;
    drop(store);
    let r = report::build(&view);
    let mut o = body(&view, &r, now_ms())?;
    let mut trials: Vec<&crate::records::campaign::TrialRow> = view
        .trials
        .iter()
        .filter(|t| {
            q.status
                .as_deref()
                .is_none_or(|s| s.is_empty() || t.status.name() == s)
        })
        .collect();
    let direction = view.row.spec.objective.direction;
    match q.sort.as_deref() {
        Some("objective") => trials.sort_by(|a, b| {
            let key = |t: &&crate::records::campaign::TrialRow| {
                t.objective
                    .map(|v| -crate::campaign::stats::improvement(direction, 0.0, v))
            };
            key(a)
                .unwrap_or(f64::INFINITY)
                .total_cmp(&key(b).unwrap_or(f64::INFINITY))
        }),
        Some("status") => trials.sort_by_key(|t| (t.status.name(), t.id)),
        _ => {}
    }
    let _ = writeln!(
        o,
        "<h2 id=\"trials\">Trials</h2><p>Sort: <a href=\"?sort=id#trials\">by id</a> · <a href=\"?sort=objective#trials\">best first</a> · <a href=\"?sort=status#trials\">by status</a> — show: <a href=\"?#trials\">all</a> · <a href=\"?status=failed#trials\">failed</a> · <a href=\"?status=running#trials\">running</a> · <a href=\"?status=stopped#trials\">stopped</a></p>"
    );
    o.push_str("<table><tr><th>trial</th><th>hypothesis</th><th>stage</th><th>status</th><th>seed</th><th>objective</th><th>failure</th></tr>\n");
    for t in trials {
        let _ = writeln!(
            o,
            "<tr><td><a href=\"/campaigns/{id}/trials/{tid}\">t{tid}</a></td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&view.labelled_title(t.hypothesis)),
            esc(t.stage.name()),
            esc(t.status.name()),
            t.seed,
            t.objective.map_or("–".into(), |v| format!("{v:.6}")),
            t.diagnosis
                .as_ref()
                .map_or("", |d| crate::strategy::failure_class_name(d.class)),
            tid = t.id
        );
    }
    o.push_str("</table>\n");
    if view.row.state.is_active() {
        amend_form(&mut o, &view, csrf);
    }
    Ok(Some(layout(&format!("campaign {id}"), &o)))
}

fn amend_form(o: &mut String, view: &View, csrf: &str) {
    let b = view.row.budget();
    let s = &view.row.spec.strategies;
    let _ = writeln!(
        o,
        "<h2 id=\"amend\">Ask for a change</h2>\n<p>Raise the budget (totals) or change the strategies; each kind of change becomes an approval request, as with <code>reagent amend</code>.</p>\n<form method=\"post\" action=\"/campaigns/{id}/amend\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\n<label>CPU-hours <input name=\"cpu_hours\" value=\"{}\" size=\"8\"></label> <label>GPU-hours <input name=\"gpu_hours\" value=\"{}\" size=\"8\"></label> <label>trials <input name=\"max_trials\" value=\"{}\" size=\"6\"></label><br>\n<label>generator <input name=\"generator\" value=\"{}\" size=\"40\"></label><br><label>debugger <input name=\"debugger\" value=\"{}\" size=\"40\"></label><br>\n<label><input type=\"checkbox\" name=\"approve\" value=\"1\"> approve it now as me, where the policy allows</label> <button>Ask</button></form>",
        esc(csrf),
        b.cpu_hours,
        b.gpu_hours,
        b.max_trials,
        esc(&s.generator.to_string()),
        esc(&s.debugger.to_string()),
        id = view.row.id
    );
}

/// What the amend form sends.
#[derive(serde::Deserialize)]
pub struct AmendForm {
    pub csrf: String,
    pub cpu_hours: f64,
    pub gpu_hours: f64,
    pub max_trials: u32,
    pub generator: String,
    pub debugger: String,
    #[serde(default)]
    pub approve: Option<String>,
}

/// A change asked for from the browser, as `who`: the same requests as
/// `reagent amend` (only strategies and the budget, never shrinking).
pub fn amend(ws: &Workspace, id: u64, f: &AmendForm, who: &Identity) -> anyhow::Result<String> {
    let policy = ws.policy()?;
    let store = open(ws)?;
    let Some(row) = store.campaign(id)? else {
        return Ok(format!("no campaign {id}"));
    };
    let mut new = row.spec.clone();
    new.budget.cpu_hours = f.cpu_hours;
    new.budget.gpu_hours = f.gpu_hours;
    new.budget.max_trials = f.max_trials;
    for (field, text) in [("generator", &f.generator), ("debugger", &f.debugger)] {
        let text = text.trim();
        let source = crate::strategy::StrategySource::parse(text);
        if let crate::strategy::StrategySource::File(p) = &source
            && !p.is_absolute()
        {
            return Ok(format!(
                "the {field} {text:?} must be builtin:NAME or an absolute path to a component"
            ));
        }
        if field == "generator" {
            new.strategies.generator = source;
        } else {
            new.strategies.debugger = source;
        }
    }
    let earlier = store.approvals()?;
    let requests = match governance::amend::requests(&row, &new, "the dashboard", who, &earlier) {
        Ok(r) => r,
        Err(e) => return Ok(format!("{e:#}")),
    };
    if requests.is_empty() {
        return Ok(format!(
            "nothing to ask: campaign {id} already has that budget and those strategies"
        ));
    }
    if new.strategies != row.spec.strategies
        && let Err(e) =
            crate::workspace::inspect_strategies(&new.strategies, crate::workspace::new_sandbox()?)
    {
        return Ok(format!("{e:#}"));
    }
    let approve_as = f.approve.is_some().then_some((who, &policy));
    let (rows, refused) = governance::amend::raise(&store, requests, approve_as)?;
    drop(store);
    if rows.iter().any(|r| r.state == ApprovalState::Approved) {
        crate::workspace::wake(ws, &mut |_| {})?;
    }
    let mut said: Vec<String> = rows
        .iter()
        .map(|r| format!("request {} ({}) {}", r.id, r.kind.name(), r.state.name()))
        .collect();
    if let Some(e) = refused {
        said.push(format!("approving now was refused: {e:#}"));
    }
    Ok(said.join("; "))
}

/// One trial: its configuration, metrics, curve, log tail and diagnosis.
pub fn trial(ws: &Workspace, id: u64, tid: u64) -> anyhow::Result<Option<String>> {
    let store = open(ws)?;
    let Some(c) = store.campaign(id)? else {
        return Ok(None);
    };
    let Some(t) = store.trials(id)?.into_iter().find(|t| t.id == tid) else {
        return Ok(None);
    };
    let curves = store.curves(id, tid)?;
    drop(store);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<h1>Trial t{tid} of campaign <a href=\"/campaigns/{id}\">{id}</a></h1><table>"
    );
    let config = crate::campaign::engine::full_config(&c.spec, &t.assignments);
    let rows = [
        ("status", t.status.name().to_string()),
        ("stage", t.stage.name().to_string()),
        ("hypothesis", format!("h{}", t.hypothesis)),
        ("seed", t.seed.to_string()),
        (
            "configuration",
            config
                .iter()
                .map(|(k, v)| format!("{k} = {}", crate::strategy::render_value(v)))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "objective",
            t.objective.map_or("–".into(), |v| format!("{v:.6}")),
        ),
        (
            "CPU-hours",
            format!("{:.4} spent, {:.4} reserved", t.spent_cpu, t.reserved_cpu),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(o, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    }
    for (k, v) in &t.metrics {
        let _ = writeln!(o, "<tr><th>{}</th><td class=\"n\">{v}</td></tr>", esc(k));
    }
    o.push_str("</table>\n");
    if let Some(points) = curves.get(&c.spec.objective.metric) {
        let _ = writeln!(o, "<h2>{} by step</h2>", esc(&c.spec.objective.metric));
        if let Some(svg) = crate::campaign::html::curve_svg(points)? {
            o.push_str(&svg);
        }
        o.push_str(
            "<details><summary>the values</summary><table><tr><th>step</th><th>value</th></tr>",
        );
        for (step, v) in points.iter().take(500) {
            let _ = writeln!(
                o,
                "<tr><td class=\"n\">{step}</td><td class=\"n\">{v}</td></tr>"
            );
        }
        o.push_str("</table></details>\n");
    }
    if let Some(d) = &t.diagnosis {
        let _ = writeln!(
            o,
            "<h2>Diagnosis</h2><pre>{}</pre>",
            esc(&serde_json::to_string_pretty(d).unwrap_or_default())
        );
    }
    if let Some(out) = &t.outcome {
        let _ = writeln!(o, "<h2>Log tail</h2><pre>{}</pre>", esc(&out.log_tail));
    }
    Ok(Some(layout(&format!("trial {tid}"), &o)))
}

/// Requests waiting for a person, with their payload and the forms.
pub fn approvals(ws: &Workspace, csrf: &str, said: Option<&str>) -> anyhow::Result<String> {
    let store = open(ws)?;
    let mut o = String::from("<h1>Approvals</h1>\n");
    if let Some(s) = said {
        let _ = writeln!(o, "<p class=\"flash\">{}</p>", esc(s));
    }
    let all = store.approvals()?;
    let pending: Vec<_> = all
        .iter()
        .filter(|a| a.state == ApprovalState::Pending)
        .collect();
    if pending.is_empty() {
        o.push_str("<p>Nothing waits for a person.</p>\n");
    }
    for a in pending {
        let _ = writeln!(
            o,
            "<section id=\"r{id}\"><h2>Request {id}: {} for campaign <a href=\"/campaigns/{c}\">{c}</a></h2>\n<p>{}</p><p>Asked by {} at {}; expires at {}. Payload sha256 <code>{}</code>.</p>\n<pre>{}</pre>\n<form method=\"post\" action=\"/approvals/{id}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"hash\" value=\"{}\"><label>Note or reason <input name=\"note\" size=\"50\"></label> <button name=\"decision\" value=\"approve\">Approve</button> <button name=\"decision\" value=\"reject\">Reject</button></form></section>",
            esc(a.kind.name()),
            esc(&a.summary),
            esc(&a.requested_by),
            utc(a.created_ms),
            utc(a.expires_ms),
            esc(&a.payload_hash),
            esc(&serde_json::to_string_pretty(&a.payload).unwrap_or_default()),
            esc(csrf),
            esc(&a.payload_hash),
            id = a.id,
            c = a.campaign
        );
    }
    o.push_str("<h2>Decided</h2><table><tr><th>request</th><th>campaign</th><th>kind</th><th>state</th><th>by</th><th>note</th></tr>\n");
    for a in all
        .iter()
        .rev()
        .filter(|a| a.state != ApprovalState::Pending)
        .take(50)
    {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            a.id,
            a.campaign,
            esc(a.kind.name()),
            esc(a.state.name()),
            esc(a.decided_by.as_deref().unwrap_or("")),
            esc(a.note.as_deref().unwrap_or(""))
        );
    }
    o.push_str("</table>\n");
    Ok(layout("approvals", &o))
}

/// A decision from the browser, as `who`, through governance; then a wake
/// so that the campaign acts on it. Returns what to tell the person.
pub fn decide(
    ws: &Workspace,
    id: u64,
    approve: bool,
    note: String,
    expect_hash: Option<String>,
    who: &Identity,
) -> anyhow::Result<String> {
    let policy = ws.policy()?;
    let store = open(ws)?;
    let row = match governance::decide_checked(
        &store,
        Decision {
            id,
            approve,
            by: who,
            note,
            expect_hash,
            now: now_ms(),
        },
        &policy,
    ) {
        Ok(row) => row,
        Err(e) => return Ok(format!("request {id}: {e:#}")),
    };
    let active = store
        .campaign(row.campaign)?
        .is_some_and(|c| c.state.is_active());
    drop(store);
    if active {
        crate::workspace::wake(ws, &mut |_| {})?;
    }
    Ok(format!(
        "request {id} ({} for campaign {}) {} by {}",
        row.kind.name(),
        row.campaign,
        row.state.name(),
        who.name()
    ))
}

pub fn insights(ws: &Workspace) -> anyhow::Result<String> {
    let store = open(ws)?;
    let mut o = String::from(
        "<h1>Insights</h1><table><tr><th>campaign</th><th>recorded</th><th>change</th><th>effect</th><th>95% CI</th><th>confirmed</th><th>trials</th></tr>\n",
    );
    for r in store.recent_insights(500)? {
        let change = r
            .assignments
            .iter()
            .map(|a| format!("{} = {}", a.knob, crate::strategy::render_value(&a.value)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}<br><small>{}</small></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(&r.campaign),
            esc(&r.recorded),
            esc(&change),
            esc(&r.title),
            r.effect.map_or("–".into(), |e| format!("{e:.6}")),
            match (r.ci95_low, r.ci95_high) {
                (Some(l), Some(h)) => format!("[{l:.6}, {h:.6}]"),
                _ => "–".into(),
            },
            if r.confirmed { "yes" } else { "no" },
            r.trials
        );
    }
    o.push_str("</table>\n");
    Ok(layout("insights", &o))
}

/// The chain's verification and the last 200 entries.
pub fn audit(ws: &Workspace) -> anyhow::Result<String> {
    let store = open(ws)?;
    let mut o = String::from("<h1>Audit log</h1>\n");
    match store.verify_chain()? {
        Ok(n) => {
            let _ = writeln!(
                o,
                "<p>Verified: {n} entries, every hash chains to the one before.</p>"
            );
        }
        Err(b) => {
            let _ = writeln!(
                o,
                "<p class=\"flash\">Broken at entry {}: {}</p>",
                b.seq,
                esc(&b.problem)
            );
        }
    }
    let count = store.event_count()?;
    let events = store.events_raw(count.saturating_sub(199).max(1))?;
    o.push_str("<table><tr><th>#</th><th>time</th><th>campaign</th><th>event</th></tr>\n");
    for e in events.iter().rev() {
        let body: String = e.body.get().chars().take(300).collect();
        let _ = writeln!(
            o,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            e.seq,
            utc(e.at_ms),
            e.campaign.map_or(String::new(), |c| c.to_string()),
            esc(&body)
        );
    }
    o.push_str("</table>\n");
    Ok(layout("audit log", &o))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_script_is_the_only_script() {
        let page = super::layout("<script>x</script>", "<p>hi</p>");
        assert_eq!(page.matches("<script").count(), 1);
        assert!(page.contains("<script src=\"/static/live.js\"></script>"));
    }
}
