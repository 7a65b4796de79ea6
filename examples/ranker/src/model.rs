//! The ranking model on candle: hashed-id embeddings and dense features,
//! optional DCN-style cross layers, an optional MLP tower, a linear head.
//!
//! ```text
//! x0      = [emb(bucket(field_1, id_1)), …, emb(bucket(field_c, id_c)), dense]
//! x_{l+1} = x0 ⊙ (x_l W_l + b_l) + x_l          (cross layers, W_l is d0×d0)
//! h       = relu(… relu(x_L V_1 + c_1) …)       (MLP tower, dropout after each)
//! score   = h w + b                             (logit)
//! ```
//!
//! With no cross layers and no hidden layers this is logistic regression on
//! the dense features and the hashed one-hot ids (the embedding is factored
//! through the head). Dropout applies after each hidden layer, or to the
//! head's input when there is no hidden layer. All initial values come from
//! the run's seeded generator, so a run is reproducible.
//!
//! The embedding table lives on the host, outside candle's autograd, as in
//! production recommenders: a batch's rows are gathered into a tensor that
//! is a candle leaf variable, and its gradient is scattered back into the
//! touched rows only (see [`crate::optim::SparseOptim`]). Keeping the table
//! in a candle `Var` makes every step touch all `hash_buckets × dim` values
//! (the gradient of `index_select` is a dense zero table plus `index_add`,
//! and every optimizer update is dense): measured on the default synthetic
//! data, a step took 0.8 ms with SGD but 26 ms with Adam that way.

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::Rng;
use rand::rngs::SmallRng;

use crate::synth::normal;

/// The shape of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub n_cat: usize,
    pub n_dense: usize,
    pub hash_buckets: usize,
    pub embedding_dim: usize,
    pub hidden: Vec<usize>,
    pub cross_layers: usize,
    pub dropout: f64,
}

impl ModelConfig {
    /// Width of x0.
    pub fn input_dim(&self) -> usize {
        self.n_cat * self.embedding_dim + self.n_dense
    }

    fn uses_embeddings(&self) -> bool {
        self.n_cat > 0 && self.embedding_dim > 0
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        let d0 = self.input_dim();
        let mut n = if self.uses_embeddings() {
            self.hash_buckets * self.embedding_dim
        } else {
            0
        };
        n += self.cross_layers * (d0 * d0 + d0);
        let mut width = d0;
        for &h in &self.hidden {
            n += width * h + h;
            width = h;
        }
        n + width + 1
    }

    /// Floats of activations kept per example for the backward pass.
    pub fn activations_per_example(&self) -> usize {
        let d0 = self.input_dim();
        // x0, plus per cross layer the product, the sum and the output.
        let mut n = d0 + self.cross_layers * 3 * d0;
        // Per hidden layer: pre-activation, activation, dropout output.
        n += self.hidden.iter().map(|h| 3 * h).sum::<usize>();
        n + 4
    }
}

/// Dense weights and bias of one layer; `w` is `in × out`.
#[derive(Debug)]
struct Layer {
    w: Var,
    b: Var,
}

/// The model's parameters.
#[derive(Debug)]
pub struct Model {
    pub cfg: ModelConfig,
    /// The embedding table, row-major `hash_buckets × embedding_dim`.
    pub emb: Option<Vec<f32>>,
    cross: Vec<Layer>,
    mlp: Vec<Layer>,
    head: Layer,
}

/// One batch of model inputs.
#[derive(Debug)]
pub struct Inputs {
    /// `rows × (n_cat · embedding_dim)` gathered embeddings (for training,
    /// a leaf variable whose gradient goes back to the table).
    pub emb: Option<Tensor>,
    /// `rows × n_dense` features.
    pub dense: Option<Tensor>,
    pub rows: usize,
}

fn var_from(values: Vec<f32>, shape: &[usize]) -> Result<Var> {
    Var::from_tensor(&Tensor::from_vec(values, shape, &Device::Cpu)?)
}

fn gaussian(rng: &mut SmallRng, n: usize, std: f64) -> Vec<f32> {
    (0..n).map(|_| (normal(rng) * std) as f32).collect()
}

fn uniform(rng: &mut SmallRng, n: usize, limit: f64) -> Vec<f32> {
    (0..n)
        .map(|_| rng.random_range(-limit..limit) as f32)
        .collect()
}

