//! Does knowledge carry over? Issue 8's measurement.
//!
//! 1. A *source* campaign tunes the example ranker on one synthetic data
//!    set (data seed 7) with `builtin:three-phase`; its insight records are
//!    exported (`reagent insights export`).
//! 2. For each *related* task — the same model on differently seeded data
//!    (seeds 11 to 15 by default) — the same campaign runs in a fresh
//!    workspace twice per generator: without insights, and after
//!    `reagent insights import` of the source's records. Generators:
//!    `builtin:three-phase` and `builtin:researcher`.
//! 3. Reported per run: the trials (in launch order, baseline included)
//!    until some trial's valid NE is at least the source campaign's
//!    relative improvement below that campaign's own baseline mean; a run
//!    that never gets there counts as its trial count + 1 (censored, shown
//!    as `>N`). The ratio is without ÷ with (> 1: insights help).
//!
//! Run with `cargo bench --bench transfer` (or `scripts/bench.sh transfer`).
//! Knobs: REAGENT_TRANSFER_SEEDS (comma list, default 11,12,13,14,15),
//! REAGENT_TRANSFER_TRIALS (per campaign, default 44),
//! REAGENT_TRANSFER_GENERATORS (default three-phase,researcher).
//! Writes target/bench/transfer.json and prints the researcher's first
//! proposals from insights (for the issue's transcript).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::{Value as Json, json};

mod ranker_bench;

use ranker_bench::{check, env_list, ranker_bin, repo};

const REAGENT: &str = env!("CARGO_BIN_EXE_reagent");

/// The data set of `seed`, under target/bench/transfer.
fn data(bin: &Path, seed: &str) -> PathBuf {
    let dir = repo().join(format!("target/bench/transfer/data-{seed}"));
    ranker_bench::ranker_data(bin, &dir, seed);
    dir
}

/// The example campaign on `data`, tagged with its data set.
fn campaign_toml(data: &Path, seed: &str, generator: &str, trials: &str) -> String {
    let toml = std::fs::read_to_string(repo().join("examples/ranker/campaign.toml")).unwrap();
    let set = |toml: String, key: &str, value: &str| {
        let re = regex::Regex::new(&format!(r"(?m)^{key}\s*=.*$")).unwrap();
        re.replace(&toml, format!("{key} = {value}")).into_owned()
    };
    let toml = toml
        .replace(
            "\"--data\", \"data\"",
            &format!("\"--data\", {:?}", data.display().to_string()),
        )
        // Search, not failure handling, is measured here.
        .replace(
            "REAGENT_RANKER_FLAKE = \"0.1\"",
            "REAGENT_RANKER_FLAKE = \"0\"",
        )
        .replace("\"synthetic-v1\"", &format!("\"synthetic-seed-{seed}\""));
    let toml = set(toml, "max_trials", trials);
    let toml = set(toml, "cpu_hours", "1000.0");
    format!("{toml}\n[strategies]\ngenerator = \"builtin:{generator}\"\nseed = {seed}\n")
}

struct Run {
    /// valid NE of each trial in launch order (None: not succeeded).
    values: Vec<Option<f64>>,
    /// Mean valid NE of the baseline's trials.
    baseline: f64,
    report: Json,
    wall: f64,
    dir: tempfile::TempDir,
}

fn reagent(dir: &Path, args: &[&str], path: &str) -> Output {
    Command::new(REAGENT)
        .args(args)
        .arg("--workspace")
        .arg(dir)
        .env("PATH", path)
        .output()
        .unwrap()
}

fn run(toml: &str, import: Option<&Path>, path: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    check(&reagent(dir.path(), &["init"], path), "reagent init");
    if let Some(file) = import {
        let f = file.display().to_string();
        check(
            &reagent(dir.path(), &["insights", "import", &f], path),
            "reagent insights import",
        );
    }
    let file = dir.path().join("campaign.toml");
    std::fs::write(&file, toml).unwrap();
    let start = Instant::now();
    let f = file.display().to_string();
    check(
        &reagent(dir.path(), &["run", &f, "--yes"], path),
        "reagent run",
    );
    let wall = start.elapsed().as_secs_f64();
    let trials: Json =
        serde_json::from_slice(&reagent(dir.path(), &["trials", "1", "--json"], path).stdout)
            .unwrap();
    let mut rows: Vec<&Json> = trials.as_array().unwrap().iter().collect();
    rows.sort_by_key(|t| t["id"].as_u64());
    let rows: Vec<&Json> = rows
        .into_iter()
        .filter(|t| !matches!(t["status"].as_str(), Some("queued" | "dropped")))
        .collect();
    let values = rows
        .iter()
        .map(|t| {
            (t["status"] == "succeeded")
                .then(|| t["metrics"]["valid_ne"].as_f64())
                .flatten()
        })
        .collect();
    let base: Vec<f64> = rows
        .iter()
        .filter(|t| t["hypothesis"] == 0 && t["status"] == "succeeded")
        .filter_map(|t| t["metrics"]["valid_ne"].as_f64())
        .collect();
    let baseline = base.iter().sum::<f64>() / base.len() as f64;
    let report: Json = serde_json::from_slice(
        &reagent(dir.path(), &["report", "1", "--format", "json"], path).stdout,
    )
    .unwrap();
    Run {
        values,
        baseline,
        report,
        wall,
        dir,
    }
}

