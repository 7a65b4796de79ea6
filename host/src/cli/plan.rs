//! `reagent plan`: the campaign file checked, registered and shown —
//! preflight, phases, cost and the first proposals.

use std::io::IsTerminal as _;
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
    lines.extend(missing_scripts(spec));
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

/// Warnings for arguments of the job command that name a script (a file
/// with a script's extension, no placeholder) that is not there: a typo
/// there fails every trial. Only a warning: a Slurm job may see another
/// file system.
fn missing_scripts(spec: &Campaign) -> Vec<String> {
    const SCRIPT: &[&str] = &[
        "py", "sh", "bash", "zsh", "R", "r", "jl", "lua", "pl", "rb", "js", "mjs", "ts", "ipynb",
        "toml", "yaml", "yml", "json", "cfg",
    ];
    let mut out = Vec::new();
    for (i, arg) in spec.job.command.iter().enumerate() {
        let path = Path::new(arg);
        let is_script = !arg.contains('{')
            && !arg.starts_with('-')
            && path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| SCRIPT.contains(&e));
        if !is_script || spec.job.workdir.join(path).exists() {
            continue;
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => spec.job.workdir.join(p),
            _ => spec.job.workdir.clone(),
        };
        let names: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or(arg);
        let hint = crate::campaign::engine::closest_name(file, &refs)
            .map_or(String::new(), |n| format!("; did you mean `{n}`?"));
        out.push(format!(
            "warning   `{arg}` (argument {i} of [job] command) is not a file in {}{hint} — every trial would fail; `reagent plan FILE --smoke` runs the baseline once to check",
            dir.display()
        ));
    }
    out
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

/// How `plan` was asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// Approve on the spot, as the current OS user.
    pub yes: bool,
    /// Print the plan as JSON.
    pub json: bool,
    /// Check and show the plan, register nothing.
    pub dry_run: bool,
    /// Run the baseline once first; register only if the objective arrives.
    pub smoke: bool,
    /// Called by `run FILE`, which starts the campaign itself.
    pub from_run: bool,
}

/// `reagent plan`: registers the campaign in `file` (or, with `dry_run`,
/// only shows what would be registered).
pub fn plan_command(ws: &Workspace, file: &Path, opts: PlanOptions) -> anyhow::Result<()> {
    if opts.dry_run {
        return dry_run(ws, file, opts);
    }
    plan_with(ws, file, opts).map(|_| ())
}

/// Registers the campaign in `file`, prints its plan, and approves it when
/// `yes` (the operator approving on the spot) or the policy allows.
pub fn plan(
    ws: &Workspace,
    file: &Path,
    yes: bool,
    json: bool,
) -> anyhow::Result<(u64, CampaignState)> {
    plan_with(
        ws,
        file,
        PlanOptions {
            yes,
            json,
            from_run: true,
            ..PlanOptions::default()
        },
    )
}

/// The checks every plan makes before anything is registered: the file,
/// the preflight, earlier campaigns from the same file, and the smoke run
/// when asked for. Returns the campaign and its preflight lines.
fn check(
    ws: &Workspace,
    file: &Path,
    opts: PlanOptions,
) -> anyhow::Result<(Campaign, Vec<String>)> {
    let spec = load_campaign_file(file)?;
    let sandbox = workspace::new_sandbox()?;
    let mut lines = preflight(&spec, sandbox)?;
    let store = ws.open_store(Duration::from_secs(30))?;
    let label = file.display().to_string();
    for c in store.campaigns()? {
        if c.spec == spec && !c.state.is_terminal() {
            lines.push(format!(
                "warning   campaign {} was planned from this same file ({}; {}) — this registers another; `reagent run {}` drives that one, `reagent plan {label} --dry-run` checks without registering",
                c.id,
                c.file,
                c.state.name(),
                c.id
            ));
        }
    }
    drop(store);
    if opts.smoke {
        smoke(ws, &spec, opts.json)?;
    }
    Ok((spec, lines))
}

