//! The `reagent` command line. The only module that prints to the terminal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::workspace::Workspace;

pub mod approvals;
pub mod audit;
pub mod campaign;
pub mod demo;
pub mod insights;
pub mod plan;
pub mod quota;
pub mod scaffold;
pub mod strategy;
pub mod term;

/// Reagent: proposes hypotheses, runs training jobs, debugs failures and
/// hands back an improvement proposal with measured evidence.
///
/// Exit codes: 0 success; 1 the campaign halted or was cancelled, `strategy
/// inspect` refused a component, `strategy try` hit a limit, `audit verify`
/// found a broken chain or `audit replay` a different decision; 2 bad usage
/// or bad input (a campaign file, a policy file, an unknown ID, a failed
/// preflight check, a refused approval).
#[derive(Debug, Parser)]
#[command(name = "reagent", version, about, long_about)]
pub struct Cli {
    /// The workspace: a folder holding `.reagent/` (default: $REAGENT_WORKSPACE,
    /// else the nearest `.reagent/` from here upwards).
    #[arg(long, global = true, value_name = "DIR")]
    pub workspace: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Into an MLflow tracking server, through its REST API: one experiment
    /// per campaign, one run per settled trial (params, final and per-step
    /// metrics, tags for phase, hypothesis and status) and, once the
    /// campaign has ended, a `proposal` run with the report as artifacts.
    /// Run it again at any time: what is already there is not sent twice.
    /// MLflow refuses `@` in metric names: `ndcg@10` becomes `ndcg_at_10`.
    Mlflow {
        /// The campaign's ID.
        id: u64,
        /// The server, e.g. http://127.0.0.1:5000.
        #[arg(long, value_name = "URI")]
        tracking_uri: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole loop on the example ranking model: build the trainer,
    /// generate click logs, plan and approve the campaign, run it, print the
    /// proposal (needs a source checkout; the run takes about 3 minutes on 2
    /// cores, plus a first build of the trainer).
    Demo {
        /// Where to put the data, workspace and report (default target/demo).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Override the campaign's max_trials (a shorter demo).
        #[arg(long, default_value_t = 0)]
        max_trials: u32,
        /// Extra arguments for `reagent-ranker gen-data` (after `--`).
        #[arg(last = true)]
        data_args: Vec<String>,
    },
    /// Create a workspace (`DIR/.reagent/`, default the current directory).
    Init { dir: Option<PathBuf> },
    /// Validate a campaign file, register it and print its plan: preflight
    /// checks, phases, validation slate and cost estimate.
    Plan {
        campaign: PathBuf,
        /// Approve the plan now, as the current OS user.
        #[arg(long)]
        yes: bool,
        /// Print the plan as JSON (includes `id` and `state`).
        #[arg(long)]
        json: bool,
        /// Check the file and show the plan without registering anything.
        #[arg(long)]
        dry_run: bool,
        /// Run the baseline once first (seed 1, on the campaign's backend)
        /// and register only if it reports the objective: catches a
        /// misspelt metric or script for the price of one run.
        #[arg(long)]
        smoke: bool,
    },
    /// Drive a campaign (ID, or a campaign file to plan first) until it
    /// ends; with --detach, launch what can be launched and exit.
    Run {
        target: String,
        /// Exit once only waiting is left; the jobs' supervisors wake the host.
        #[arg(long)]
        detach: bool,
        /// When TARGET is a file: approve its plan on the spot.
        #[arg(long)]
        yes: bool,
    },
    /// Reconcile jobs, advance campaigns and launch what is next (run by job
    /// supervisors when a job ends; schedule it from cron as a fallback).
    Wake {
        #[arg(long)]
        quiet: bool,
    },
    /// Campaigns with their state, stage, trial counts, best so far and spend;
    /// without an ID, the whole portfolio: every campaign, what waits on a
    /// person, and the workspace quota with each campaign's share.
    Status {
        id: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// The workspace quota (`[quota]` in `.reagent/config.toml`): jobs at
    /// once across all campaigns, CPU-/GPU-hours per day or week, each
    /// campaign's weight; and where every active campaign stands under it
    /// (running, queued, its share of the slots). Without a quota, prints an
    /// example to start from.
    Quota {
        #[arg(long)]
        json: bool,
    },
    /// The trials of a campaign.
    Trials {
        id: u64,
        #[arg(long)]
        json: bool,
    },
    /// The improvement proposal: config diff, effect ± 95% CI, phases,
    /// failures with diagnoses, compute spent vs budget. `--format html`
    /// writes one self-contained page (no script, no network) with plots:
    /// the objective over trials with the best so far and the baseline
    /// band, each hypothesis' effect with its 95% interval, the
    /// confirmation runs and holdout, the objective against each knob, the
    /// timeline of trials and the budget spent over time.
    Report {
        id: u64,
        #[arg(long, value_enum, default_value = "md")]
        format: campaign::ReportFormat,
        /// Write to FILE instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Stop launching new trials (running ones finish).
    Pause { id: u64 },
    /// Launch again after a pause.
    Resume { id: u64 },
    /// Stop a campaign and its running jobs.
    Cancel { id: u64 },
    /// Approval requests: pending ones by default. The agent asks before
    /// anything outside the approved plan: the plan itself, a budget
    /// increase, knob values outside the approved space, an escalated
    /// failure. Only the branch a request holds back waits.
    Approvals {
        /// Include decided (approved, rejected, expired) requests.
        #[arg(long)]
        all: bool,
        /// Only this campaign's requests.
        #[arg(long)]
        campaign: Option<u64>,
        /// JSON: a list of objects with id, campaign, kind, state, created,
        /// expires, requested_by, summary, payload, payload_hash, decided_by,
        /// note.
        #[arg(long)]
        json: bool,
    },
    /// Approve a request, as the current OS user. The decision is bound to
    /// the request's payload hash and appended to the audit log; the
    /// workspace policy says who may approve what; the agent (and any job
    /// it launched) never can.
    Approve {
        id: u64,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        note: String,
        /// Approve only if the payload's sha256 starts with this (≥ 8 hex
        /// digits): what you reviewed is what you approve.
        #[arg(long, value_name = "SHA256")]
        hash: Option<String>,
    },
    /// Ask to change a running campaign's strategies and grants, or raise
    /// its budget, from an edited copy of its campaign file: each kind of
    /// change becomes an approval request. Nothing else may differ.
    Amend {
        id: u64,
        campaign: PathBuf,
        /// Approve the requests now, as the current OS user, where the
        /// policy lets you.
        #[arg(long)]
        yes: bool,
    },
    /// Reject a request (always allowed; a reason is required).
    Reject {
        id: u64,
        #[arg(long)]
        reason: String,
    },
    /// The governance policy (Cedar): which requests are approved
    /// automatically, and who may approve the rest.
    #[command(subcommand)]
    Policy(approvals::PolicyCommand),
    /// Inspect, try and scaffold strategies (sandboxed WebAssembly components).
    #[command(subcommand)]
    Strategy(strategy::StrategyCommand),
    /// Verify, show, export and replay the hash-chained event log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// What past campaigns learned: one record per change a campaign ran
    /// (effect ± 95% CI, cost, failure class), written when it ends and
    /// shown to later campaigns' generators; export and import them as JSON
    /// lines to carry them between workspaces (docs/insights.md).
    #[command(subcommand)]
    Insights(insights::InsightsCommand),
    /// The workspace in a browser: all campaigns, each campaign's plots and
    /// trials (live, as the driver passes), approvals to approve or reject,
    /// insights and the audit log. Listens on 127.0.0.1:8080 by default;
    /// prints a login link with a token (kept 0600 in
    /// .reagent/serve.token, new at every start). A non-loopback address
    /// needs --auth: `token`, or `header:NAME` behind a reverse proxy that
    /// authenticates people and names them in that header.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: std::net::SocketAddr,
        #[arg(long, value_name = "token|header:NAME")]
        auth: Option<String>,
    },
    /// Send a campaign to another system.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Internal: one trial of a bench task as a training job (see
    /// `reagent strategy bench`): knobs from $REAGENT_PARAMS, metrics to
    /// $REAGENT_METRICS.
    #[command(name = "__task", hide = true)]
    Task {
        /// A shipped task's name or a task file.
        task: String,
        /// The noise instance (a bench seed).
        #[arg(long, default_value_t = 0)]
        instance: u64,
    },
    /// Internal: supervise one job (started by the local backend).
    #[command(name = "__supervise", hide = true)]
    Supervise { job_dir: PathBuf },
    /// Internal: export the workspace's campaigns as `[export]` says
    /// (started by the driver after passes that changed something).
    #[command(name = "__export", hide = true)]
    AutoExport { workspace_dir: PathBuf },
    /// Internal: deliver the workspace's notifications (started by the
    /// driver when some wait; see docs/campaign.md#notifications).
    #[command(name = "__notify", hide = true)]
    Notify { workspace_dir: PathBuf },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that only print end quietly when the reader goes away
    // (`reagent trials 1 | head`), as Unix tools do. Commands that talk over
    // the wake socket keep Rust's default (a closed socket is an error).
    if matches!(
        cli.command,
        Command::Status { .. }
            | Command::Quota { .. }
            | Command::Trials { .. }
            | Command::Report { .. }
            | Command::Approvals { .. }
            | Command::Audit(_)
            | Command::Policy(_)
    ) || matches!(&cli.command, Command::Insights(c) if c.only_prints())
    {
        // SAFETY: restoring the default disposition of SIGPIPE before any
        // thread is started; no other precondition.
        #[allow(unsafe_code)]
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let ws = || {
        Workspace::find(cli.workspace.as_deref()).inspect(|w| {
            if let Some(warning) = w.exposure() {
                eprintln!("warning: {warning}");
            }
        })
    };
    let result = match cli.command {
        Command::Init { ref dir } => campaign::init(dir.clone().or_else(|| cli.workspace.clone())),
        Command::Plan {
            ref campaign,
            yes,
            json,
            dry_run,
            smoke,
        } => ws().and_then(|w| {
            let opts = plan::PlanOptions {
                yes,
                json,
                dry_run,
                smoke,
                from_run: false,
            };
            plan::plan_command(&w, campaign, opts)?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Run {
            ref target,
            detach,
            yes,
        } => ws().and_then(|w| campaign::run(&w, target, detach, yes)),
        Command::Wake { quiet } => ws().and_then(|w| campaign::wake(&w, quiet)),
        Command::Status { id, json } => ws().and_then(|w| campaign::status(&w, id, json)),
        Command::Quota { json } => ws().and_then(|w| quota::show(&w, json)),
        Command::Export(ExportCommand::Mlflow {
            id,
            ref tracking_uri,
            json,
        }) => ws().and_then(|w| export_mlflow(&w, id, tracking_uri, json)),
        Command::Serve { bind, ref auth } => ws().and_then(|w| serve_cmd(w, bind, auth.as_deref())),
        Command::Trials { id, json } => ws().and_then(|w| campaign::trials(&w, id, json)),
        Command::Report {
            id,
            format,
            ref output,
        } => ws().and_then(|w| campaign::report_cmd(&w, id, format, output.clone())),
        Command::Pause { id } => ws().and_then(|w| campaign::set_paused(&w, id, true)),
        Command::Resume { id } => ws().and_then(|w| campaign::set_paused(&w, id, false)),
        Command::Cancel { id } => ws().and_then(|w| campaign::cancel(&w, id)),
        Command::Demo {
            ref dir,
            max_trials,
            ref data_args,
        } => demo::run(demo::DemoOptions {
            dir: dir.clone(),
            max_trials,
            data_args: data_args.clone(),
        }),
        Command::Approvals {
            all,
            campaign,
            json,
        } => ws().and_then(|w| approvals::list(&w, all, campaign, json)),
        Command::Approve {
            id,
            ref note,
            ref hash,
        } => ws().and_then(|w| approvals::decide(&w, id, true, note.clone(), hash.clone())),
        Command::Amend {
            id,
            ref campaign,
            yes,
        } => ws().and_then(|w| approvals::amend(&w, id, campaign, yes)),
        Command::Reject { id, ref reason } => {
            ws().and_then(|w| approvals::decide(&w, id, false, reason.clone(), None))
        }
        Command::Policy(cmd) => {
            let w = ws().ok();
            approvals::policy(w.as_ref(), cmd)
        }
        Command::Strategy(cmd) => strategy::run(cmd, cli.workspace.as_deref()),
        Command::Audit(cmd) => ws().and_then(|w| audit::run(&w, cmd)),
        Command::Insights(cmd) => ws().and_then(|w| insights::run(&w, cmd)),
        Command::Task { ref task, instance } => strategy::bench::task_job(task, instance),
        Command::Supervise { ref job_dir } => {
            crate::jobs::local::supervise(job_dir).map(|()| ExitCode::SUCCESS)
        }
        Command::AutoExport { ref workspace_dir } => auto_export(&Workspace {
            dir: workspace_dir.clone(),
        }),
        Command::Notify { ref workspace_dir } => {
            crate::notify::deliver(workspace_dir).map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", term::block(&format!("{e:#}")));
            if let Some(advice) = crate::store::advice(&e) {
                eprintln!("{}", term::block(advice));
            }
            ExitCode::from(campaign::EXIT_USAGE)
        }
    }
}

/// `reagent serve`: prints where to look, then serves until stopped.
fn serve_cmd(
    ws: Workspace,
    bind: std::net::SocketAddr,
    auth: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let auth = auth.map(crate::serve::Auth::parse).transpose()?;
    crate::serve::serve(ws, crate::serve::Options { bind, auth }, |s| {
        println!("serving {}", s.url);
        if let Some(login) = &s.login {
            println!("open {login}");
        }
        if let Some(f) = &s.token_file {
            println!(
                "(the token is also in {}, readable only by you)",
                f.display()
            );
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `reagent export mlflow`.
fn export_mlflow(ws: &Workspace, id: u64, uri: &str, json: bool) -> anyhow::Result<ExitCode> {
    let store = ws.open_store(std::time::Duration::from_secs(30))?;
    if store.campaign(id)?.is_none() {
        anyhow::bail!("no campaign {id} in {}", ws.dir.display());
    }
    let done = crate::export::mlflow(&store, id, uri)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        println!(
            "campaign {id} -> MLflow experiment {} ({}): {} run(s) sent, {} already there, {} half-made redone; {}/#/experiments/{}",
            done.experiment_id,
            term::line(&done.experiment),
            done.created,
            done.already,
            done.redone,
            uri.trim_end_matches('/'),
            done.experiment_id
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `reagent __export DIR`: exports every campaign while passes keep
/// marking the workspace; what each round did goes to `export.log`.
fn auto_export(ws: &Workspace) -> anyhow::Result<ExitCode> {
    let Some(_held) = crate::export::lock(&ws.dir)? else {
        return Ok(ExitCode::SUCCESS);
    };
    while crate::export::take_mark(&ws.dir) {
        let Some(cfg) = crate::export::load(&ws.dir)? else {
            break;
        };
        let store = ws.open_store(std::time::Duration::from_secs(120))?;
        let mut lines = Vec::new();
        for c in store.campaigns()? {
            let line = match crate::export::mlflow(&store, c.id, &cfg.mlflow) {
                Ok(d) => format!(
                    "campaign {}: {} sent, {} already there, {} redone",
                    c.id, d.created, d.already, d.redone
                ),
                Err(e) => format!("campaign {}: {e:#}", c.id),
            };
            lines.push(format!(
                "{} {line}",
                crate::time::utc(crate::store::now_ms())
            ));
        }
        drop(store);
        crate::export::log(&ws.dir, &lines);
    }
    Ok(ExitCode::SUCCESS)
}
