//! The `train` command: load a data directory, build the model, train it,
//! evaluate after every epoch, report metrics, and fail the way real jobs
//! fail (divergence, out of memory, infrastructure flakes).

use anyhow::{Context, anyhow};
use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::letor::{self, Dataset, MISSING_ID};
use crate::metrics::{self, Eval};
use crate::model::{Inputs, Model, ModelConfig};
use crate::optim::{Optim, OptimizerKind, SparseOptim, add_l2};

/// The training objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LossKind {
    /// Logloss on clicks (label > 0), rows shuffled independently.
    Pointwise,
    /// RankNet: logloss of `sigmoid(s_i - s_j)` over the pairs of a query
    /// with `label_i > label_j`.
    Pairwise,
    /// Softmax cross-entropy per query against targets `∝ 2^label - 1`.
    Listwise,
}

/// Everything `train` needs.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub data: PathBuf,
    pub lr: f64,
    pub batch_size: usize,
    pub embedding_dim: usize,
    pub hidden: Vec<usize>,
    pub cross_layers: usize,
    pub dropout: f64,
    pub l2: f64,
    pub epochs: usize,
    pub hash_buckets: usize,
    pub loss: LossKind,
    pub optimizer: OptimizerKind,
    /// Momentum of `sgd` (0 = plain SGD).
    pub momentum: f64,
    pub seed: u64,
    pub memory_limit_mb: Option<f64>,
    /// Feature indices holding categorical ids (overrides `meta.json`).
    pub categorical: Option<Vec<u32>>,
    /// Where to append JSON lines (`$REAGENT_METRICS`).
    pub metrics_path: Option<PathBuf>,
    /// `$REAGENT_RANKER_FLAKE`: a probability or "always".
    pub flake: Option<String>,
    /// `$REAGENT_TRIAL`, which seeds the flake together with `seed`.
    pub trial: Option<String>,
    /// Print a line per epoch to stdout.
    pub verbose: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: PathBuf::new(),
            lr: 0.05,
            batch_size: 256,
            embedding_dim: 8,
            hidden: Vec::new(),
            cross_layers: 1,
            dropout: 0.0,
            l2: 0.0,
            epochs: 2,
            hash_buckets: 100_000,
            loss: LossKind::Pointwise,
            optimizer: OptimizerKind::Sgd,
            momentum: 0.9,
            seed: 1,
            memory_limit_mb: None,
            categorical: None,
            metrics_path: None,
            flake: None,
            trial: None,
            verbose: true,
        }
    }
}

/// How a run can fail. `Display` gives the line for stderr.
#[derive(Debug)]
pub enum Failure {
    Diverged {
        step: usize,
        loss: f64,
    },
    OutOfMemory {
        needed_mib: u64,
        limit_mib: f64,
        batch_size: usize,
    },
    Flake,
    Other(anyhow::Error),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Diverged { step, loss } => {
                let shown = if loss.is_nan() {
                    "nan".to_string()
                } else if loss.is_infinite() {
                    "inf".to_string()
                } else {
                    format!("{loss:.4e}")
                };
                write!(f, "error: loss exploded ({shown}) at step {step}")
            }
            Failure::OutOfMemory {
                needed_mib,
                limit_mib,
                batch_size,
            } => write!(
                f,
                "RuntimeError: out of memory: the model needs {needed_mib} MiB but the limit is {limit_mib} MiB (batch size {batch_size})"
            ),
            Failure::Flake => {
                write!(
                    f,
                    "NCCL error: unhandled system error (connection reset by peer)"
                )
            }
            Failure::Other(e) => write!(f, "error: {e:#}"),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

impl From<candle_core::Error> for Failure {
    fn from(e: candle_core::Error) -> Self {
        Failure::Other(e.into())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Other(e.into())
    }
}

/// Metrics of one epoch.
#[derive(Debug, Clone)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    pub valid: Eval,
    pub test: Option<Eval>,
    pub train_seconds: f64,
}

/// What a finished run returns.
#[derive(Debug, Clone)]
pub struct Summary {
    pub epochs: Vec<EpochReport>,
    pub num_params: usize,
    pub needed_mib: u64,
    pub wall_seconds: f64,
}