/// One baseline run before anything is registered; an error (exit 2) when
/// the objective does not arrive.
fn smoke(ws: &Workspace, spec: &Campaign, quiet: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let say = |s: String| {
        if quiet {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    };
    say(format!(
        "smoke run: the baseline once (seed 1) on {}, time limit {} s …",
        spec.job.backend,
        spec.job.time_limit.as_secs()
    ));
    let backend = ws.backend();
    let tty = std::io::stderr().is_terminal();
    let s = crate::campaign::smoke::run(&backend, spec, |secs| {
        if tty {
            eprint!("\r  running for {secs:.0} s");
            let _ = std::io::stderr().flush();
        }
    })?;
    if tty && s.secs >= 1.0 {
        eprintln!();
    }
    let folder = s
        .folder
        .as_ref()
        .map_or(String::new(), |d| format!(" (logs: {})", d.display()));
    match crate::campaign::smoke::judge(spec, &s) {
        Ok(lines) => {
            for l in lines {
                say(format!("  {l}"));
            }
            Ok(())
        }
        Err(cause) => bail!(
            "smoke run failed: {cause}{folder}. Nothing was registered; fix the campaign file and try again"
        ),
    }
}

/// `plan --dry-run`: the plan as `plan` would show it, from a scratch
/// store; the workspace is not written.
fn dry_run(ws: &Workspace, file: &Path, opts: PlanOptions) -> anyhow::Result<()> {
    let (spec, preflight_lines) = check(ws, file, opts)?;
    let sandbox = workspace::new_sandbox()?;
    let policy = ws.policy()?;
    let scratch = crate::store::Store::in_memory()?;
    let label = file.display().to_string();
    let registered = governance::register_plan(
        &scratch,
        &spec,
        &label,
        &Identity::current(),
        &policy,
        false,
    )?;
    let slate = workspace::preview_slate(&scratch, sandbox, registered.row.id)?;
    if opts.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan_json(
                &registered.row,
                &preflight_lines,
                &slate,
                None
            ))?
        );
    } else {
        print_plan(&registered.row, &preflight_lines, &slate);
        println!(
            "dry run: nothing was registered{}; `reagent plan {label}` registers it",
            match registered.row.state {
                CampaignState::Running =>
                    " (the workspace policy would approve it on registration)",
                _ => " (it would wait for an approval)",
            }
        );
    }
    Ok(())
}

fn plan_json(
    row: &CampaignRow,
    preflight_lines: &[String],
    slate: &[String],
    request: Option<&crate::records::approval::ApprovalRow>,
) -> serde_json::Value {
    let a = allotment(&row.spec);
    serde_json::json!({
        "id": request.map(|_| row.id),
        "state": if request.is_some() { row.state.name() } else { "dry-run" },
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
        "approval": request.map(governance::approval_json),
    })
}

fn plan_with(
    ws: &Workspace,
    file: &Path,
    opts: PlanOptions,
) -> anyhow::Result<(u64, CampaignState)> {
    let (spec, preflight_lines) = check(ws, file, opts)?;
    let sandbox = workspace::new_sandbox()?;
    let policy = ws.policy()?;
    let store = ws.open_store(Duration::from_secs(30))?;
    let label = file.display().to_string();
    let registered = governance::register_plan(
        &store,
        &spec,
        &label,
        &Identity::current(),
        &policy,
        opts.yes,
    )?;
    let (row, request) = (&registered.row, &registered.request);
    let id = row.id;
    // The validation slate: the call the engine will make first.
    let slate = workspace::preview_slate(&store, sandbox, id)?;
    if opts.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan_json(row, &preflight_lines, &slate, Some(request)))?
        );
    } else {
        print_plan(row, &preflight_lines, &slate);
        match row.state {
            CampaignState::Running if opts.from_run => println!(
                "approved by {}; starting it",
                row.approved.as_ref().map_or("?", |a| a.by.as_str())
            ),
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
    // A plan waiting for a person is news for `[notify]`.
    if state == CampaignState::AwaitingApproval
        && let Some(cfg) = crate::notify::load(&ws.dir)?
    {
        crate::notify::collect(&ws.dir, &store, &cfg, crate::store::now_ms())?;
        crate::notify::start_delivery(&ws.dir)?;
    }
    if let Some(e) = registered.refused {
        return Err(e.context(format!(
            "campaign {id} is registered and awaits another approver"
        )));
    }
    Ok((id, state))
}
