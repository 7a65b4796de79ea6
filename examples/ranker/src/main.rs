//! The `reagent-ranker` command line.

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use reagent_ranker::optim::OptimizerKind;
use reagent_ranker::synth::{self, SynthConfig};
use reagent_ranker::train::{self, LossKind, TrainConfig};

#[derive(Parser, Debug)]
#[command(
    name = "reagent-ranker",
    version,
    about = "A small click-through / learning-to-rank trainer (Reagent's example workload)",
    long_about = "A small click-through / learning-to-rank trainer (Reagent's example workload).\n\n\
        `gen-data` writes synthetic click logs in LETOR format; `train` trains a ranking \
        model (hashed-id embeddings, dense features, optional cross layers and MLP) on a \
        LETOR / SVMlight data directory and reports NE, AUC, NDCG@10 and logloss."
)]
struct Cli {
    /// Threads for candle's kernels (1 keeps runs deterministic and polite).
    #[arg(long, global = true, default_value_t = 1, env = "RAYON_NUM_THREADS")]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write synthetic click logs (train.txt, vali.txt, test.txt, meta.json).
    GenData(GenArgs),
    /// Train and evaluate a ranking model on a LETOR data directory.
    #[command(after_help = TRAIN_AFTER_HELP)]
    Train(Box<TrainArgs>),
}

const TRAIN_AFTER_HELP: &str = "\
Data: DIR holds train.txt, vali.txt (or valid.txt) and optionally test.txt
(other names containing train / vali / valid / test are found too), lines
`label qid:N index:value ... # comment`. Labels may be graded (0-4); the
pointwise loss and NE/AUC/logloss treat label > 0 as a click. Feature indices
listed in DIR/meta.json (\"categorical\") or --categorical hold integer ids that
are hashed into --hash-buckets embedding rows; the rest are dense and are
standardized on train (signed log first for columns with |x| > 100).

Metrics (stdout per epoch, and JSON lines appended to $REAGENT_METRICS):
  epoch, train_loss, valid_ne, valid_auc, valid_ndcg, valid_logloss,
  valid_ne_stderr, valid_ndcg_stderr, test_ne, test_auc, test_ndcg,
  test_logloss, train_seconds; a last line adds \"final\": true,
  wall_seconds and num_params.
  *_ndcg is NDCG@10 (gain 2^label-1, per query, averaged over queries with
  a positive label; tied scores get the expected DCG). NE = logloss divided
  by the entropy of the evaluated set's click rate (1 = constant predictor,
  lower is better). Probabilities are sigmoid(score) for the pointwise loss;
  for pairwise / listwise, whose scores have no fixed scale, sigmoid(a*score
  + b) with (a, b) fitted on training rows after each epoch (Platt scaling;
  AUC and NDCG do not change). Standard errors are over queries.

Defaults are a plausible, mediocre production model: hashed embeddings and
dense features, one cross layer, no MLP, SGD with momentum at lr 0.05, 2
epochs.

Failures (exit 1): a NaN/inf training loss, or one above both 10 and 100x the
first step's, prints `error: loss exploded (nan) at step S` after writing
{\"epoch\": E, \"train_loss\": NaN (or the value)} to the metrics file;
an estimate above --memory-limit-mb prints `RuntimeError: out of memory:
...` before training; REAGENT_RANKER_FLAKE=p (or `always`) makes a run fail
with an NCCL error with probability p, drawn from --seed and $REAGENT_TRIAL.

Every knob can also be set as REAGENT_KNOB_<NAME> (e.g. REAGENT_KNOB_LR); a
flag on the command line wins.";

#[derive(Args, Debug)]
struct GenArgs {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 5000)]
    users: usize,
    #[arg(long, default_value_t = 10000)]
    items: usize,
    /// Number of queries (requests), each with min..=max candidates.
    #[arg(long, default_value_t = 40000)]
    queries: usize,
    #[arg(long, default_value_t = 20)]
    min_candidates: usize,
    #[arg(long, default_value_t = 50)]
    max_candidates: usize,
    #[arg(long, default_value_t = 8)]
    user_categories: usize,
    #[arg(long, default_value_t = 16)]
    item_categories: usize,
    /// Dimension of the user / item latent feature vectors.
    #[arg(long, default_value_t = 4)]
    latent_dim: usize,
    /// Scale of the interaction terms (0 makes the data additive).
    #[arg(long, default_value_t = 1.0)]
    interaction: f64,
    /// Examination probability is position^-b.
    #[arg(long, default_value_t = 0.7)]
    position_bias: f64,
    /// Probability that a label is replaced by a coin flip.
    #[arg(long, default_value_t = 0.02)]
    noise: f64,
    #[arg(long, default_value_t = 0.1)]
    valid_fraction: f64,
    #[arg(long, default_value_t = 0.1)]
    test_fraction: f64,
}

fn parse_list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<T>()
                .map_err(|_| format!("bad list element '{t}'"))
        })
        .collect()
}

/// A comma-separated list as one argument value (clap would otherwise take a
/// `Vec` field as repeated values).
#[derive(Debug, Clone)]
struct List<T>(Vec<T>);

fn parse_sizes(s: &str) -> Result<List<usize>, String> {
    let v: Vec<usize> = parse_list(s)?;
    if v.contains(&0) {
        return Err("layer sizes must be positive".into());
    }
    Ok(List(v))
}

