//! `reagent quota`: the workspace quota and where each campaign stands
//! under it.

use std::process::ExitCode;
use std::time::Duration;

use crate::quota::{self, Quota, Standing};
use crate::workspace::Workspace;

use super::term;

/// What to write when there is no quota yet.
const EXAMPLE: &str = "[quota]
jobs = 4                  # jobs at once, across every campaign
cpu_hours_per_day = 200   # rolling 24 hours (also: cpu_hours_per_week,
                          # gpu_hours_per_day, gpu_hours_per_week)

[quota.weights]           # campaign name = weight (1 when not listed)
ranker-ne = 2";

pub fn show(ws: &Workspace, json: bool) -> anyhow::Result<ExitCode> {
    let path = ws.dir.join(crate::config::FILE);
    let q = quota::load(&ws.dir)?;
    let store = ws.open_store(Duration::from_secs(30))?;
    let standing = quota::standing(
        &store,
        q.as_ref().unwrap_or(&Quota::default()),
        crate::store::now_ms(),
    )?;
    if json {
        let out = serde_json::json!({
            "file": path,
            "quota": q.as_ref().map(|q| serde_json::json!({
                "jobs": q.jobs,
                "cpu_hours_per_day": q.cpu_hours_per_day,
                "cpu_hours_per_week": q.cpu_hours_per_week,
                "gpu_hours_per_day": q.gpu_hours_per_day,
                "gpu_hours_per_week": q.gpu_hours_per_week,
                "weights": q.weights,
            })),
            "standing": standing,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(q) = q else {
        println!(
            "no workspace quota: each campaign runs up to its own max_parallel and budget.\nTo share one allowance between campaigns, write {}:\n\n{}\n\nThe driver reads it at every pass (`reagent run`, `reagent wake`); see docs/campaign.md#the-workspace-quota.",
            path.display(),
            EXAMPLE
        );
        print_places(None, &standing);
        return Ok(ExitCode::SUCCESS);
    };
    println!("quota ({}): {}", path.display(), q.describe());
    print_usage(&q, &standing);
    print_places(Some(&q), &standing);
    Ok(ExitCode::SUCCESS)
}

/// The quota's lines for `status` without an ID; nothing without a quota.
pub fn portfolio_header(
    ws: &Workspace,
    store: &crate::store::Store,
) -> anyhow::Result<Option<Standing>> {
    let Some(q) = quota::load(&ws.dir)? else {
        return Ok(None);
    };
    let standing = quota::standing(store, &q, crate::store::now_ms())?;
    println!("workspace quota: {}", q.describe());
    print_usage(&q, &standing);
    Ok(Some(standing))
}

fn print_usage(q: &Quota, s: &Standing) {
    let mut parts = Vec::new();
    match q.jobs {
        Some(j) => parts.push(format!("{} of {j} jobs running", s.running)),
        None => parts.push(format!("{} jobs running", s.running)),
    }
    let u = &s.usage;
    for (cap, used, what) in [
        (q.cpu_hours_per_day, u.cpu_day, "CPU-h in the last 24 h"),
        (q.cpu_hours_per_week, u.cpu_week, "CPU-h in the last 7 days"),
        (q.gpu_hours_per_day, u.gpu_day, "GPU-h in the last 24 h"),
        (q.gpu_hours_per_week, u.gpu_week, "GPU-h in the last 7 days"),
    ] {
        if let Some(cap) = cap {
            parts.push(format!("{used:.3} of {cap} {what}"));
        }
    }
    println!("  now: {}", parts.join("; "));
}

fn print_places(q: Option<&Quota>, s: &Standing) {
    if s.campaigns.is_empty() {
        println!("  no active campaigns");
        return;
    }
    for p in &s.campaigns {
        let share = match (q.and_then(|q| q.jobs), p.share) {
            (Some(_), Some(sh)) => format!("share {sh:.2} slots"),
            (Some(_), None) => "share — (nothing to launch)".to_string(),
            _ => String::new(),
        };
        println!(
            "  {:>3}  {:<20} {:<12} weight {:<4} {:<24} {} running, {} queued{}",
            p.campaign,
            term::line(&p.name),
            p.state,
            p.weight,
            share,
            p.running,
            p.queued,
            if p.paused { " (paused)" } else { "" }
        );
    }
}