impl Summary {
    pub fn last(&self) -> &EpochReport {
        self.epochs.last().expect("at least one epoch")
    }
}

// ---------------------------------------------------------------------------
// Data preparation

/// One split ready for the model: standardized dense features and hashed ids.
#[derive(Debug)]
pub struct Split {
    pub ds: Dataset,
    /// `rows × n_cat` embedding rows.
    pub buckets: Vec<u32>,
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The embedding row of categorical field `slot` with value `id`.
pub fn bucket(slot: usize, id: i64, buckets: usize) -> u32 {
    let h = splitmix64((id as u64) ^ splitmix64(slot as u64 + 1));
    (h % buckets as u64) as u32
}

/// Per-column transform fitted on the training split: heavy-tailed columns
/// (max |x| > 100, as in MSLR) get `sign(x)·ln(1+|x|)`, then every column is
/// standardized and clipped to ±10.
#[derive(Debug, Clone)]
pub struct Standardizer {
    log: Vec<bool>,
    mean: Vec<f64>,
    inv_std: Vec<f64>,
}

fn signed_log(x: f64) -> f64 {
    x.signum() * x.abs().ln_1p()
}

impl Standardizer {
    pub fn fit(ds: &Dataset) -> Self {
        let w = ds.n_dense;
        let rows = ds.rows().max(1) as f64;
        let mut log = vec![false; w];
        for r in 0..ds.rows() {
            for (c, &x) in ds.dense_row(r).iter().enumerate() {
                if x.abs() > 100.0 {
                    log[c] = true;
                }
            }
        }
        let mut mean = vec![0.0; w];
        let mut sq = vec![0.0; w];
        for r in 0..ds.rows() {
            for (c, &x) in ds.dense_row(r).iter().enumerate() {
                let x = if log[c] {
                    signed_log(x as f64)
                } else {
                    x as f64
                };
                mean[c] += x;
                sq[c] += x * x;
            }
        }
        let inv_std = (0..w)
            .map(|c| {
                mean[c] /= rows;
                let var = sq[c] / rows - mean[c] * mean[c];
                if var > 1e-12 { 1.0 / var.sqrt() } else { 0.0 }
            })
            .collect();
        Standardizer { log, mean, inv_std }
    }

