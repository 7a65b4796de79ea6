//! `reagent strategy bench`: strategies compared offline on cheap tasks
//! (host/src/lab), and `reagent __task`, a task as a real training job.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::term;
use crate::lab::summary::{self, Row, TARGET_SHARE};
use crate::lab::tasks::{SHIPPED, Task};
use crate::lab::{self, Method, OptunaSetup, Plan};
use crate::strategy::StrategySource;
use crate::workspace::Workspace;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Tasks: shipped names (branin, hartmann6, mixed, interact, trainer)
    /// or task files; comma-separated or repeated (default: every shipped task).
    #[arg(long = "task", value_delimiter = ',')]
    tasks: Vec<String>,
    /// What to compare: builtin:NAME, a .wasm component (a generator),
    /// `random`, `optuna-tpe`, `optuna-random`; comma-separated or repeated
    /// (default: builtin:three-phase,random).
    #[arg(long = "strategy", value_delimiter = ',')]
    strategies: Vec<String>,
    /// The debugger every Reagent strategy runs with.
    #[arg(long, default_value = "builtin:runbook")]
    debugger: String,
    /// Trial budgets (max_trials), comma-separated.
    #[arg(long = "budget", value_delimiter = ',', default_value = "30")]
    budgets: Vec<u32>,
    /// Seeds per (task, strategy, budget): each a noise instance of the
    /// task and a strategy seed.
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// Trials of one campaign at once (its max_parallel).
    #[arg(long, default_value_t = 2)]
    parallel: u32,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// The Python that runs Optuna (default $REAGENT_BENCH_PYTHON, else
    /// target/python/venv/bin/python, made by bench/setup-venv.sh).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Print the summary rows and every run as JSON.
    #[arg(long)]
    json: bool,
    /// Write an SVG of median best-so-far against trials here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Fit a surrogate task to this campaign of the workspace and write it
    /// as a task file (see --out), instead of benching.
    #[arg(long, value_name = "ID")]
    task_from_campaign: Option<u64>,
    /// Where --task-from-campaign writes (default campaign-ID.task.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// List the shipped tasks.
    #[arg(long)]
    list_tasks: bool,
}

