//! `reagent insights list|show|export|import`: the workspace's records of
//! what past campaigns learned, and carrying them between workspaces.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;

use crate::cli::term;
use crate::insights::{self, InsightRecord};
use crate::records::campaign::CampaignRow;
use crate::store::Store;
use crate::strategy::{Direction, Phase, failure_class_name, render_value};
use crate::workspace::Workspace;

/// `reagent insights …`.
#[derive(Debug, Subcommand)]
pub enum InsightsCommand {
    /// List insight records, oldest first: id, campaign, the change, its
    /// effect (positive = better) ± the 95% CI half-width, trials that
    /// succeeded and failed, CPU-hours, and the failure class of a change
    /// that failed.
    ///
    /// A record is written for every change a campaign ran when the
    /// campaign ends (finished, halted or cancelled), or imported with
    /// `reagent insights import`. With --json: a JSON array of records in
    /// the format of docs/insights.md.
    List {
        /// Only records that change this knob.
        #[arg(long, value_name = "KNOB")]
        knob: Option<String>,
        /// Only records from campaigns with this tag.
        #[arg(long, value_name = "TAG")]
        tag: Option<String>,
        /// Only changes that failed.
        #[arg(long)]
        failures: bool,
        /// Only records campaign ID's generator is shown: from other
        /// campaigns, every knob present there with a value of its kind.
        #[arg(long, value_name = "ID")]
        campaign: Option<u64>,
        /// Print a JSON array of records.
        #[arg(long)]
        json: bool,
    },
    /// Show one record in full. ID may be any unique prefix of its id.
    Show {
        id: String,
        /// Print the record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write records as JSON lines (one record per line), to FILE or, with
    /// no FILE or `-`, to stdout. A file is written atomically.
    Export {
        /// Where to write (default, or `-`: stdout).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// Only records from campaigns with this tag.
        #[arg(long, value_name = "TAG")]
        tag: Option<String>,
    },
    /// Add the records of a JSON-lines file (`-`: stdin) to this workspace.
    ///
    /// The whole file is checked first: a malformed or truncated line, an
    /// unknown field, a number that is not finite or a record with no knob
    /// change is reported as FILE:LINE and nothing is imported. Records
    /// already present (same id) are skipped, so importing a file twice
    /// changes nothing. The import is appended to the audit log with the
    /// file's sha256.
    Import {
        /// The JSON-lines file to read (`-`: stdin).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Check the file and count what would be imported; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

impl InsightsCommand {
    /// Whether the command only prints (and may end quietly on a closed pipe).
    pub fn only_prints(&self) -> bool {
        !matches!(self, InsightsCommand::Import { .. })
    }
}

pub fn run(ws: &Workspace, cmd: InsightsCommand) -> anyhow::Result<ExitCode> {
    let store = ws.open_store(Duration::from_secs(30))?;
    match cmd {
        InsightsCommand::List {
            knob,
            tag,
            failures,
            campaign,
            json,
        } => {
            let filter = Filter {
                knob,
                tag,
                failures,
                campaign: campaign
                    .map(|id| campaign_row(&store, ws, id))
                    .transpose()?,
            };
            list(&store, &filter, json)
        }
        InsightsCommand::Show { id, json } => show(&store, ws, &id, json),
        InsightsCommand::Export { file, tag } => export(&store, file.as_deref(), tag.as_deref()),
        InsightsCommand::Import { file, dry_run } => import(&store, &file, dry_run),
    }
}

fn campaign_row(store: &Store, ws: &Workspace, id: u64) -> anyhow::Result<CampaignRow> {
    store.campaign(id)?.with_context(|| {
        format!(
            "no campaign {id} in {}; list them with `reagent status`",
            ws.dir.display()
        )
    })
}

struct Filter {
    knob: Option<String>,
    tag: Option<String>,
    failures: bool,
    campaign: Option<CampaignRow>,
}

impl Filter {
    fn apply(&self, records: Vec<InsightRecord>) -> Vec<InsightRecord> {
        let records = match &self.campaign {
            Some(c) => insights::applicable(records, &c.spec, Some(c.id)),
            None => records,
        };
        records
            .into_iter()
            .filter(|r| {
                self.knob
                    .as_ref()
                    .is_none_or(|k| r.assignments.iter().any(|a| &a.knob == k))
            })
            .filter(|r| self.tag.as_ref().is_none_or(|t| r.tags.contains(t)))
            .filter(|r| !self.failures || r.failure.is_some())
            .collect()
    }
}

/// `1 record`, `2 records`.
fn records(n: usize) -> String {
    format!("{n} record{}", if n == 1 { "" } else { "s" })
}

/// A number with four significant digits (fixed-point).
fn num(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let decimals = (3 - x.abs().log10().floor() as i32).clamp(0, 12) as usize;
    format!("{x:.decimals$}")
}

/// Compute in hours: four significant digits, tiny amounts in e-notation.
fn hours(x: f64) -> String {
    if x > 0.0 && x < 1e-3 {
        format!("{x:.1e}")
    } else {
        num(x)
    }
}

/// `lr 0.3 → 0.1, optimizer sgd → adam` (terminal-safe: knob names and
/// values may come from an imported file).
fn change(r: &InsightRecord) -> String {
    let text = r
        .assignments
        .iter()
        .map(|a| match r.baseline.iter().find(|b| b.knob == a.knob) {
            Some(b) => format!(
                "{} {} → {}",
                a.knob,
                render_value(&b.value),
                render_value(&a.value)
            ),
            None => format!("{} → {}", a.knob, render_value(&a.value)),
        })
        .collect::<Vec<_>>()
        .join(", ");
    term::line(&text).into_owned()
}

/// `+0.0123 ± 0.0040`, or `—` when there is no effect.
fn effect(r: &InsightRecord) -> String {
    match (r.effect, r.ci95_low, r.ci95_high) {
        (Some(e), Some(lo), Some(hi)) => {
            let sign = if e > 0.0 { "+" } else { "" };
            format!("{sign}{} ± {}", num(e), num((hi - lo) / 2.0))
        }
        _ => "—".into(),
    }
}

fn failure(r: &InsightRecord) -> &'static str {
    r.failure.map_or("—", failure_class_name)
}

fn list(store: &Store, filter: &Filter, json: bool) -> anyhow::Result<ExitCode> {
    let all = store.insights()?;
    let total = all.len();
    let records = filter.apply(all);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&records)?)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    if records.is_empty() {
        if total == 0 {
            writeln!(
                out,
                "no insight records in this workspace yet: a campaign records one per change it ran when it ends (finished, halted or cancelled); `reagent insights import FILE` adds records exported from another workspace"
            )?;
        } else {
            writeln!(
                out,
                "none of the {} in this workspace match; drop a filter to see more",
                self::records(total)
            )?;
        }
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|r| {
            [
                r.id.get(..8).unwrap_or(&r.id).to_string(),
                term::line(&r.campaign).into_owned(),
                change(r),
                effect(r),
                format!("{}/{}", r.trials, r.failed),
                hours(r.cost_cpu_hours),
                failure(r).to_string(),
            ]
        })
        .collect();
    let header = [
        "id",
        "campaign",
        "change",
        "effect ± 95% CI",
        "ok/failed",
        "CPU-h",
        "failure",
    ];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let line = |cells: [&str; 7]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i == 3 || i == 4 || i == 5 {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                if i + 1 < cells.len() {
                    s.push_str(&" ".repeat(pad));
                }
            }
            if i + 1 < cells.len() {
                s.push_str("  ");
            }
        }
        s
    };
    writeln!(out, "{}", line(header))?;
    for r in &rows {
        writeln!(
            out,
            "{}",
            line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6]])
        )?;
    }
    writeln!(
        out,
        "{} of {}; effect is the improvement on each campaign's own metric (positive = better); `reagent insights show ID` for one in full",
        records.len(),
        self::records(total)
    )?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The one record whose id starts with `prefix`.