    pub fn apply(&self, ds: &mut Dataset) {
        let w = ds.n_dense;
        for row in ds.dense.chunks_mut(w.max(1)) {
            for (c, x) in row.iter_mut().enumerate() {
                let v = if self.log[c] {
                    signed_log(*x as f64)
                } else {
                    *x as f64
                };
                *x = ((v - self.mean[c]) * self.inv_std[c]).clamp(-10.0, 10.0) as f32;
            }
        }
    }
}

fn hash_split(ds: Dataset, buckets: usize) -> Split {
    let b = ds
        .cat
        .chunks(ds.n_cat.max(1))
        .flat_map(|row| {
            row.iter().enumerate().map(move |(slot, &id)| {
                // Missing ids get a bucket of their own per field.
                let id = if id == MISSING_ID { i64::MIN + 1 } else { id };
                bucket(slot, id, buckets)
            })
        })
        .collect();
    Split {
        buckets: if ds.n_cat == 0 { Vec::new() } else { b },
        ds,
    }
}

/// Loaded and prepared train / valid / test splits.
#[derive(Debug)]
pub struct Data {
    pub train: Split,
    pub valid: Split,
    pub test: Option<Split>,
    pub files: letor::SplitFiles,
    /// Seconds spent loading (counted in `wall_seconds`).
    pub load_seconds: f64,
}

/// Loads a data directory: finds the split files, reads `meta.json`,
/// parses, standardizes and hashes.
pub fn load(dir: &Path, categorical: Option<&[u32]>, hash_buckets: usize) -> anyhow::Result<Data> {
    let started = Instant::now();
    let files = letor::find_splits(dir)?;
    let meta = letor::read_meta(dir)?;
    let cats: Vec<u32> = match categorical {
        Some(c) => c.to_vec(),
        None => meta.map(|m| m.categorical).unwrap_or_default(),
    };
    let (mut train, seen) = letor::read_file(&files.train, &cats)?;
    let (mut valid, _) = letor::read_file(&files.valid, &cats)?;
    let mut test = match &files.test {
        Some(p) => Some(letor::read_file(p, &cats)?.0),
        None => None,
    };
    anyhow::ensure!(train.rows() > 0, "{}: no rows", files.train.display());
    anyhow::ensure!(valid.rows() > 0, "{}: no rows", files.valid.display());
    {
        let mut all: Vec<&mut Dataset> = vec![&mut train, &mut valid];
        if let Some(t) = test.as_mut() {
            all.push(t);
        }
        letor::finish_columns(&mut all, &seen);
    }
    let st = Standardizer::fit(&train);
    st.apply(&mut train);
    st.apply(&mut valid);
    if let Some(t) = test.as_mut() {
        st.apply(t);
    }
    Ok(Data {
        train: hash_split(train, hash_buckets),
        valid: hash_split(valid, hash_buckets),
        test: test.map(|t| hash_split(t, hash_buckets)),
        files,
        load_seconds: started.elapsed().as_secs_f64(),
    })
}

// ---------------------------------------------------------------------------
// Memory estimate

/// Estimated MiB to train: per parameter its value, gradient, one update
/// temporary and the optimizer state (4 bytes each); per example of a batch
/// the activations and their gradients.
pub fn estimate_mib(
    cfg: &ModelConfig,
    optimizer: OptimizerKind,
    momentum: f64,
    batch_size: usize,
) -> u64 {
    let params = cfg.num_params() as u64;
    let param_bytes = 4 * params * (3 + optimizer.state_per_param(momentum) as u64);
    let act_bytes = 4 * 2 * batch_size as u64 * cfg.activations_per_example() as u64;
    (param_bytes + act_bytes).div_ceil(1 << 20)
}

// ---------------------------------------------------------------------------
// Metrics file

/// A JSON value of a metrics line.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    Int(u64),
    Num(f64),
    Bool(bool),
}

fn format_num(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x == f64::INFINITY {
        "Infinity".into()
    } else if x == f64::NEG_INFINITY {
        "-Infinity".into()
    } else {
        // Shortest round-trip form; Rust never uses an exponent here.
        format!("{x}")
    }
}

/// One JSON object on one line; non-finite numbers as bare `NaN` /
/// `Infinity` tokens (as Python's `json.dumps` writes them).
pub fn json_line(fields: &[(&str, Value)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Int(i) => i.to_string(),
                Value::Num(x) => format_num(*x),
                Value::Bool(b) => b.to_string(),
            };
            format!("\"{k}\":{v}")
        })
        .collect();
    format!("{{{}}}", body.join(","))
}

fn append_line(path: Option<&Path>, line: &str) -> anyhow::Result<()> {
    if let Some(p) = path {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .with_context(|| format!("cannot open metrics file {}", p.display()))?;
        writeln!(f, "{line}")?;
        f.flush()?;
    }
    Ok(())
}