fn parse_indices(s: &str) -> Result<List<u32>, String> {
    parse_list(s).map(List)
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// Data directory (train / valid / test LETOR files).
    #[arg(long)]
    data: PathBuf,
    /// Learning rate.
    #[arg(long, default_value_t = 0.05, env = "REAGENT_KNOB_LR")]
    lr: f64,
    /// Rows per step (pairwise/listwise: whole queries until this many rows).
    #[arg(long, default_value_t = 256, env = "REAGENT_KNOB_BATCH_SIZE")]
    batch_size: usize,
    /// Embedding width per categorical field.
    #[arg(long, default_value_t = 8, env = "REAGENT_KNOB_EMBEDDING_DIM")]
    embedding_dim: usize,
    /// MLP tower sizes, e.g. "64,32"; "" for none.
    #[arg(long, default_value = "", value_parser = parse_sizes, env = "REAGENT_KNOB_HIDDEN")]
    hidden: List<usize>,
    /// DCN cross layers: x_{l+1} = x0 * (W x_l + b) + x_l.
    #[arg(long, default_value_t = 1, env = "REAGENT_KNOB_CROSS_LAYERS")]
    cross_layers: usize,
    /// Dropout after each hidden layer (or on the head's input without one).
    #[arg(long, default_value_t = 0.0, env = "REAGENT_KNOB_DROPOUT")]
    dropout: f64,
    /// L2 penalty (added to every gradient as l2 * weight).
    #[arg(long, default_value_t = 0.0, env = "REAGENT_KNOB_L2")]
    l2: f64,
    /// Passes over the training split (evaluation after each).
    #[arg(long, default_value_t = 2, env = "REAGENT_KNOB_EPOCHS")]
    epochs: usize,
    /// Embedding rows shared by all hashed categorical ids.
    #[arg(long, default_value_t = 100_000, env = "REAGENT_KNOB_HASH_BUCKETS")]
    hash_buckets: usize,
    /// Training objective.
    #[arg(long, value_enum, default_value_t = LossKind::Pointwise, env = "REAGENT_KNOB_LOSS")]
    loss: LossKind,
    /// sgd (with --momentum), adam, or adagrad; embedding rows are updated
    /// sparsely (only the rows a batch touched).
    #[arg(long, value_enum, default_value_t = OptimizerKind::Sgd, env = "REAGENT_KNOB_OPTIMIZER")]
    optimizer: OptimizerKind,
    /// Momentum of sgd (0 for plain SGD; ignored by adam and adagrad).
    #[arg(long, default_value_t = 0.9, env = "REAGENT_KNOB_MOMENTUM")]
    momentum: f64,
    /// Seeds initialization, shuffling and dropout.
    #[arg(long, default_value_t = 1, env = "REAGENT_SEED")]
    seed: u64,
    /// Abort before training if the estimated footprint exceeds this.
    #[arg(long, env = "REAGENT_RANKER_MEMORY_LIMIT_MB")]
    memory_limit_mb: Option<f64>,
    /// Feature indices holding categorical ids, e.g. "13,14" (default: from
    /// DIR/meta.json, else none).
    #[arg(long, value_parser = parse_indices)]
    categorical: Option<List<u32>>,
    /// Append JSON lines of metrics here.
    #[arg(long, env = "REAGENT_METRICS")]
    metrics_file: Option<PathBuf>,
}

fn gen_data(a: &GenArgs) -> Result<()> {
    let cfg = SynthConfig {
        seed: a.seed,
        users: a.users,
        items: a.items,
        queries: a.queries,
        min_candidates: a.min_candidates,
        max_candidates: a.max_candidates,
        user_categories: a.user_categories,
        item_categories: a.item_categories,
        latent_dim: a.latent_dim,
        interaction: a.interaction,
        position_bias: a.position_bias,
        noise: a.noise,
        valid_fraction: a.valid_fraction,
        test_fraction: a.test_fraction,
    };
    let s = synth::generate(&cfg, &a.out)?;
    for (i, name) in synth::SPLIT_FILES.iter().enumerate() {
        println!(
            "{}: {} queries, {} rows, click rate {:.4}",
            a.out.join(name).display(),
            s.queries[i],
            s.rows[i],
            s.clicks[i] as f64 / s.rows[i].max(1) as f64
        );
    }
    println!(
        "reference: NE of the true click probabilities on valid (knowing the position) {:.4}",
        s.oracle_valid_ne
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SAFETY: nothing else runs yet; candle reads this variable for the
    // number of threads of its kernels.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", cli.threads.max(1).to_string()) };
    match cli.command {
        Command::GenData(a) => match gen_data(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Train(a) => {
            let cfg = TrainConfig {
                data: a.data,
                lr: a.lr,
                batch_size: a.batch_size,
                embedding_dim: a.embedding_dim,
                hidden: a.hidden.0,
                cross_layers: a.cross_layers,
                dropout: a.dropout,
                l2: a.l2,
                epochs: a.epochs,
                hash_buckets: a.hash_buckets,
                loss: a.loss,
                optimizer: a.optimizer,
                momentum: a.momentum,
                seed: a.seed,
                memory_limit_mb: a.memory_limit_mb,
                categorical: a.categorical.map(|l| l.0),
                metrics_path: a.metrics_file,
                flake: std::env::var("REAGENT_RANKER_FLAKE").ok(),
                trial: std::env::var("REAGENT_TRIAL").ok(),
                verbose: true,
            };
            let mut stdout = std::io::stdout();
            match train::run(&cfg, &mut stdout) {
                Ok(_) => ExitCode::SUCCESS,
                Err(f) => {
                    eprintln!("{f}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