/// Trials until a value reaches `target` (relative improvement), or
/// trials + 1 when none does.
fn trials_to(run: &Run, target: f64) -> (usize, bool) {
    let goal = run.baseline * (1.0 - target);
    match run.values.iter().position(|v| v.is_some_and(|v| v <= goal)) {
        Some(i) => (i + 1, true),
        None => (run.values.len() + 1, false),
    }
}

fn show(n: (usize, bool)) -> String {
    if n.1 {
        n.0.to_string()
    } else {
        format!(">{}", n.0 - 1)
    }
}

/// The first generator call of campaign 1: its log and its hypotheses.
fn first_proposals(dir: &Path, path: &str) -> String {
    let o = reagent(dir, &["audit", "export", "--campaign", "1"], path);
    check(&o, "reagent audit export");
    let mut out = String::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let Ok(v) = serde_json::from_str::<Json>(line) else {
            continue;
        };
        let record = &v["record"];
        if record.is_null() || record["input"]["call"] != "propose" {
            continue;
        }
        if record["input"]["context"]["phase"] != "Validate" {
            continue;
        }
        for l in record["log"]["lines"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  [log {}] {}\n",
                l["level"].as_str().unwrap_or(""),
                l["message"].as_str().unwrap_or("")
            ));
        }
        let list = &record["outcome"]["Ok"]["hypotheses"];
        for h in list.as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  - {}\n      {}\n",
                h["title"].as_str().unwrap_or(""),
                h["rationale"].as_str().unwrap_or("")
            ));
        }
        break;
    }
    out
}

fn main() {
    let seeds = env_list("REAGENT_TRANSFER_SEEDS", "11,12,13,14,15");
    let generators = env_list("REAGENT_TRANSFER_GENERATORS", "three-phase,researcher");
    let trials = std::env::var("REAGENT_TRANSFER_TRIALS").unwrap_or_else(|_| "44".into());
    let bin = ranker_bin();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    // 1. The source task.
    let source_data = data(&bin, "7");
    let source = run(
        &campaign_toml(&source_data, "7", "three-phase", &trials),
        None,
        &path,
    );
    let effect = source.report["effect"]["estimate"].as_f64().unwrap_or(0.0);
    let base = source.report["baseline"]["mean"]
        .as_f64()
        .unwrap_or(source.baseline);
    let target = effect / base;
    let export = repo().join("target/bench/transfer/source-insights.jsonl");
    let o = reagent(
        source.dir.path(),
        &["insights", "export", &export.display().to_string()],
        &path,
    );
    check(&o, "reagent insights export");
    let records = std::fs::read_to_string(&export).unwrap().lines().count();
    println!(
        "source: ranker on data seed 7, {} trials in {:.0}s: valid NE {base:.5} → improvement {effect:.5} ({:.2}% of baseline); {records} insight records exported",
        source.values.len(),
        source.wall,
        100.0 * target
    );

    // 2. Related tasks, without and with the source's insights.
    let mut rows = Vec::new();
    let mut transcript = String::new();
    for generator in &generators {
        println!(
            "\n== {generator}: trials to reach {:.2}% below the related task's baseline ==",
            100.0 * target
        );
        let mut ratios = Vec::new();
        for seed in &seeds {
            let d = data(&bin, seed);
            let toml = campaign_toml(&d, seed, generator, &trials);
            let without = run(&toml, None, &path);
            let with = run(&toml, Some(&export), &path);
            let (a, b) = (trials_to(&without, target), trials_to(&with, target));
            let ratio = a.0 as f64 / b.0 as f64;
            ratios.push(ratio);
            println!(
                "  data seed {seed}: without insights {:>4}, with {:>4}   ratio {ratio:.2}   (final best {:.5} vs {:.5}; baselines {:.5}, {:.5}; {:.0}s + {:.0}s)",
                show(a),
                show(b),
                without
                    .values
                    .iter()
                    .flatten()
                    .cloned()
                    .fold(f64::INFINITY, f64::min),
                with.values
                    .iter()
                    .flatten()
                    .cloned()
                    .fold(f64::INFINITY, f64::min),
                without.baseline,
                with.baseline,
                without.wall,
                with.wall
            );
            if generator == "researcher" && transcript.is_empty() {
                transcript = format!(
                    "builtin:researcher, data seed {seed}, with the source's insights — first validate call:\n{}",
                    first_proposals(with.dir.path(), &path)
                );
            }
            rows.push(json!({
                "generator": generator, "seed": seed,
                "without": {"trials_to_target": a.0, "reached": a.1, "trials": without.values.len(), "baseline": without.baseline},
                "with": {"trials_to_target": b.0, "reached": b.1, "trials": with.values.len(), "baseline": with.baseline},
                "ratio": ratio,
            }));
        }
        let mut sorted = ratios.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let geo = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
        println!(
            "  {generator}: median ratio {median:.2}, geometric mean {geo:.2} over {} seeds (> 1: fewer trials with insights)",
            ratios.len()
        );
    }
    if !transcript.is_empty() {
        println!("\n{transcript}");
    }
    let out = repo().join("target/bench/transfer.json");
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&json!({
            "source": {"effect": effect, "baseline": base, "target_relative": target, "records": records},
            "runs": rows,
        }))
        .unwrap(),
    )
    .unwrap();
    println!("\nwritten {}", out.display());
}