fn epoch_fields(r: &EpochReport) -> Vec<(&'static str, Value)> {
    let mut f = vec![
        ("epoch", Value::Int(r.epoch as u64)),
        ("train_loss", Value::Num(r.train_loss)),
        ("valid_ne", Value::Num(r.valid.ne)),
        ("valid_auc", Value::Num(r.valid.auc)),
        ("valid_ndcg", Value::Num(r.valid.ndcg)),
        ("valid_logloss", Value::Num(r.valid.logloss)),
        ("valid_ne_stderr", Value::Num(r.valid.ne_stderr)),
        ("valid_ndcg_stderr", Value::Num(r.valid.ndcg_stderr)),
    ];
    if let Some(t) = &r.test {
        f.extend([
            ("test_ne", Value::Num(t.ne)),
            ("test_auc", Value::Num(t.auc)),
            ("test_ndcg", Value::Num(t.ndcg)),
            ("test_logloss", Value::Num(t.logloss)),
        ]);
    }
    f.push(("train_seconds", Value::Num(round3(r.train_seconds))));
    f
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

// ---------------------------------------------------------------------------
// Flakes

/// The flake probability from `$REAGENT_RANKER_FLAKE`.
pub fn flake_probability(spec: &str) -> anyhow::Result<f64> {
    let s = spec.trim().to_ascii_lowercase();
    match s.as_str() {
        "" | "never" | "off" => Ok(0.0),
        "always" => Ok(1.0),
        _ => s
            .parse::<f64>()
            .ok()
            .filter(|p| (0.0..=1.0).contains(p))
            .ok_or_else(|| {
                anyhow!(
                    "REAGENT_RANKER_FLAKE must be a probability in [0, 1] or 'always', got '{spec}'"
                )
            }),
    }
}

/// Whether this run flakes, and after how long: seeded by the seed and
/// the trial, so a retry of the same trial is drawn the same way but
/// trials differ.
pub fn flake_draw(p: f64, seed: u64, trial: Option<&str>) -> Option<Duration> {
    let mut h = splitmix64(seed ^ 0x00F1_A4E5);
    for b in trial.unwrap_or("").bytes() {
        h = splitmix64(h ^ b as u64);
    }
    let mut rng = SmallRng::seed_from_u64(h);
    let u: f64 = rng.random();
    let delay = Duration::from_millis(rng.random_range(200..800));
    (u < p).then_some(delay)
}

// ---------------------------------------------------------------------------
// Training

fn gather(
    model: &Model,
    split: &Split,
    rows: &[usize],
) -> candle_core::Result<(Inputs, Vec<u32>, Vec<f32>)> {
    let ds = &split.ds;
    let nd = ds.n_dense;
    let nc = ds.n_cat;
    let mut dense = Vec::with_capacity(rows.len() * nd);
    let mut buckets = Vec::with_capacity(rows.len() * nc);
    let mut labels = Vec::with_capacity(rows.len());
    for &r in rows {
        dense.extend_from_slice(ds.dense_row(r));
        if !split.buckets.is_empty() {
            buckets.extend_from_slice(&split.buckets[r * nc..(r + 1) * nc]);
        }
        labels.push(ds.labels[r]);
    }
    let x = model.inputs(&buckets, dense, rows.len())?;
    Ok((x, buckets, labels))
}

/// Scores of the given rows of a split, without dropout.
pub fn predict_rows(model: &Model, split: &Split, rows: &[usize]) -> candle_core::Result<Vec<f32>> {
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(8192) {
        let (x, _, _) = gather(model, split, chunk)?;
        out.extend(model.forward(&x, None)?.detach().to_vec1::<f32>()?);
    }
    Ok(out)
}

/// Scores of every row of a split, without dropout.
pub fn predict(model: &Model, split: &Split) -> candle_core::Result<Vec<f32>> {
    let rows: Vec<usize> = (0..split.ds.rows()).collect();
    predict_rows(model, split, &rows)
}

/// Evaluates a split on the scores mapped through `a·s + b`.
fn evaluate(model: &Model, split: &Split, (a, b): (f64, f64)) -> candle_core::Result<Eval> {
    let mut scores = predict(model, split)?;
    if (a, b) != (1.0, 0.0) {
        scores
            .iter_mut()
            .for_each(|s| *s = (a * *s as f64 + b) as f32);
    }
    Ok(metrics::evaluate(
        &scores,
        &split.ds.labels,
        &split.ds.groups,
    ))
}

/// Rows of about every k-th training query, at most ~100k rows: the
/// sample that calibrates ranking-loss scores.
fn calibration_rows(split: &Split) -> Vec<usize> {
    let total = split.ds.rows();
    let k = total.div_ceil(100_000).max(1);
    split
        .ds
        .groups
        .iter()
        .step_by(k)
        .flat_map(|g| g.clone())
        .collect()
}

/// `softplus(x) = ln(1 + e^x)`, computed stably.
fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    let tail = ((x.abs()?.neg()?.exp()? + 1.0)?).log()?;
    x.relu()? + tail
}