impl Model {
    /// A freshly initialised model; the head's bias starts at `base_logit`.
    pub fn new(cfg: ModelConfig, rng: &mut SmallRng, base_logit: f32) -> Result<Self> {
        let d0 = cfg.input_dim();
        let emb = if cfg.uses_embeddings() {
            Some(gaussian(rng, cfg.hash_buckets * cfg.embedding_dim, 0.05))
        } else {
            None
        };
        let mut cross = Vec::new();
        for _ in 0..cfg.cross_layers {
            // Glorot-uniform, halved: the cross term starts as a small
            // perturbation of the identity path.
            let limit = 0.5 * (6.0 / (2 * d0) as f64).sqrt();
            cross.push(Layer {
                w: var_from(uniform(rng, d0 * d0, limit), &[d0, d0])?,
                b: Var::zeros(d0, DType::F32, &Device::Cpu)?,
            });
        }
        let mut mlp = Vec::new();
        let mut width = d0;
        for &h in &cfg.hidden {
            let std = (2.0 / width as f64).sqrt();
            mlp.push(Layer {
                w: var_from(gaussian(rng, width * h, std), &[width, h])?,
                b: Var::zeros(h, DType::F32, &Device::Cpu)?,
            });
            width = h;
        }
        let limit = (6.0 / (width + 1) as f64).sqrt();
        let head = Layer {
            w: var_from(uniform(rng, width, limit), &[width, 1])?,
            b: var_from(vec![base_logit], &[1])?,
        };
        Ok(Model {
            cfg,
            emb,
            cross,
            mlp,
            head,
        })
    }

    /// Every trainable candle variable (all but the embedding table).
    pub fn vars(&self) -> Vec<Var> {
        let mut v = Vec::new();
        for l in self.cross.iter().chain(&self.mlp).chain([&self.head]) {
            v.push(l.w.clone());
            v.push(l.b.clone());
        }
        v
    }

    /// The inputs of a batch: `buckets` is `rows × n_cat` row-major table
    /// rows, `dense` is `rows × n_dense`.
    pub fn inputs(&self, buckets: &[u32], dense: Vec<f32>, rows: usize) -> Result<Inputs> {
        let dev = &Device::Cpu;
        let emb = match &self.emb {
            Some(table) if !buckets.is_empty() => {
                let d = self.cfg.embedding_dim;
                let mut e = Vec::with_capacity(buckets.len() * d);
                for &b in buckets {
                    let b = b as usize;
                    e.extend_from_slice(&table[b * d..(b + 1) * d]);
                }
                Some(Tensor::from_vec(e, (rows, self.cfg.n_cat * d), dev)?)
            }
            _ => None,
        };
        let dense = if self.cfg.n_dense == 0 {
            None
        } else {
            Some(Tensor::from_vec(dense, (rows, self.cfg.n_dense), dev)?)
        };
        Ok(Inputs { emb, dense, rows })
    }

    /// Scores (logits), shape `(rows,)`. With `dropout_rng` set, dropout is
    /// applied (training); without, it is not (evaluation).
    pub fn forward(&self, x: &Inputs, dropout_rng: Option<&mut SmallRng>) -> Result<Tensor> {
        let mut parts = Vec::new();
        if let Some(e) = &x.emb {
            parts.push(e.clone());
        }
        if let Some(d) = &x.dense {
            parts.push(d.clone());
        }
        let x0 = if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Tensor::cat(&parts, 1)?
        };
        let mut h = x0.clone();
        for l in &self.cross {
            let lin = h.matmul(l.w.as_tensor())?.broadcast_add(l.b.as_tensor())?;
            h = ((&x0 * lin)? + h)?;
        }
        let p = self.cfg.dropout;
        let mut rng = dropout_rng;
        let drop = |t: Tensor, rng: &mut Option<&mut SmallRng>| -> Result<Tensor> {
            match rng {
                Some(r) if p > 0.0 => {
                    let (rows, cols) = t.dims2()?;
                    let keep = (1.0 / (1.0 - p)) as f32;
                    let mask: Vec<f32> = (0..rows * cols)
                        .map(|_| if r.random::<f64>() < p { 0.0 } else { keep })
                        .collect();
                    t * Tensor::from_vec(mask, (rows, cols), &Device::Cpu)?
                }
                _ => Ok(t),
            }
        };
        for l in &self.mlp {
            h = h
                .matmul(l.w.as_tensor())?
                .broadcast_add(l.b.as_tensor())?
                .relu()?;
            h = drop(h, &mut rng)?;
        }
        if self.mlp.is_empty() {
            h = drop(h, &mut rng)?;
        }
        h.matmul(self.head.w.as_tensor())?
            .broadcast_add(self.head.b.as_tensor())?
            .flatten_all()
    }
}
