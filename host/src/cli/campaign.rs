//! `reagent init|plan|run|wake|status|trials|report|pause|resume|cancel`.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::ValueEnum;

use crate::campaign::engine::{Progress, View};
use crate::campaign::report;
use crate::cli::term;
use crate::governance::{self, Identity};
use crate::records::campaign::{CampaignRow, CampaignState, EventBody, TrialStatus};
use crate::store::{Store, now_ms};
use crate::strategy::render_value;
use crate::workspace::{self, RunMode, Workspace};

/// Exit code: the campaign halted or was cancelled, or an operation failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage or bad input (campaign file, IDs).
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Md,
    Json,
    /// One self-contained file with plots (no script, no network).
    Html,
}

fn user() -> String {
    governance::os_user()
}

/// CPU time of this process so far (user, system), in seconds.
pub fn self_cpu() -> (f64, f64) {
    // SAFETY: getrusage writes into the zeroed struct we pass; no other
    // precondition.
    #[allow(unsafe_code)]
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

pub fn init(dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let existing = dir.join(Workspace::DIR).join("reagent.redb").exists();
    let ws = Workspace::init(&dir)?;
    if existing {
        println!(
            "workspace {} already exists; left as it is",
            ws.dir.display()
        );
    } else {
        println!("created workspace {}", ws.dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit code of a foreground `run` stopped by Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
    // The next one ends the process at once: the store is consistent at
    // every commit, and the jobs run on under their supervisors.
    // SAFETY: signal() is async-signal-safe; SIG_DFL is a valid disposition.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
    }
}

/// Ctrl-C, SIGTERM and SIGHUP (the terminal closing) ask a foreground
/// driver to stop between passes; a second one ends it at once. Says so on
/// the terminal when the first one arrives.
pub fn stop_on_signals() -> &'static std::sync::atomic::AtomicBool {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic and resets its own
        // disposition, both async-signal-safe.
        #[allow(unsafe_code)]
        unsafe {
            let handler: extern "C" fn(libc::c_int) = on_stop_signal;
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
    std::thread::spawn(|| {
        while !STOP.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        println!(
            "\n{} stopping after the current pass; running jobs go on under their supervisors (signal again to exit at once)",
            ts()
        );
    });
    &STOP
}

fn ts() -> String {
    let ms = now_ms();
    let secs = (ms / 1000) % 86400;
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Prints engine progress as timestamped lines.
pub fn print_progress(p: Progress) {
    match p {
        Progress::Stage {
            campaign,
            stage,
            reason,
        } => {
            println!(
                "{} [c{campaign}] == {} == {}",
                ts(),
                stage.name(),
                term::line(&reason)
            )
        }
        Progress::Proposed {
            campaign,
            count,
            stage,
        } => {
            println!(
                "{} [c{campaign}] generator proposed {count} hypothes{} for {}",
                ts(),
                if count == 1 { "is" } else { "es" },
                stage.name()
            )
        }
        Progress::Launched {
            campaign,
            trial,
            title,
        } => {
            println!(
                "{} [c{campaign}] launch  t{trial:<4} {}",
                ts(),
                term::line(&title)
            )
        }
        Progress::Finished {
            campaign,
            trial,
            title,
            objective,
            status,
        } => match objective {
            Some(v) if status == TrialStatus::Succeeded => {
                println!(
                    "{} [c{campaign}] done    t{trial:<4} {v:.6}  {}",
                    ts(),
                    term::line(&title)
                )
            }
            _ => println!(
                "{} [c{campaign}] FAILED  t{trial:<4} {}",
                ts(),
                term::line(&title)
            ),
        },
        Progress::Diagnosed {
            campaign,
            trial,
            class,
            action,
        } => {
            println!(
                "{} [c{campaign}] debug   t{trial:<4} {} → {action}",
                ts(),
                crate::strategy::failure_class_name(class)
            )
        }
        Progress::Note { campaign, text } => {
            println!("{} [c{campaign}] {}", ts(), term::line(&text))
        }
        Progress::Summary { campaign, text } => {
            // Live progress is for people watching; logs get the events.
            if std::io::stdout().is_terminal() {
                println!("{} [c{campaign}] \x1b[2m{}\x1b[0m", ts(), term::line(&text));
            }
        }
        Progress::Done {
            campaign,
            state,
            summary,
        } => {
            println!(
                "{} [c{campaign}] {}: {}",
                ts(),
                state.name(),
                term::line(&summary)
            )
        }
    }
}

/// Records the operator's approval of campaign `id`'s plan.
fn approve(ws: &Workspace, store: &Store, id: u64) -> anyhow::Result<()> {
    let policy = ws.policy()?;
    governance::approve_plan(
        store,
        &policy,
        id,
        &Identity::current(),
        "approved on the command line (--yes)",
    )?;
    Ok(())
}

/// Resolves `target` (a campaign id, or a campaign file to plan first).
fn target_id(ws: &Workspace, target: &str, yes: bool) -> anyhow::Result<u64> {
    if let Ok(id) = target.parse::<u64>() {
        return Ok(id);
    }
    let path = Path::new(target);
    if !path.exists() {
        bail!("{target} is neither a campaign id nor a campaign file");
    }
    let (id, state) = super::plan::plan(ws, path, yes, false)?;
    if state == CampaignState::AwaitingApproval {
        bail!(
            "campaign {id} was registered and awaits approval; approve and run it with `reagent run {id} --yes`"
        );
    }
    Ok(id)
}

pub fn run(ws: &Workspace, target: &str, detach: bool, yes: bool) -> anyhow::Result<ExitCode> {
    let id = target_id(ws, target, yes)?;
    {
        let store = ws.open_store(Duration::from_secs(30))?;
        let c = store
            .campaign(id)?
            .with_context(|| format!("no campaign {id} in {}", ws.dir.display()))?;
        match c.state {
            CampaignState::AwaitingApproval | CampaignState::Draft if yes => {
                approve(ws, &store, id)?;
                println!("campaign {id}: plan approved by {}", user());
            }
            CampaignState::AwaitingApproval | CampaignState::Draft => {
                let request = store
                    .approvals_of(id)?
                    .into_iter()
                    .rev()
                    .find(|a| a.kind == governance::ApprovalKind::Plan)
                    .map_or(String::new(), |a| {
                        format!("`reagent approve {}`, or ", a.id)
                    });
                bail!(
                    "campaign {id} awaits approval of its plan; nothing launches before it is approved (approve it with {request}as {} with `reagent run {id} --yes`)",
                    user()
                )
            }
            CampaignState::Finished => {
                println!("campaign {id} is already finished (`reagent report {id}`)");
                return Ok(ExitCode::SUCCESS);
            }
            s if s.is_terminal() => {
                println!(
                    "campaign {id} is {}{}",
                    s.name(),
                    c.note.map_or(String::new(), |n| format!(": {n}"))
                );
                return Ok(ExitCode::from(EXIT_FAILED));
            }
            _ => {}
        }
    }
    let interactive = std::io::stdout().is_terminal();
    if !detach && interactive {
        println!(
            "driving campaign {id} in the foreground; Ctrl-C detaches (jobs keep running; `reagent run {id}` resumes)"
        );
    }
    let mode = if detach {
        RunMode::Detach
    } else {
        RunMode::Foreground
    };
    let stop = stop_on_signals();
    let end = workspace::run(ws, id, mode, &mut print_progress, stop)?;
    let pass = end.pass;
    if std::env::var_os("REAGENT_RUSAGE").is_some() {
        let (user, sys) = self_cpu();
        eprintln!("reagent-rusage: user {user:.6} s, sys {sys:.6} s");
    }
    if detach {
        println!(
            "campaign {id} is {} with {} job(s) in flight; no reagent process stays behind — the jobs' supervisors wake it (`reagent status {id}` to check)",
            pass.state.name(),
            pass.in_flight
        );
        return Ok(ExitCode::SUCCESS);
    }
    if end.interrupted {
        println!(
            "interrupted: campaign {id} is {} with {} job(s) still running under their supervisors, which wake the workspace as they end; `reagent run {id}` drives it again, `reagent status {id}` shows it",
            pass.state.name(),
            pass.in_flight
        );
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    let store = ws.open_store(Duration::from_secs(30))?;
    let view = View::load(&store, id)?;
    let r = report::build(&view);
    println!();
    println!("{}", r.verdict);
    let stopped = match &r.stopping {
        Some(st) => format!(
            ", {} stopped early (about {:.3} CPU-hours saved)",
            st.stopped, st.cpu_hours_saved
        ),
        None => String::new(),
    };
    println!(
        "full report: reagent report {id}   (trials: {} run, {} failed{stopped}; {:.3} CPU-hours)",
        r.trials.total, r.trials.failed, r.spent.cpu_hours
    );
    Ok(match view.row.state {
        CampaignState::Finished => ExitCode::SUCCESS,
        _ => ExitCode::from(EXIT_FAILED),
    })
}

pub fn wake(ws: &Workspace, quiet: bool) -> anyhow::Result<ExitCode> {
    if quiet {
        workspace::wake(ws, &mut |_| {})?;
    } else {
        workspace::wake(ws, &mut print_progress)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn status_json(store: &Store, c: &CampaignRow) -> anyhow::Result<serde_json::Value> {
    // The row's tally, kept by the engine; rows from before it existed
    // are tallied from their trials.
    let tally = match &c.tally {
        Some(t) => t.clone(),
        None => View::load(store, c.id)?.tally(),
    };
    Ok(serde_json::json!({
        "id": c.id,
        "name": c.spec.name,
        "state": c.state.name(),
        "stage": c.stage.name(),
        "paused": c.paused,
        "trials": {
            "queued": tally.queued,
            "running": tally.running,
            "succeeded": tally.succeeded,
            "failed": tally.failed,
            "stopped": tally.stopped,
        },
        "baseline": tally.baseline,
        "best": tally.best,
        "spent": {"cpu_hours": c.ledger.spent_cpu, "gpu_hours": c.ledger.spent_gpu},
        "reserved": {"cpu_hours": c.ledger.reserved_cpu, "gpu_hours": c.ledger.reserved_gpu},
        "budget": {"cpu_hours": c.budget().cpu_hours, "gpu_hours": c.budget().gpu_hours, "max_trials": c.budget().max_trials},
        "llm": c.spec.llm.as_ref().filter(|_| c.spec.strategies.grants.llm).map(|l| serde_json::json!({
            "model": l.model, "url": l.shown_url(), "tokens_used": c.llm_tokens, "token_budget": l.token_budget,
        })),
        "note": c.note,
        "pending_approvals": store
            .approvals_of(c.id)?
            .iter()
            .filter(|a| a.state == governance::ApprovalState::Pending)
            .map(|a| serde_json::json!({"id": a.id, "kind": a.kind.name(), "summary": a.summary}))
            .collect::<Vec<_>>(),
    }))
}

pub fn status(ws: &Workspace, id: Option<u64>, json: bool) -> anyhow::Result<ExitCode> {
    let store = ws.open_store(Duration::from_secs(30))?;
    let rows: Vec<CampaignRow> = match id {
        Some(id) => vec![
            store
                .campaign(id)?
                .with_context(|| format!("no campaign {id} in {}", ws.dir.display()))?,
        ],
        None => store.campaigns()?,
    };
    let mut values: Vec<serde_json::Value> = rows
        .iter()
        .map(|c| status_json(&store, c))
        .collect::<anyhow::Result<_>>()?;
    // The portfolio: the quota's line, and each campaign's place under it.
    // (Only without an ID: it reads every active campaign's trials.)
    let standing = match (id, json) {
        (Some(_), _) => None,
        (None, false) => super::quota::portfolio_header(ws, &store)?,
        (None, true) => crate::quota::load(&ws.dir)?
            .map(|q| crate::quota::standing(&store, &q, crate::store::now_ms()))
            .transpose()?,
    };
    for (v, c) in values.iter_mut().zip(&rows) {
        if let Some(p) = standing
            .as_ref()
            .and_then(|s| s.campaigns.iter().find(|p| p.campaign == c.id))
        {
            v["quota"] = serde_json::json!({"weight": p.weight, "share": p.share});
        }
    }
    if json {
        let out = if id.is_some() {
            values[0].clone()
        } else {
            serde_json::Value::Array(values)
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if values.is_empty() {
        println!("no campaigns yet; register one with `reagent plan CAMPAIGN.toml`");
    }
    for v in values {
        println!(
            "{:>3}  {:<20} {:<17} stage {:<9} trials {} done, {} running, {} failed, {} queued   CPU-h {:.3}/{}",
            v["id"],
            term::line(v["name"].as_str().unwrap_or("")),
            v["state"].as_str().unwrap_or(""),
            v["stage"].as_str().unwrap_or(""),
            v["trials"]["succeeded"],
            v["trials"]["running"],
            v["trials"]["failed"],
            v["trials"]["queued"],
            v["spent"]["cpu_hours"].as_f64().unwrap_or(0.0),
            v["budget"]["cpu_hours"]
        );
        if let (Some(b), Some(best)) = (v["baseline"]["mean"].as_f64(), v["best"].as_object()) {
            println!(
                "     baseline {b:.6}; best so far hypothesis {} at {:.6} ({:+.6})",
                best["hypothesis"],
                best["mean"].as_f64().unwrap_or(f64::NAN),
                best["improvement"].as_f64().unwrap_or(f64::NAN)
            );
        }
        if let Some(l) = v["llm"].as_object() {
            println!(
                "     language model {}: {} of {} tokens used",
                l["model"].as_str().unwrap_or(""),
                l["tokens_used"],
                l["token_budget"]
            );
        }
        if let Some(n) = v["note"].as_str() {
            println!("     {}", term::line(n));
        }
        if let Some(q) = v["quota"].as_object() {
            let share = q["share"]
                .as_f64()
                .map_or("nothing to launch".to_string(), |s| {
                    format!("share {s:.2} slots")
                });
            println!("     quota: weight {}, {share}", q["weight"]);
        }
        for a in v["pending_approvals"].as_array().into_iter().flatten() {
            println!(
                "     waiting for approval {} ({}): {} — `reagent approve {}`",
                a["id"],
                a["kind"].as_str().unwrap_or(""),
                term::line(a["summary"].as_str().unwrap_or("")),
                a["id"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn trials(ws: &Workspace, id: u64, json: bool) -> anyhow::Result<ExitCode> {
    let store = ws.open_store(Duration::from_secs(30))?;
    let view = View::load(&store, id)?;
    if json {
        let list: Vec<serde_json::Value> = view
            .trials
            .iter()
            .map(|t| {
                let assignments: serde_json::Map<String, serde_json::Value> = crate::campaign::engine::full_config(&view.row.spec, &t.assignments)
                    .into_iter()
                    .map(|(k, v)| (k, crate::strategy::value_json(&v)))
                    .collect();
                serde_json::json!({
                    "id": t.id,
                    "hypothesis": t.hypothesis,
                    "status": t.status.name(),
                    "phase": t.stage.name(),
                    "seed": t.seed,
                    "attempt": t.attempt,
                    "retry_of": t.retry_of,
                    "assignments": assignments,
                    "changes": t.assignments.iter().map(|a| (a.knob.clone(), crate::strategy::value_json(&a.value))).collect::<serde_json::Map<_, _>>(),
                    "objective": t.objective,
                    "metrics": t.metrics,
                    "failure": t.diagnosis.as_ref().map(|d| crate::strategy::failure_class_name(d.class)),
                    "action": t.action_taken,
                    "job_key": t.key,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>5} {:>4} {:<9} {:<10} {:>5} {:>12}  changes",
        "trial", "hyp", "phase", "status", "seed", view.row.spec.objective.metric
    );
    for t in &view.trials {
        let changes: Vec<String> = t
            .assignments
            .iter()
            .map(|a| term::line(&format!("{}={}", a.knob, render_value(&a.value))).into_owned())
            .collect();
        println!(
            "{:>5} {:>4} {:<9} {:<10} {:>5} {:>12}  {}{}",
            t.id,
            t.hypothesis,
            t.stage.name(),
            t.status.name(),
            t.seed,
            t.objective.map_or("-".into(), |v| format!("{v:.6}")),
            if changes.is_empty() {
                "(baseline)".into()
            } else {
                changes.join(" ")
            },
            t.action_taken
                .as_ref()
                .map_or(String::new(), |a| format!("   [{}]", term::line(a)))
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn report_cmd(
    ws: &Workspace,
    id: u64,
    format: ReportFormat,
    out: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let store = ws.open_store(Duration::from_secs(30))?;
    let view = View::load(&store, id)?;
    let r = report::build(&view);
    let text = match format {
        // Titles and rationales are strategies' words: no control or
        // bidi characters reach a terminal or a Markdown viewer raw.
        ReportFormat::Md => term::block(&report::markdown(&r)).into_owned(),
        ReportFormat::Json => serde_json::to_string_pretty(&r)? + "\n",
        // Every string is escaped for HTML where it is written.
        ReportFormat::Html => crate::campaign::html::page(&view, &r, crate::store::now_ms())?,
    };
    match out {
        Some(path) => {
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn set_paused(ws: &Workspace, id: u64, paused: bool) -> anyhow::Result<ExitCode> {
    let store = ws.open_store(Duration::from_secs(30))?;
    let mut c = store
        .campaign(id)?
        .with_context(|| format!("no campaign {id}"))?;
    if c.state.is_terminal() {
        bail!(
            "campaign {id} is {}; it cannot be {}",
            c.state.name(),
            if paused { "paused" } else { "resumed" }
        );
    }
    c.paused = paused;
    let state = c.state;
    store.write(|tx| {
        tx.append(
            Some(id),
            EventBody::StateChanged {
                from: state,
                to: state,
                reason: if paused {
                    "paused by the operator: nothing new launches".into()
                } else {
                    "resumed by the operator".into()
                },
            },
        )?;
        tx.put_campaign(&c)?;
        Ok(())
    })?;
    drop(store);
    if paused {
        println!(
            "campaign {id} paused: running jobs finish, nothing new launches (`reagent resume {id}`)"
        );
    } else {
        println!("campaign {id} resumed");
        workspace::wake(ws, &mut print_progress)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cancel(ws: &Workspace, id: u64) -> anyhow::Result<ExitCode> {
    let store = ws.open_store(Duration::from_secs(30))?;
    let sandbox = workspace::new_sandbox()?;
    let backend = ws.backend();
    let mut engine =
        crate::campaign::engine::Engine::new(&store, sandbox, &backend, None, print_progress);
    engine.cancel(id)?;
    println!("campaign {id} cancelled; its jobs were stopped");
    Ok(ExitCode::SUCCESS)
}
