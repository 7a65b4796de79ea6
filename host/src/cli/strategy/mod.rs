//! `reagent strategy …`: inspect, try and scaffold strategies.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Subcommand, ValueEnum};
use serde::Deserialize;

use super::scaffold::Lang;
use crate::cli::term;
use crate::sandbox::{ComponentInfo, Limits, Sandbox, SandboxConfig};
use crate::strategy::data::{MemoryStore, StaticData};
use crate::strategy::record::CallRecord;
use crate::strategy::{
    CallInput, CallOutput, Context, FailureReport, Grants, StrategySource, World, builtin,
    render_value,
};

#[derive(Debug, Subcommand)]
pub enum StrategyCommand {
    /// Show a strategy's world, exports, imports, size, sha256 and SDK
    /// version, and whether the host would accept it (exit 1 if not).
    Inspect {
        /// A .wasm component file, or builtin:NAME (builtin:three-phase, builtin:researcher, builtin:runbook).
        strategy: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Inspect as if these optional imports were not granted
        /// (comma-separated: insights, memory).
        #[arg(long, value_delimiter = ',')]
        deny: Vec<String>,
    },
    /// Call a strategy once under the sandbox's limits and print what it
    /// returned (or the limit it hit), with fuel, peak memory and wall time.
    ///
    /// The input file is JSON: {"context": …, "max": N} for propose,
    /// {"context": …, "failure": …} for diagnose, plus optional "history"
    /// (trials, hypotheses, curves, insights) and "memory". See
    /// examples/strategy-inputs/ for complete examples.
    Try {
        /// A .wasm component file, or builtin:NAME.
        strategy: String,
        /// Which export to call.
        #[arg(long, value_enum)]
        call: CallKind,
        /// The call's input as JSON.
        #[arg(long)]
        input: PathBuf,
        /// Print the whole call record (input, host calls, output, usage, log) as JSON.
        #[arg(long)]
        json: bool,
        /// Fuel budget (default 4000000000).
        #[arg(long)]
        fuel: Option<u64>,
        /// Wall-clock deadline in milliseconds (default 10000).
        #[arg(long)]
        deadline_ms: Option<u64>,
        /// Memory cap in MiB (default 128).
        #[arg(long)]
        memory_mb: Option<u64>,
    },
    /// Create a new strategy: a Rust crate, or with `--lang python` a
    /// Python project (app.py, pytest tests, a vendored reagent_sdk). Build
    /// either with `reagent strategy build NAME`.
    New {
        /// Crate name (lowercase letters, digits and dashes).
        name: String,
        /// Which world it implements.
        #[arg(long, value_enum, default_value = "generator")]
        world: WorldArg,
        /// The language to write it in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: LangArg,
        /// Parent directory (default: the current directory).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build a strategy into a component: a Rust crate (Cargo.toml) with
    /// cargo for wasm32-wasip2, a Python project (pyproject.toml) with
    /// componentize-py, pinned and installed once into a venv this command
    /// manages ($REAGENT_PYTHON_DIR, default ~/.cache/reagent/python).
    /// Prints the .wasm path.
    Build {
        /// The strategy's folder (default: the current directory).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to write the component (Python; default DIR/build/NAME.wasm).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the built-in strategies.
    List,
    /// Compare strategies offline: each runs the real engine (phases,
    /// confirmation, debugger) against tasks that answer a trial in
    /// microseconds, over many seeds; prints per task and budget the median
    /// improvement [IQR], the share of the baseline-to-optimum gap closed,
    /// P(beat the baseline on the holdout), trials to reach 80% of the gap,
    /// and failed trials. `random` and Optuna's samplers run on the same
    /// tasks. Example: `reagent strategy bench --task interact,trainer
    /// --strategy builtin:three-phase,random,optuna-tpe --seeds 10 --plot bench.svg`.
    Bench(Box<bench::BenchArgs>),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CallKind {
    Propose,
    Diagnose,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LangArg {
    Rust,
    Python,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum WorldArg {
    Generator,
    Debugger,
}

pub fn run(cmd: StrategyCommand, workspace: Option<&Path>) -> anyhow::Result<ExitCode> {
    match cmd {
        StrategyCommand::Bench(args) => bench::run(*args, workspace),
        StrategyCommand::Inspect {
            strategy,
            json,
            deny,
        } => inspect(&strategy, json, &deny),
        StrategyCommand::Try {
            strategy,
            call,
            input,
            json,
            fuel,
            deadline_ms,
            memory_mb,
        } => {
            let mut limits = Limits::default();
            if let Some(f) = fuel {
                limits.fuel = f;
            }
            if let Some(d) = deadline_ms {
                limits.deadline_ms = d;
            }
            if let Some(m) = memory_mb {
                limits.memory_bytes = m << 20;
            }
            limits.check().map_err(anyhow::Error::msg)?;
            try_call(&strategy, call, &input, json, &limits)
        }
        StrategyCommand::New {
            name,
            world,
            lang,
            dir,
        } => {
            let world = match world {
                WorldArg::Generator => World::Generator,
                WorldArg::Debugger => World::Debugger,
            };
            let lang = match lang {
                LangArg::Rust => Lang::Rust,
                LangArg::Python => Lang::Python,
            };
            let path = super::scaffold::create(&dir, &name, world, lang)?;
            if lang == Lang::Python {
                println!(
                    "created {} (Python {} strategy)",
                    path.display(),
                    world.name()
                );
                println!("next:");
                println!("  cd {}", path.display());
                println!("  python3 -m pytest                            # native unit tests");
                println!("  reagent strategy build                       # -> build/{name}.wasm");
                println!(
                    "  reagent strategy try build/{name}.wasm --call {} --input INPUT.json",
                    world.export()
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!("created {} ({} strategy)", path.display(), world.name());
            println!("next:");
            println!("  cd {}", path.display());
            println!("  cargo test                                   # native unit tests");
            println!("  cargo build --release --target wasm32-wasip2");
            println!(
                "  reagent strategy inspect target/wasm32-wasip2/release/{}.wasm",
                name.replace('-', "_")
            );
            Ok(ExitCode::SUCCESS)
        }
        StrategyCommand::Build { dir, out } => {
            let built = build::build(&dir, out.as_deref())?;
            println!("{}", built.display());
            Ok(ExitCode::SUCCESS)
        }
        StrategyCommand::List => {
            for b in builtin::BUILTINS {
                println!("builtin:{:<14} {}", b.name, b.summary);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn grants_from(deny: &[String]) -> anyhow::Result<Grants> {
    let mut grants = Grants::default();
    for name in deny {
        match name.as_str() {
            "insights" => grants.insights = false,
            "memory" => grants.memory = false,
            "llm" => grants.llm = false,
            other => bail!("--deny {other}: expected insights, memory or llm"),
        }
    }
    Ok(grants)
}

fn inspect(strategy: &str, json: bool, deny: &[String]) -> anyhow::Result<ExitCode> {
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    let source = StrategySource::parse(strategy);
    let grants = grants_from(deny)?;
    let info = sandbox.inspect(&source, &grants)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print_info(&info);
    }
    Ok(if info.accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_info(info: &ComponentInfo) {
    println!("strategy  {}", info.source);
    match info.world {
        Some(world) => println!("world     {world}"),
        None => println!("world     (none: exports match neither strategy world)"),
    }
    println!("exports   {}", info.exports.join(", "));
    for (i, import) in info.imports.iter().enumerate() {
        println!(
            "{}{import}",
            if i == 0 { "imports   " } else { "          " }
        );
    }
    println!("size      {} bytes", info.size);
    println!("sha256    {}", info.sha256);
    println!(
        "sdk       {}",
        info.sdk_version
            .as_deref()
            .map_or("(not built with reagent-sdk)".to_string(), |v| format!(
                "reagent-sdk {v}"
            ))
    );
    if !info.ungranted.is_empty() {
        println!(
            "grants    not granted: {} (linked; every call answers nothing)",
            info.ungranted.join(", ")
        );
    }
    if info.accepted {
        println!(
            "verdict   accepted: imports only reagent:strategy interfaces and the virtual WASI set"
        );
    } else {
        println!("verdict   REFUSED:");
        for r in &info.refusals {
            println!("            {}: {}", r.import, r.reason);
        }
    }
}

/// The JSON accepted by `strategy try --input`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TryInput {
    pub(crate) context: Context,
    #[serde(default)]
    pub(crate) max: Option<u32>,
    #[serde(default)]
    pub(crate) failure: Option<FailureReport>,
    #[serde(default)]
    pub(crate) history: StaticData,
    #[serde(default)]
    pub(crate) memory: MemoryStore,
}

fn read_input(path: &Path) -> anyhow::Result<TryInput> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read input file {}", path.display()))?;
    parse_input(&path.display().to_string(), &text)
}

/// Reads `strategy try --input` text; an error names `origin:line:column`.
pub(crate) fn parse_input(origin: &str, text: &str) -> anyhow::Result<TryInput> {
    serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{origin}:{}:{}: {e}\n(expected the format of examples/strategy-inputs/propose.json or diagnose.json)",
            e.line(),
            // serde_json says column 0 for the start of a line.
            e.column().max(1)
        )
    })
}

fn try_call(
    strategy: &str,
    call: CallKind,
    input_path: &Path,
    json: bool,
    limits: &Limits,
) -> anyhow::Result<ExitCode> {
    let input = read_input(input_path)?;
    let call_input = match call {
        CallKind::Propose => CallInput::Propose {
            context: input.context,
            max: input.max.unwrap_or(8),
        },
        CallKind::Diagnose => CallInput::Diagnose {
            context: input.context,
            failure: input.failure.with_context(|| {
                format!(
                    "{}: --call diagnose needs a \"failure\" object (see examples/strategy-inputs/diagnose.json)",
                    input_path.display()
                )
            })?,
        },
    };
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    let source = StrategySource::parse(strategy);
    let loaded = sandbox.load(&source, &Grants::default())?;
    if loaded.info.world != Some(call_input.world()) {
        bail!(
            "{strategy} implements {}, which has no `{}` export; use --call {}",
            loaded
                .info
                .world
                .map_or("no strategy world".into(), |w| w.to_string()),
            call_input.world().export(),
            loaded.info.world.map_or("propose", |w| w.export()),
        );
    }
    let (record, _memory) = sandbox.call(
        &loaded,
        call_input,
        Arc::new(input.history),
        input.memory,
        limits,
    );
    if json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        print_record(&record);
    }
    Ok(if record.outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_record(record: &CallRecord) {
    match &record.outcome {
        Ok(CallOutput::Hypotheses(list)) => {
            println!("{} hypotheses", list.len());
            for (i, h) in list.iter().enumerate() {
                let changes: Vec<String> = h
                    .assignments
                    .iter()
                    .map(|a| format!("{}={}", a.knob, render_value(&a.value)))
                    .collect();
                println!(
                    "  {i:>2}. [{}] {}",
                    term::line(&h.category),
                    term::line(&h.title)
                );
                println!("      set: {}", term::line(&changes.join(" ")));
                if !h.parents.is_empty() {
                    println!("      parents: {:?}", h.parents);
                }
                if !h.rationale.is_empty() {
                    println!("      why: {}", term::line(&h.rationale));
                }
            }
        }
        Ok(CallOutput::Diagnosis(d)) => {
            println!("class:  {}", crate::strategy::failure_class_name(d.class));
            println!("action: {:?}", d.action);
            println!("why:    {}", term::line(&d.rationale));
        }
        Err(e) => println!("error ({}): {}", e.kind(), term::block(&e.to_string())),
    }
    let u = &record.usage;
    let l = &record.limits;
    println!(
        "usage: fuel {} of {} ({:.3}%), peak memory {:.1} MiB of {} MiB, {} host calls, wall {:.2} ms",
        u.fuel,
        l.fuel,
        100.0 * u.fuel as f64 / l.fuel as f64,
        u.peak_memory_bytes as f64 / (1 << 20) as f64,
        l.memory_bytes >> 20,
        u.host_calls,
        u.wall_us as f64 / 1000.0
    );
    if !record.log.lines.is_empty() || record.log.dropped_lines > 0 {
        println!("strategy log:");
        for line in record.log.lines.iter().take(20) {
            println!("  {:?}: {}", line.level, term::line(&line.message));
        }
        let more = record.log.lines.len().saturating_sub(20) as u64 + record.log.dropped_lines;
        if more > 0 {
            println!("  … {more} more lines");
        }
    }
    for (name, text) in [
        ("stdout", &record.log.stdout),
        ("stderr", &record.log.stderr),
    ] {
        if !text.is_empty() {
            println!("strategy {name}:");
            for line in text.lines().take(10) {
                println!("  {}", term::line(line));
            }
        }
    }
}

/// `reagent strategy build`: a Rust crate with cargo, a Python project with
/// componentize-py.
///
/// Python: the pinned componentize-py lives in a venv this command creates
/// once under `$REAGENT_PYTHON_DIR` (default `~/.cache/reagent/python`).
/// componentize-py does not build reproducibly (two builds of the same
/// sources differ), so each build is kept under `builds/` keyed by the
/// sha256 of everything that goes in; unchanged sources give back the same
/// bytes, hence the same content hash, a compile-cache hit and a replayable
/// audit log.
pub mod bench;
mod build;
