//! `reagent demo`: the whole loop on the example ranking model — build the
//! trainer, generate click logs, register and approve the campaign, run it
//! in the foreground, print the proposal.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context as _, bail};

use super::campaign::print_progress;
use crate::campaign::engine::View;
use crate::campaign::report;
use crate::workspace::{self, RunMode, Workspace};

/// Where the example trainer's sources are (the demo runs from a checkout).
fn ranker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ranker")
}

fn repo_target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Builds `reagent-ranker` (release) and returns the binary's path.
pub fn build_ranker() -> anyhow::Result<PathBuf> {
    let dir = ranker_dir();
    if !dir.join("Cargo.toml").exists() {
        bail!(
            "the example trainer is not at {}; `reagent demo` runs from a source checkout of Reagent",
            dir.display()
        );
    }
    let target = repo_target().join("ranker");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--release", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .output()
        .context("cannot run cargo to build the example trainer")?;
    if !out.status.success() {
        bail!(
            "building the example trainer failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(target.join("release").join("reagent-ranker"))
}

/// The demo's campaign file, pointing at `ranker` and `data`.
pub fn campaign_text(ranker: &Path, data: &Path, max_trials: u32) -> anyhow::Result<String> {
    let template = std::fs::read_to_string(ranker_dir().join("campaign.toml"))
        .context("cannot read examples/ranker/campaign.toml")?;
    let mut text = template
        .replacen(
            "\"reagent-ranker\"",
            &format!("{:?}", ranker.display().to_string()),
            1,
        )
        .replacen("\"data\"", &format!("{:?}", data.display().to_string()), 1);
    if max_trials > 0 {
        let re = regex::Regex::new(r"(?m)^max_trials = \d+").expect("a valid regex");
        text = re
            .replace(&text, format!("max_trials = {max_trials}").as_str())
            .into_owned();
    }
    Ok(text)
}

pub struct DemoOptions {
    pub dir: Option<PathBuf>,
    pub max_trials: u32,
    pub data_args: Vec<String>,
}

pub fn run(opts: DemoOptions) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let dir = opts.dir.unwrap_or_else(|| repo_target().join("demo"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;

    println!(
        "reagent demo — the whole loop on the example ranking model, in {}",
        dir.display()
    );
    println!("[1/5] building the example trainer (examples/ranker, release)…");
    let ranker = build_ranker()?;

    let data = dir.join("data");
    if data.join("train.txt").exists() {
        println!("[2/5] click logs already in {}", data.display());
    } else {
        println!(
            "[2/5] generating synthetic click logs (users, items, query groups, position bias, feature interactions)…"
        );
        let out = Command::new(&ranker)
            .args(["gen-data", "--out"])
            .arg(&data)
            .args(["--seed", "7"])
            .args(&opts.data_args)
            .output()
            .context("cannot run reagent-ranker gen-data")?;
        if !out.status.success() {
            bail!("gen-data failed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        print!("      {}", String::from_utf8_lossy(&out.stdout));
    }

    // A fresh workspace each time, so the demo always shows a whole run.
    let _ = std::fs::remove_dir_all(dir.join(Workspace::DIR));
    let ws = Workspace::init(&dir)?;
    let file = dir.join("campaign.toml");
    std::fs::write(&file, campaign_text(&ranker, &data, opts.max_trials)?)
        .with_context(|| format!("cannot write {}", file.display()))?;
    println!(
        "[3/5] planning the campaign ({}); the demo approves its own plan",
        file.display()
    );
    let (id, _) = super::plan::plan(&ws, &file, true, false)?;

    println!(
        "[4/5] running it in the foreground (trials, failures and their diagnoses as they happen)…"
    );
    workspace::run(
        &ws,
        id,
        RunMode::Foreground,
        &mut print_progress,
        super::campaign::stop_on_signals(),
    )?;

    let store = ws.open_store(std::time::Duration::from_secs(30))?;
    let view = View::load(&store, id)?;
    let r = report::build(&view);
    let report_path = dir.join("report.md");
    std::fs::write(&report_path, report::markdown(&r))?;
    println!();
    println!("[5/5] proposal");
    println!("{}", r.verdict);
    if let (Some(b), Some(best), Some(e)) = (&r.baseline, &r.best, &r.effect) {
        println!(
            "  {}: baseline {:.5} → best {:.5}; effect {:+.5} (95% CI [{:+.5}, {:+.5}])",
            r.objective.metric, b.mean, best.mean, e.estimate, e.ci95_low, e.ci95_high
        );
        for d in &best.diff {
            println!("  change: {d}");
        }
    }
    // NDCG@10 beside NE, from the same confirmation runs.
    if let Some(best) = &r.best {
        let ndcg = |h: u64| -> Vec<f64> {
            view.trials
                .iter()
                .filter(|t| {
                    t.hypothesis == h
                        && t.status == crate::records::campaign::TrialStatus::Succeeded
                        && (!r.confirmed || t.stage == crate::records::campaign::Stage::Confirm)
                })
                .filter_map(|t| t.metrics.get("valid_ndcg").copied())
                .collect()
        };
        let (b, w) = (ndcg(0), ndcg(best.hypothesis));
        if let (Some(bs), Some(ws)) = (
            crate::campaign::stats::summarize(&b),
            crate::campaign::stats::summarize(&w),
        ) {
            let e =
                crate::campaign::stats::effect(crate::strategy::Direction::Maximize, &bs, &ws, 0.0);
            println!(
                "  valid_ndcg (NDCG@10): baseline {:.5} → best {:.5}; effect {:+.5} (95% CI [{:+.5}, {:+.5}])",
                bs.mean, ws.mean, e.estimate, e.ci95_low, e.ci95_high
            );
        }
    }
    if let Some(h) = &r.holdout {
        println!(
            "  holdout {}: baseline {} → best {}",
            h.metric,
            h.baseline_mean.map_or("n/a".into(), |v| format!("{v:.5}")),
            h.best_mean.map_or("n/a".into(), |v| format!("{v:.5}"))
        );
    }
    println!(
        "  {} trials ({} failed and diagnosed), {:.3} CPU-hours, wall {:.1} min",
        r.trials.total,
        r.trials.failed,
        r.spent.cpu_hours,
        started.elapsed().as_secs_f64() / 60.0
    );
    println!(
        "full report: {}   (also `reagent --workspace {} report {id}`)",
        report_path.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