/// The batch loss, or `None` when the batch has nothing to learn from
/// (no pair, or no query with a positive label).
fn batch_loss(
    kind: LossKind,
    scores: &Tensor,
    labels: &[f32],
    groups: &[std::ops::Range<usize>],
) -> candle_core::Result<Option<Tensor>> {
    let dev = &Device::Cpu;
    match kind {
        LossKind::Pointwise => {
            let y: Vec<f32> = labels.iter().map(|&l| (l > 0.0) as u8 as f32).collect();
            let y = Tensor::from_vec(y, labels.len(), dev)?;
            // softplus(z) - y z
            let l = (softplus(scores)? - (scores * y)?)?;
            Ok(Some(l.mean_all()?))
        }
        LossKind::Pairwise => {
            let (mut hi, mut lo) = (Vec::new(), Vec::new());
            for g in groups {
                for i in g.clone() {
                    for j in g.clone() {
                        if labels[i] > labels[j] {
                            hi.push(i as u32);
                            lo.push(j as u32);
                        }
                    }
                }
            }
            if hi.is_empty() {
                return Ok(None);
            }
            let n = hi.len();
            let hi = Tensor::from_vec(hi, n, dev)?;
            let lo = Tensor::from_vec(lo, n, dev)?;
            let diff = (scores.index_select(&hi, 0)? - scores.index_select(&lo, 0)?)?;
            Ok(Some(softplus(&diff.neg()?)?.mean_all()?))
        }
        LossKind::Listwise => {
            let host = scores.detach().to_vec1::<f32>()?;
            let rows = labels.len();
            let mut kept = Vec::new();
            for g in groups {
                if g.clone().any(|r| labels[r] > 0.0) {
                    kept.push(g.clone());
                }
            }
            if kept.is_empty() {
                return Ok(None);
            }
            let nq = kept.len();
            // Indicator matrix (query × row), per-row shift and target.
            let mut ind = vec![0f32; nq * rows];
            let mut shift = vec![0f32; rows];
            let mut target = vec![0f32; rows];
            let mut group_of = vec![0u32; rows];
            let mut maxes = vec![0f32; nq];
            for (q, g) in kept.iter().enumerate() {
                let m = g.clone().map(|r| host[r]).fold(f32::NEG_INFINITY, f32::max);
                maxes[q] = m;
                let total: f32 = g.clone().map(|r| 2f32.powf(labels[r]) - 1.0).sum();
                for r in g.clone() {
                    ind[q * rows + r] = 1.0;
                    shift[r] = m;
                    target[r] = (2f32.powf(labels[r]) - 1.0) / total;
                    group_of[r] = q as u32;
                }
            }
            let ind = Tensor::from_vec(ind, (nq, rows), dev)?;
            let shift = Tensor::from_vec(shift, rows, dev)?;
            let maxes = Tensor::from_vec(maxes, nq, dev)?;
            let target = Tensor::from_vec(target, rows, dev)?;
            let group_of = Tensor::from_vec(group_of, rows, dev)?;
            // log-sum-exp per query, shifted by the (constant) query maximum.
            let e = (scores - shift)?.exp()?.reshape((rows, 1))?;
            let lse = (ind.matmul(&e)?.flatten_all()?.log()? + maxes)?;
            let per_row = (lse.index_select(&group_of, 0)? - scores)?;
            Ok(Some(((per_row * target)?.sum_all()? / nq as f64)?))
        }
    }
}

