//! `reagent approvals|approve|reject|policy`: the human side of governance.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;

use crate::cli::term;
use crate::governance::policy::{Policy, Principal};
use crate::governance::{self, ApprovalKind, ApprovalRow, ApprovalState, Decision, Identity, utc};
use crate::store::now_ms;
use crate::workspace::{self, Workspace};

/// Values longer than this are shown by length and hash, with their start.
const SHOWN_VALUE_CHARS: usize = 200;

/// An out-of-space request's changed values, whole: the summary cuts long
/// values, and a person approves exactly what will run. A long value shows
/// its start, its length and its sha256 (the same as `--json`'s payload).
fn out_of_space_values(a: &ApprovalRow) -> Vec<String> {
    let Some(changes) = a.payload["changes"].as_object() else {
        return Vec::new();
    };
    changes
        .iter()
        .map(|(knob, value)| {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let shown = term::line(&text);
            let knob = term::line(knob);
            if text.chars().count() <= SHOWN_VALUE_CHARS && shown.len() == text.len() {
                return format!("{knob} = {text:?}");
            }
            let start: String = shown.chars().take(SHOWN_VALUE_CHARS).collect();
            use sha2::Digest as _;
            format!(
                "{knob} = \"{start}…\" ({} bytes{}, sha256 {}; `reagent approvals --json` shows it whole)",
                text.len(),
                if shown.len() == text.len() {
                    ""
                } else {
                    ", with control or invisible characters shown escaped"
                },
                &hex::encode(sha2::Sha256::digest(text.as_bytes()))[..16]
            )
        })
        .collect()
}