pub fn run(args: BenchArgs, workspace: Option<&Path>) -> anyhow::Result<ExitCode> {
    if args.list_tasks {
        for (name, summary) in SHIPPED {
            println!("{name:<10} {summary}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(id) = args.task_from_campaign {
        return export_task(id, args.out.as_deref(), workspace);
    }
    let debugger = StrategySource::parse(&args.debugger);
    let names = if args.tasks.is_empty() {
        SHIPPED.iter().map(|(n, _)| n.to_string()).collect()
    } else {
        args.tasks.clone()
    };
    let tasks = names
        .iter()
        .map(|n| Task::named(n, 0))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let specs = if args.strategies.is_empty() {
        vec!["builtin:three-phase".to_string(), "random".to_string()]
    } else {
        args.strategies.clone()
    };
    let methods = specs
        .iter()
        .map(|s| Method::parse(s, &debugger).map_err(|e| anyhow::anyhow!("--strategy {s}: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(b) = args.budgets.iter().find(|&&b| b < 8) {
        anyhow::bail!(
            "--budget {b} is too small: a campaign needs its baseline replicates, confirmation and a few trials (at least 8)"
        );
    }
    if args.seeds == 0 {
        anyhow::bail!("--seeds must be at least 1");
    }
    let optuna = optuna_setup(&methods, args.python.as_deref())?;
    let sandbox = crate::workspace::new_sandbox()?;
    // Load every component once up front: a bad path fails here, not in
    // the middle of a thousand campaigns.
    for m in &methods {
        if let Method::Engine { generator, .. } = m {
            sandbox
                .load(generator, &Default::default())
                .with_context(|| format!("--strategy {generator}"))?;
        }
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    });
    let plan = Plan {
        tasks,
        methods,
        budgets: args.budgets.clone(),
        seeds: args.seeds,
        parallel: args.parallel,
        threads,
        optuna,
    };
    let started = std::time::Instant::now();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress = |done: usize, total: usize| {
        if tty {
            eprint!("\rbench: {done}/{total} campaigns");
            if done == total {
                eprintln!();
            }
        }
    };
    let runs = lab::bench(&plan, sandbox, &progress)?;
    let rows = summary::summarise(&runs, &plan.tasks);
    if let Some(path) = &args.plot {
        let svg = summary::plot_svg(&rows)?;
        std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        let out = serde_json::json!({ "rows": rows, "runs": runs });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_tables(&rows, &plan.tasks, args.seeds);
        eprintln!(
            "{} campaigns in {:.1} s on {threads} threads",
            runs.len(),
            started.elapsed().as_secs_f64()
        );
        if let Some(path) = &args.plot {
            eprintln!("plot: {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Columns padded to their widest cell; each cell one line (term::line).
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }
    fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.iter().map(|c| term::line(c).into_owned()).collect());
    }
    fn render(&self) -> String {
        let cols = self.rows[0].len();
        let width = |i: usize| {
            self.rows
                .iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..cols).map(width).collect();
        let mut out = String::new();
        for r in &self.rows {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            out.push_str("  ");
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

fn optuna_setup(methods: &[Method], python: Option<&Path>) -> anyhow::Result<Option<OptunaSetup>> {
    if !methods.iter().any(|m| matches!(m, Method::Optuna(_))) {
        return Ok(None);
    }
    let dir = lab::bench_dir().ok_or_else(|| {
        anyhow::anyhow!(
            "optuna-* needs the source checkout's bench/ (or $REAGENT_BENCH_DIR) for task_optimizer.py"
        )
    })?;
    let from_env = std::env::var_os("REAGENT_BENCH_PYTHON").map(PathBuf::from);
    let python = match python.map(Path::to_path_buf).or(from_env) {
        Some(p) => p,
        None => {
            let venv = dir.join("../target/python/venv/bin/python");
            if !venv.exists() {
                anyhow::bail!(
                    "optuna-* needs Python with Optuna: run bench/setup-venv.sh (creates {}) or pass --python",
                    venv.display()
                );
            }
            venv
        }
    };
    Ok(Some(OptunaSetup {
        python,
        script: dir.join("task_optimizer.py"),
    }))
}

fn export_task(id: u64, out: Option<&Path>, workspace: Option<&Path>) -> anyhow::Result<ExitCode> {
    let ws = Workspace::find(workspace)?;
    let store = ws.open_store(std::time::Duration::from_secs(10))?;
    let (task, fit) = lab::task_from_campaign(&store, id)?;
    let path = out.map_or_else(
        || PathBuf::from(format!("campaign-{id}.task.json")),
        Path::to_path_buf,
    );
    let file = task.to_file().expect("a surrogate task");
    std::fs::write(&path, serde_json::to_string_pretty(&file)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    println!("  {}", task.summary);
    println!(
        "  lengthscale {} (unit knob space), {} failed trials kept as a failing region",
        fit.surrogate.lengthscale,
        fit.surrogate.failed.len()
    );
    println!(
        "bench on it: reagent strategy bench --task {}",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn fmt(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let a = x.abs();
    if a != 0.0 && !(1e-3..1e4).contains(&a) {
        format!("{x:.2e}")
    } else {
        format!("{x:.4}")
    }
}

fn print_tables(rows: &[Row], tasks: &[Task], seeds: u64) {
    let mut seen: Vec<(String, u32)> = Vec::new();
    for r in rows {
        if seen.contains(&(r.task.clone(), r.budget)) {
            continue;
        }
        seen.push((r.task.clone(), r.budget));
        let task = tasks.iter().find(|t| t.name == r.task);
        println!();
        println!(
            "{} — {} trials, {seeds} seeds{}",
            r.task,
            r.budget,
            task.map_or(String::new(), |t| format!(": {}", t.summary))
        );
        println!(
            "  target: loss ≤ {} ({:.0}% of the way from the baseline to {})",
            fmt(r.target),
            TARGET_SHARE * 100.0,
            if task.and_then(|t| t.optimum).is_some() {
                "the optimum"
            } else {
                "the best any run saw"
            }
        );
        let mut table = Table::new(&[
            "strategy",
            "search trials",
            "improvement (median [IQR])",
            "gap closed",
            "P(beat on holdout)",
            "trials to target",
            "failed trials",
            "host ms",
        ]);
        for m in rows
            .iter()
            .filter(|x| x.task == r.task && x.budget == r.budget)
        {
            table.row(vec![
                m.method.clone(),
                format!("{:.0}", m.search_trials_median),
                format!(
                    "{} [{} .. {}]",
                    fmt(m.improvement_median),
                    fmt(m.improvement_q1),
                    fmt(m.improvement_q3)
                ),
                m.gap_closed
                    .map_or("-".into(), |g| format!("{:.0}%", g * 100.0)),
                format!("{:.2}", m.p_beat_holdout),
                match m.trials_to_target {
                    Some(t) => format!("{t:.0} ({}/{} reached)", m.reached, m.seeds),
                    None => format!("- ({}/{} reached)", m.reached, m.seeds),
                },
                format!(
                    "{:.1} ({:.0}% of time)",
                    m.failed_mean,
                    m.failed_time_share * 100.0
                ),
                format!("{:.0}", m.host_ms_median),
            ]);
        }
        print!("{}", table.render());
    }
    let _ = std::io::stdout().flush();
}

/// `reagent __task TASK`: one trial of a task as a training job. Reads the
/// knobs and seed from `$REAGENT_PARAMS`, appends `{"step": 1, "loss": …,
/// "holdout_loss": …}` to `$REAGENT_METRICS`; a failing configuration
/// prints what a trainer would and exits 1.
pub fn task_job(spec: &str, instance: u64) -> anyhow::Result<ExitCode> {
    let task = Task::named(spec, instance)?;
    let params_path = std::env::var("REAGENT_PARAMS")
        .map_err(|_| anyhow::anyhow!("$REAGENT_PARAMS is not set (run me as a campaign's job)"))?;
    let params: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&params_path)
            .with_context(|| format!("cannot read {params_path}"))?,
    )?;
    let (config, seed) = lab::backend::config_from_params(&task.knobs, &params)?;
    let outcome = lab::backend::outcome(&task, &config, seed);
    if outcome.exit_code != Some(0) {
        eprintln!("{}", outcome.log_tail);
        return Ok(ExitCode::from(1));
    }
    let mut line = serde_json::Map::new();
    line.insert("step".into(), 1.into());
    for (k, v) in &outcome.metrics {
        line.insert(k.clone(), serde_json::json!(v));
    }
    let text = serde_json::Value::Object(line).to_string() + "\n";
    match std::env::var("REAGENT_METRICS") {
        Ok(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .with_context(|| format!("cannot write {path}"))?,
        Err(_) => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