/// Batches of one epoch, as (rows, query ranges within the batch).
fn epoch_batches(
    split: &Split,
    kind: LossKind,
    batch_size: usize,
    rng: &mut SmallRng,
) -> Vec<(Vec<usize>, Vec<std::ops::Range<usize>>)> {
    let shuffle = |n: usize, rng: &mut SmallRng| {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            p.swap(i, rng.random_range(0..=i));
        }
        p
    };
    let mut out = Vec::new();
    match kind {
        LossKind::Pointwise => {
            let perm = shuffle(split.ds.rows(), rng);
            for chunk in perm.chunks(batch_size) {
                out.push((chunk.to_vec(), Vec::new()));
            }
        }
        LossKind::Pairwise | LossKind::Listwise => {
            // Whole queries, packed until the batch has batch_size rows.
            let perm = shuffle(split.ds.groups.len(), rng);
            let mut rows = Vec::new();
            let mut groups = Vec::new();
            for q in perm {
                let g = split.ds.groups[q].clone();
                let start = rows.len();
                rows.extend(g);
                groups.push(start..rows.len());
                if rows.len() >= batch_size {
                    out.push((std::mem::take(&mut rows), std::mem::take(&mut groups)));
                }
            }
            if !rows.is_empty() {
                out.push((rows, groups));
            }
        }
    }
    out
}

/// Whether a step's loss counts as exploded, given the first step's loss.
pub fn exploded(loss: f64, first: Option<f64>) -> bool {
    if !loss.is_finite() {
        return true;
    }
    match first {
        Some(f) => loss > 10.0 && loss > 100.0 * f.abs().max(0.1),
        None => false,
    }
}

fn print_epoch(out: &mut dyn Write, r: &EpochReport, epochs: usize) -> std::io::Result<()> {
    let v = &r.valid;
    let mut line = format!(
        "epoch {}/{} train_loss {:.5} | valid ne {:.5} auc {:.4} ndcg@10 {:.4} logloss {:.5}",
        r.epoch, epochs, r.train_loss, v.ne, v.auc, v.ndcg, v.logloss
    );
    if let Some(t) = &r.test {
        line += &format!(
            " | test ne {:.5} auc {:.4} ndcg@10 {:.4} logloss {:.5}",
            t.ne, t.auc, t.ndcg, t.logloss
        );
    }
    line += &format!(" | {:.1}s", r.train_seconds);
    writeln!(out, "{line}")
}