/// `reagent approvals`: pending requests (all with `all`).
pub fn list(
    ws: &Workspace,
    all: bool,
    campaign: Option<u64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = ws.open_store(Duration::from_secs(30))?;
    governance::expire_due(&store, now_ms())?;
    let rows: Vec<ApprovalRow> = store
        .approvals()?
        .into_iter()
        .filter(|a| all || a.state == ApprovalState::Pending)
        .filter(|a| campaign.is_none_or(|c| a.campaign == c))
        .collect();
    if json {
        let out: Vec<serde_json::Value> = rows.iter().map(governance::approval_json).collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "no {}approval requests{}",
            if all { "" } else { "pending " },
            campaign.map_or(String::new(), |c| format!(" for campaign {c}"))
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>4}  {:>8}  {:<15}  {:<8}  {:<19}  {:<12}  summary",
        "id", "campaign", "kind", "state", "created (UTC)", "payload"
    );
    for a in &rows {
        println!(
            "{:>4}  {:>8}  {:<15}  {:<8}  {:<19}  {:<12}  {}",
            a.id,
            a.campaign,
            a.kind.name(),
            a.state.name(),
            utc(a.created_ms),
            &a.payload_hash[..12],
            term::line(&a.summary)
        );
        if a.kind == ApprovalKind::OutOfSpace {
            for line in out_of_space_values(a) {
                println!("{:>44}{line}", "");
            }
        }
        if a.state == ApprovalState::Pending {
            println!(
                "{:>44}expires {} (UTC); `reagent approve {}` or `reagent reject {} --reason TEXT`",
                "",
                utc(a.expires_ms),
                a.id,
                a.id
            );
        } else if let Some(by) = &a.decided_by {
            println!(
                "{:>44}{} by {by}{}",
                "",
                a.state.name(),
                a.note
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .map_or(String::new(), |n| format!(": {}", term::line(n)))
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `reagent approve ID` / `reagent reject ID --reason`.
pub fn decide(
    ws: &Workspace,
    id: u64,
    approve: bool,
    note: String,
    expect_hash: Option<String>,
) -> anyhow::Result<ExitCode> {
    let policy = ws.policy()?;
    let store = ws.open_store(Duration::from_secs(30))?;
    let who = Identity::current();
    let row = governance::decide_checked(
        &store,
        Decision {
            id,
            approve,
            by: &who,
            note,
            expect_hash,
            now: now_ms(),
        },
        &policy,
    )?;
    let verb = row.state.name();
    println!(
        "request {id} ({} for campaign {}) {verb} by {}; payload sha256 {}",
        row.kind.name(),
        row.campaign,
        who.name(),
        row.payload_hash
    );
    let campaign = store.campaign(row.campaign)?;
    drop(store);
    match (row.kind, row.state) {
        (ApprovalKind::Plan, ApprovalState::Approved) => {
            let running = campaign.is_some_and(|c| c.state.is_active());
            if running {
                println!(
                    "campaign {c}'s plan is approved; start it with `reagent run {c}` (or `reagent run {c} --detach`)",
                    c = row.campaign
                );
            }
        }
        (ApprovalKind::Plan, _) => {
            println!(
                "campaign {} is cancelled; nothing was launched",
                row.campaign
            );
        }
        _ => {
            // Let a live driver (or a pass of our own) act on it now.
            if campaign.is_some_and(|c| c.state.is_active()) {
                workspace::wake(ws, &mut |_| {})?;
                println!(
                    "campaign {} was woken to act on it (`reagent status {}`)",
                    row.campaign, row.campaign
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the policy in force (the workspace's .reagent/policy.cedar, or
    /// the default) with the attributes a policy can test.
    Show,
    /// Check a policy file (default: the workspace's) for syntax and schema
    /// errors, and show how it decides a sample of requests.
    Check { file: Option<std::path::PathBuf> },
}

pub fn policy(ws: Option<&Workspace>, cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Show => {
            let ws = ws.context("`reagent policy show` needs a workspace")?;
            let path = ws.policy_path();
            let policy = ws.policy()?;
            if path.exists() {
                println!("// the workspace policy: {}", path.display());
            } else {
                println!(
                    "// the default policy (no {} in this workspace)",
                    path.display()
                );
            }
            println!("{}", policy.source());
            println!("// The schema requests are checked against:");
            println!("{}", governance::policy::SCHEMA_TEXT);
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Check { file } => {
            let path = match (file, ws) {
                (Some(f), _) => f,
                (None, Some(ws)) => ws.policy_path(),
                (None, None) => anyhow::bail!("give a policy file, or run inside a workspace"),
            };
            let policy = Policy::load(&path)?;
            println!("{}: ok", path.display());
            let me = governance::os_user();
            for (kind, cpu, gpu) in [
                ("plan", 60, 0),
                ("plan", 6000, 0),
                ("plan", 60, 60),
                ("budget-increase", 120, 0),
                ("escalation", 0, 0),
            ] {
                let f = governance::policy::RequestFacts {
                    kind: kind.into(),
                    cpu_minutes: cpu,
                    gpu_minutes: gpu,
                    requested_by: "agent".into(),
                    planned_by: me.clone(),
                    ..Default::default()
                };
                let auto = policy.decide(&Principal::Auto, &f);
                let human = policy.decide(&Principal::User(me.clone()), &f);
                println!(
                    "  {kind:<16} {cpu:>5} CPU-min {gpu:>4} GPU-min: auto-approved {}, {me} may approve {}",
                    yes_no(auto.allowed),
                    yes_no(human.allowed)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// `reagent amend ID FILE`: asks to change a running campaign's strategies
/// and grants, or to raise its budget, from an edited campaign file. Each
/// kind of change is an approval request (`--yes` approves it on the spot
/// as you, where the policy lets you); anything else that differs is refused.
pub fn amend(
    ws: &Workspace,
    id: u64,
    file: &std::path::Path,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let new = crate::spec::load(file)?;
    let policy = ws.policy()?;
    let store = ws.open_store(Duration::from_secs(30))?;
    let row = store
        .campaign(id)?
        .with_context(|| format!("no campaign {id} in {}", ws.dir.display()))?;
    let who = Identity::current();
    let label = file.display().to_string();
    let earlier = store.approvals()?;
    let requests = governance::amend::requests(&row, &new, &label, &who, &earlier)?;
    if new.strategies != row.spec.strategies {
        workspace::inspect_strategies(&new.strategies, workspace::new_sandbox()?)?;
    }
    if requests.is_empty() {
        println!("{label}: no change to campaign {id}'s strategies or budget");
        return Ok(ExitCode::SUCCESS);
    }
    let approve_as = yes.then_some((&who, &policy));
    let (rows, refused) = governance::amend::raise(&store, requests, approve_as)?;
    for r in &rows {
        println!(
            "request {} ({}) {}: {}",
            r.id,
            r.kind.name(),
            r.state.name(),
            term::line(&r.summary)
        );
    }
    drop(store);
    if rows.iter().any(|r| r.state == ApprovalState::Approved) {
        workspace::wake(ws, &mut |_| {})?;
    }
    if let Some(e) = refused {
        return Err(e.context("--yes was refused; the requests wait for another approver"));
    }
    if rows.iter().any(|r| r.state == ApprovalState::Pending) {
        println!("approve with `reagent approve ID` (see `reagent approvals`)");
    }
    Ok(ExitCode::SUCCESS)
}
