//! `reagent plan`: the campaign file checked, registered and shown —
//! preflight, phases, cost and the first proposals.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;

use crate::campaign::engine::allotment;
use crate::governance::{self, Identity};
use crate::records::campaign::{CampaignRow, CampaignState};
use crate::sandbox::Sandbox;
use crate::spec::{self, Campaign};
use crate::strategy::render_value;
use crate::workspace::{self, Workspace};

fn load_campaign_file(path: &Path) -> anyhow::Result<Campaign> {
    spec::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Checks what can be checked before any spend.
fn preflight(spec: &Campaign, sandbox: &Sandbox) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for (role, source, info) in workspace::inspect_strategies(&spec.strategies, sandbox)? {
        let l = &spec.strategies.limits;
        lines.push(format!(
            "{role:<9} {source}: {} world, sha256 {}",
            info.world.map_or("?", |w| w.name()),
            info.sha256,
        ));
        let imports: Vec<&str> = info
            .imports
            .iter()
            .map(|i| i.as_str())
            .filter(|i| i.starts_with("reagent:"))
            .collect();
        lines.push(format!(
            "          imports {}; virtual WASI only (no files, network, env, real clocks)",
            if imports.is_empty() {
                "none".to_string()
            } else {
                imports.join(", ")
            }
        ));
        lines.push(format!(
            "          grants {}; limits per call: fuel {}, {} ms, {} MiB memory, {} host calls, {} KiB output",
            {
                let g = spec.strategies.grants.names();
                if g.is_empty() { "none".to_string() } else { g.join(", ") }
            },
            l.fuel,
            l.deadline_ms,
            l.memory_bytes >> 20,
            l.max_host_calls,
            l.max_output_bytes >> 10
        ));
    }
    match (&spec.llm, spec.strategies.grants.llm) {
        (Some(l), true) => {
            let key = match &l.api_key_env {
                None => "no API key".to_string(),
                Some(var) if std::env::var_os(var).is_some_and(|v| !v.is_empty()) => {
                    format!("API key from ${var} (set; never shown to strategies)")
                }
                Some(var) => format!(
                    "API key from ${var} — NOT SET in this shell: calls will fail until the driver runs with it"
                ),
            };
            lines.push(format!(
                "llm       {} at {}: {key}; ≤ {} tokens for the campaign, ≤ {} per answer, ≤ {} calls per proposal, {:?} timeout; every prompt and answer is recorded",
                l.model, l.shown_url(), l.token_budget, l.max_tokens, l.max_calls, l.timeout
            ));
        }
        (Some(l), false) => lines.push(format!(
            "llm       {} at {} is configured but not granted: strategies get no language model",
            l.model,
            l.shown_url()
        )),
        (None, _) => {}
    }
    let program = &spec.job.command[0];
    let found = if program.contains('/') {
        let p = spec.job.workdir.join(program);
        p.exists() || Path::new(program).exists()
    } else {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).exists()))
            .unwrap_or(false)
    };
    if !found {
        bail!(
            "the job command `{program}` was not found (looked in {} and $PATH); fix [job] command",
            spec.job.workdir.display()
        );
    }
    if !spec.job.workdir.is_dir() {
        bail!(
            "the job workdir {} is not a directory",
            spec.job.workdir.display()
        );
    }
    lines.push(format!(
        "backend   {} — {} cpu, {} gpu{} per trial, time limit {:?}",
        spec.job.backend,
        spec.job.resources.cpus,
        spec.job.resources.gpus,
        spec.job
            .resources
            .memory_mb
            .map_or(String::new(), |m| format!(", {m} MiB")),
        spec.job.time_limit
    ));
    lines.push(format!("command   {}", spec.job.command.join(" ")));
    let in_code = spec.knobs_in_code();
    if !in_code.is_empty() {
        lines.push(format!(
            "warning   {} pasted into shell or interpreter code (the argument after -c/-e): an out-of-space value with a quote, space, `;`, `$` or any character beyond letters, digits and ._+-=,:/@% is refused, never run; pass each knob as its own argument or read $REAGENT_PARAMS instead",
            in_code
                .iter()
                .map(|k| format!("{{{k}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let (true, Some(opts)) = (spec.job.backend == "slurm", &spec.job.slurm) {
        lines.push(crate::jobs::slurm::preflight(opts)?);
    }
    Ok(lines)
}

/// A knob's approved space in words.
fn space(kind: &crate::strategy::KnobKind) -> String {
    use crate::strategy::KnobKind;
    match kind {
        KnobKind::Float(r) | KnobKind::LogFloat(r) => format!("[{}, {}]", r.low, r.high),
        KnobKind::Int(r) => format!("[{}, {}]", r.low, r.high),
        KnobKind::Categorical(c) => format!("{{{}}}", c.join(", ")),
        KnobKind::Flag => "{true, false}".into(),
    }
}

fn print_plan(row: &CampaignRow, preflight: &[String], slate: &[String]) {
    let spec = &row.spec;
    let a = allotment(spec);
    let r = spec.cpu_reservation();
    println!(
        "campaign {} \"{}\" — {}",
        row.id,
        spec.name,
        row.state.name()
    );
    println!(
        "objective {} {}{}",
        match spec.objective.direction {
            crate::strategy::Direction::Minimize => "minimize",
            crate::strategy::Direction::Maximize => "maximize",
        },
        spec.objective.metric,
        spec.objective
            .holdout
            .as_ref()
            .map_or(String::new(), |h| format!(
                " (holdout {h}: reported, never used to choose)"
            ))
    );
    println!("preflight checklist:");
    for l in preflight {
        println!("  {l}");
    }
    println!("knob space (values outside it need an approval):");
    for k in &spec.knobs {
        println!(
            "  {:<16} {:<12} {:<28} baseline {}",
            k.name,
            crate::strategy::validate::kind_name(&k.kind)
                .trim_start_matches("an ")
                .trim_start_matches("a "),
            space(&k.kind),
            render_value(&k.baseline)
        );
    }
    let g = spec.gpu_reservation();
    println!(
        "budget split and cost estimate (each trial reserves {r:.3} CPU-hours{}):",
        if g > 0.0 {
            format!(" and {g:.3} GPU-hours")
        } else {
            String::new()
        }
    );
    for (name, n) in [
        ("baseline", a.baseline),
        ("validate", a.validate),
        ("combine", a.combine),
        ("exploit", a.exploit),
        ("race", a.race),
        ("confirm", a.confirm),
    ] {
        println!(
            "  {name:<9} {n:>4} trials  ≤ {:.3} CPU-hours{}",
            n as f64 * r,
            if g > 0.0 {
                format!(", ≤ {:.3} GPU-hours", n as f64 * g)
            } else {
                String::new()
            }
        );
    }
    println!(
        "budget    {} CPU-hours, {} GPU-hours, {} trials, {} in parallel{}",
        spec.budget.cpu_hours,
        spec.budget.gpu_hours,
        spec.budget.max_trials,
        spec.budget.max_parallel,
        spec.budget
            .deadline
            .map_or(String::new(), |d| format!(", deadline {d:?}"))
    );
    if !slate.is_empty() {
        println!(
            "validation slate (first proposals of {}):",
            spec.strategies.generator
        );
        for s in slate {
            println!("  - {s}");
        }
    }
}

/// Registers the campaign in `file`, prints its plan, and approves it when
/// `yes` (the operator approving on the spot) or the policy allows.
pub fn plan(
    ws: &Workspace,
    file: &Path,
    yes: bool,
    json: bool,
) -> anyhow::Result<(u64, CampaignState)> {
    let spec = load_campaign_file(file)?;
    let sandbox = workspace::new_sandbox()?;
    let preflight_lines = preflight(&spec, sandbox)?;
    let policy = ws.policy()?;
    let store = ws.open_store(Duration::from_secs(30))?;
    let label = file.display().to_string();
    let registered =
        governance::register_plan(&store, &spec, &label, &Identity::current(), &policy, yes)?;
    let (row, request) = (&registered.row, &registered.request);
    let id = row.id;
    // The validation slate: the call the engine will make first.
    let slate = workspace::preview_slate(&store, sandbox, id)?;
    if json {
        let a = allotment(&row.spec);
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "id": id,
                "state": row.state.name(),
                "name": row.spec.name,
                "allotment": {
                    "baseline": a.baseline,
                    "validate": a.validate,
                    "combine": a.combine,
                    "exploit": a.exploit,
                    "race": a.race,
                    "confirm": a.confirm,
                },
                "cpu_hours_per_trial": row.spec.cpu_reservation(),
                "gpu_hours_per_trial": row.spec.gpu_reservation(),
                "slate": slate,
                "preflight": preflight_lines,
                "approval": governance::approval_json(request),
            }))?
        );
    } else {
        print_plan(row, &preflight_lines, &slate);
        match row.state {
            CampaignState::Running => println!(
                "approved by {}; start it with `reagent run {id}` (or `reagent run {id} --detach`)",
                row.approved.as_ref().map_or("?", |a| a.by.as_str())
            ),
            _ => {
                if let Some(e) = &registered.refused {
                    println!("--yes was refused: {e:#}");
                }
                println!(
                    "awaiting approval (request {}, payload sha256 {}): `reagent approve {}`, or approve and start it with `reagent run {id} --yes`",
                    request.id,
                    &request.payload_hash[..16],
                    request.id
                )
            }
        }
    }
    let state = row.state;
    if let Some(e) = registered.refused {
        return Err(e.context(format!(
            "campaign {id} is registered and awaits another approver"
        )));
    }
    Ok((id, state))
}