/// Runs a training job on loaded data. `out` receives the human-readable
/// lines.
pub fn train(cfg: &TrainConfig, data: &Data, out: &mut dyn Write) -> Result<Summary, Failure> {
    let started = Instant::now();
    let model_cfg = ModelConfig {
        n_cat: data.train.ds.n_cat,
        n_dense: data.train.ds.n_dense,
        hash_buckets: cfg.hash_buckets,
        embedding_dim: cfg.embedding_dim,
        hidden: cfg.hidden.clone(),
        cross_layers: cfg.cross_layers,
        dropout: cfg.dropout,
    };
    let metrics_path = cfg.metrics_path.as_deref();
    let needed_mib = estimate_mib(&model_cfg, cfg.optimizer, cfg.momentum, cfg.batch_size);
    if let Some(limit) = cfg.memory_limit_mb
        && needed_mib as f64 > limit
    {
        return Err(Failure::OutOfMemory {
            needed_mib,
            limit_mib: limit,
            batch_size: cfg.batch_size,
        });
    }
    if let Some(spec) = &cfg.flake {
        let p = flake_probability(spec)?;
        if let Some(delay) = flake_draw(p, cfg.seed, cfg.trial.as_deref()) {
            std::thread::sleep(delay);
            return Err(Failure::Flake);
        }
    }

    let mut rng = SmallRng::seed_from_u64(cfg.seed);
    let clicks = data.train.ds.clicks();
    let ctr = (clicks.iter().map(|&c| c as f64).sum::<f64>() / clicks.len() as f64)
        .clamp(1e-4, 1.0 - 1e-4);
    let mut model = Model::new(model_cfg.clone(), &mut rng, (ctr / (1.0 - ctr)).ln() as f32)?;
    let vars = model.vars();
    let mut opt = Optim::new(cfg.optimizer, vars.clone(), cfg.lr, cfg.momentum)?;
    let mut sparse = SparseOptim::new(
        cfg.optimizer,
        if model.emb.is_some() {
            cfg.hash_buckets
        } else {
            0
        },
        cfg.embedding_dim,
        cfg.lr,
        cfg.l2,
        cfg.momentum,
    );
    writeln!(
        out,
        "model: {} parameters (input width {}, {} categorical fields, {} dense), ~{} MiB to train; \
         data: {} train / {} valid / {} test rows",
        model_cfg.num_params(),
        model_cfg.input_dim(),
        model_cfg.n_cat,
        model_cfg.n_dense,
        needed_mib,
        data.train.ds.rows(),
        data.valid.ds.rows(),
        data.test.as_ref().map_or(0, |t| t.ds.rows()),
    )?;

    let mut first_loss = None;
    let mut step = 0usize;
    let mut train_time = Duration::ZERO;
    let mut reports = Vec::new();
    for epoch in 1..=cfg.epochs {
        let t0 = Instant::now();
        let batches = epoch_batches(&data.train, cfg.loss, cfg.batch_size, &mut rng);
        let (mut sum, mut counted) = (0.0, 0usize);
        for (rows, groups) in batches {
            let (mut x, buckets, labels) = gather(&model, &data.train, &rows)?;
            // The gathered embeddings are a leaf variable: their gradient
            // goes back to the table rows.
            let emb_var = match x.emb.take() {
                Some(e) => {
                    let v = Var::from_tensor(&e)?;
                    x.emb = Some(v.as_tensor().clone());
                    Some(v)
                }
                None => None,
            };
            let scores = model.forward(&x, Some(&mut rng))?;
            let Some(loss) = batch_loss(cfg.loss, &scores, &labels, &groups)? else {
                continue;
            };
            step += 1;
            let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if exploded(value, first_loss) {
                append_line(
                    metrics_path,
                    &json_line(&[
                        ("epoch", Value::Int(epoch as u64)),
                        (
                            "train_loss",
                            Value::Num(if value.is_finite() { value } else { f64::NAN }),
                        ),
                    ]),
                )?;
                return Err(Failure::Diverged { step, loss: value });
            }
            first_loss.get_or_insert(value);
            sum += value;
            counted += 1;
            let mut grads = loss.backward()?;
            add_l2(&mut grads, &vars, cfg.l2)?;
            opt.step(&grads)?;
            if let (Some(v), Some(table)) = (&emb_var, model.emb.as_mut())
                && let Some(g) = grads.get(v.as_tensor())
            {
                let g = g.flatten_all()?.to_vec1::<f32>()?;
                sparse.step(table, &buckets, &g);
            }
        }
        train_time += t0.elapsed();
        // Ranking losses leave the scores' scale and offset free: map them
        // to probabilities with Platt scaling fitted on training rows.
        let calibration = if cfg.loss == LossKind::Pointwise {
            (1.0, 0.0)
        } else {
            let rows = calibration_rows(&data.train);
            let scores = predict_rows(&model, &data.train, &rows)?;
            let clicks: Vec<f32> = rows
                .iter()
                .map(|&r| (data.train.ds.labels[r] > 0.0) as u8 as f32)
                .collect();
            metrics::fit_platt(&scores, &clicks)
        };
        let valid = evaluate(&model, &data.valid, calibration)?;
        let test = match &data.test {
            Some(t) => Some(evaluate(&model, t, calibration)?),
            None => None,
        };
        // Parameters can overflow without the loss showing it until the
        // next batch; an evaluation that produced non-finite scores is the
        // same divergence.
        if !valid.logloss.is_finite() {
            append_line(
                metrics_path,
                &json_line(&[
                    ("epoch", Value::Int(epoch as u64)),
                    ("train_loss", Value::Num(f64::NAN)),
                ]),
            )?;
            return Err(Failure::Diverged {
                step,
                loss: f64::NAN,
            });
        }
        let report = EpochReport {
            epoch,
            train_loss: if counted > 0 {
                sum / counted as f64
            } else {
                0.0
            },
            valid,
            test,
            train_seconds: train_time.as_secs_f64(),
        };
        append_line(metrics_path, &json_line(&epoch_fields(&report)))?;
        if cfg.verbose {
            print_epoch(out, &report, cfg.epochs)?;
        }
        reports.push(report);
    }
    let wall = data.load_seconds + started.elapsed().as_secs_f64();
    let summary = Summary {
        epochs: reports,
        num_params: model_cfg.num_params(),
        needed_mib,
        wall_seconds: wall,
    };
    if let Some(last) = summary.epochs.last() {
        let mut fields = epoch_fields(last);
        fields.insert(1, ("final", Value::Bool(true)));
        fields.push(("wall_seconds", Value::Num(round3(wall))));
        fields.push(("num_params", Value::Int(summary.num_params as u64)));
        append_line(metrics_path, &json_line(&fields))?;
        let v = &last.valid;
        writeln!(
            out,
            "final: valid_ne {:.5} (± {:.5}) valid_auc {:.4} valid_ndcg {:.4} (± {:.4}) train_seconds {:.1}",
            v.ne, v.ne_stderr, v.auc, v.ndcg, v.ndcg_stderr, last.train_seconds
        )?;
    }
    Ok(summary)
}