fn find(store: &Store, ws: &Workspace, prefix: &str) -> anyhow::Result<InsightRecord> {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.is_empty() {
        bail!("give an insight id (or a prefix of one); list them with `reagent insights list`");
    }
    let mut found = store.insights_by_prefix(&prefix)?;
    match found.len() {
        0 => bail!(
            "no insight record `{prefix}` in {}; list them with `reagent insights list`",
            ws.dir.display()
        ),
        1 => Ok(found.remove(0)),
        n => {
            let candidates: Vec<String> = found
                .iter()
                .take(10)
                .map(|r| format!("  {}  {}: {}", r.id, term::line(&r.campaign), change(r)))
                .collect();
            bail!(
                "`{prefix}` is the start of {n} insight records; give more digits:\n{}{}",
                candidates.join("\n"),
                if n > 10 { "\n  …" } else { "" }
            )
        }
    }
}

fn show(store: &Store, ws: &Workspace, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let r = find(store, ws, id)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let direction = match r.direction {
        Direction::Minimize => "minimize",
        Direction::Maximize => "maximize",
    };
    let phase = match r.phase {
        Phase::Validate => "validate",
        Phase::Combine => "combine",
        Phase::Exploit => "exploit",
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "insight {}", r.id)?;
    writeln!(
        out,
        "campaign   {}{}",
        term::line(&r.campaign),
        r.campaign_id.map_or(String::new(), |c| format!(
            " (campaign {c} in this workspace)"
        ))
    )?;
    writeln!(out, "origin     {}", term::line(&r.origin))?;
    writeln!(out, "recorded   {}", r.recorded)?;
    writeln!(
        out,
        "tags       {}",
        if r.tags.is_empty() {
            "—".to_string()
        } else {
            term::line(&r.tags.join(", ")).into_owned()
        }
    )?;
    writeln!(out, "objective  {direction} {}", term::line(&r.metric))?;
    writeln!(out, "title      {}", term::line(&r.title))?;
    writeln!(out, "phase      {phase}")?;
    writeln!(out, "change     {}", change(&r))?;
    match (r.effect, r.ci95_low, r.ci95_high) {
        (Some(e), Some(lo), Some(hi)) => writeln!(
            out,
            "effect     {} (positive = better), 95% CI [{}, {}], {}",
            num(e),
            num(lo),
            num(hi),
            if r.confirmed {
                "fresh-seed confirmation runs"
            } else {
                "exploration runs"
            }
        )?,
        _ => writeln!(out, "effect     — (no succeeded trial to measure)")?,
    }
    writeln!(
        out,
        "trials     {} succeeded, {} failed",
        r.trials, r.failed
    )?;
    writeln!(
        out,
        "cost       {} CPU-hours, {} GPU-hours",
        hours(r.cost_cpu_hours),
        hours(r.cost_gpu_hours)
    )?;
    writeln!(out, "failure    {}", failure(&r))?;
    if let Some(g) = &r.guard_violation {
        writeln!(
            out,
            "guard      {} (not shown to strategies as evidence)",
            term::line(g)
        )?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn export(store: &Store, file: Option<&Path>, tag: Option<&str>) -> anyhow::Result<ExitCode> {
    let records: Vec<InsightRecord> = store
        .insights()?
        .into_iter()
        .filter(|r| tag.is_none_or(|t| r.tags.iter().any(|x| x == t)))
        .collect();
    let text = insights::to_jsonl(&records)?;
    match file.filter(|f| f.as_os_str() != "-") {
        Some(path) => {
            super::audit::write_atomically(path, &text)?;
            println!(
                "exported {} to {}{}",
                self::records(records.len()),
                path.display(),
                if records.is_empty() {
                    "; records are written when a campaign ends"
                } else {
                    ""
                }
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&text)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn import(store: &Store, file: &Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let (label, bytes) = if file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read stdin")?;
        ("stdin".to_string(), bytes)
    } else {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        (file.display().to_string(), bytes)
    };
    if !dry_run {
        // An import extends the audit log: never on top of a broken one.
        if let Err(b) = store.verify_chain()? {
            bail!(
                "the audit log is broken at entry {}: {}; nothing was imported (see `reagent audit verify`)",
                b.seq,
                b.problem
            );
        }
    }
    let outcome = match insights::import(store, &label, &bytes, dry_run) {
        Ok(o) => o,
        Err(e) => match e.downcast_ref::<insights::ParseErrors>() {
            Some(errors) => bail!("{errors}\nnothing was imported from {label}"),
            None => return Err(e),
        },
    };
    if dry_run {
        println!(
            "would import {} ({} already present) from {label}; nothing was written (--dry-run)",
            records(outcome.imported),
            outcome.skipped
        );
    } else {
        println!(
            "imported {} ({} already present) from {label}",
            records(outcome.imported),
            outcome.skipped
        );
    }
    Ok(ExitCode::SUCCESS)
}