/// Loads the data of `cfg.data` and trains.
pub fn run(cfg: &TrainConfig, out: &mut dyn Write) -> Result<Summary, Failure> {
    let check = |ok: bool, msg: &str| {
        if ok {
            Ok(())
        } else {
            Err(Failure::Other(anyhow!("{msg}")))
        }
    };
    check(cfg.batch_size > 0, "--batch-size must be positive")?;
    check(cfg.hash_buckets > 0, "--hash-buckets must be positive")?;
    check(
        (0.0..1.0).contains(&cfg.dropout),
        "--dropout must be in [0, 1)",
    )?;
    check(cfg.lr > 0.0 && cfg.lr.is_finite(), "--lr must be positive")?;
    check(
        (0.0..1.0).contains(&cfg.momentum),
        "--momentum must be in [0, 1)",
    )?;
    let data = load(&cfg.data, cfg.categorical.as_deref(), cfg.hash_buckets)?;
    writeln!(
        out,
        "loaded {} ({:.1}s): train {}, valid {}, test {}",
        cfg.data.display(),
        data.load_seconds,
        data.files.train.display(),
        data.files.valid.display(),
        data.files
            .test
            .as_ref()
            .map_or("(none)".to_string(), |p| p.display().to_string()),
    )?;
    train(cfg, &data, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_write_non_finite_as_python_does() {
        let l = json_line(&[
            ("epoch", Value::Int(1)),
            ("train_loss", Value::Num(f64::NAN)),
            ("x", Value::Num(f64::INFINITY)),
            ("y", Value::Num(0.25)),
            ("final", Value::Bool(true)),
        ]);
        assert_eq!(
            l,
            r#"{"epoch":1,"train_loss":NaN,"x":Infinity,"y":0.25,"final":true}"#
        );
        assert_eq!(format_num(1e-7), "0.0000001");
    }

    #[test]
    fn explosion_rule() {
        assert!(exploded(f64::NAN, None));
        assert!(exploded(f64::INFINITY, Some(0.5)));
        assert!(!exploded(5.0, Some(0.5)));
        assert!(exploded(60.0, Some(0.5)));
        assert!(!exploded(60.0, None));
    }

    #[test]
    fn flake_spec_and_draw() {
        assert_eq!(flake_probability("always").unwrap(), 1.0);
        assert_eq!(flake_probability("0.25").unwrap(), 0.25);
        assert!(flake_probability("2").is_err());
        assert!(flake_draw(1.0, 7, Some("3")).is_some());
        assert!(flake_draw(0.0, 7, Some("3")).is_none());
        // Deterministic per (seed, trial), and about p of trials flake.
        let a = flake_draw(0.5, 1, Some("4"));
        assert_eq!(a, flake_draw(0.5, 1, Some("4")));
        let n = (0..400)
            .filter(|t| flake_draw(0.3, 1, Some(&t.to_string())).is_some())
            .count();
        assert!((80..160).contains(&n), "{n}");
    }

    #[test]
    fn buckets_are_stable_and_field_specific() {
        assert_eq!(bucket(0, 42, 1000), bucket(0, 42, 1000));
        let same = (0..1000)
            .filter(|&i| bucket(0, i, 1 << 20) == bucket(1, i, 1 << 20))
            .count();
        assert!(same < 5);
    }
}
