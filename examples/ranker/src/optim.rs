//! Optimizers over candle variables: candle-nn's SGD and AdamW (used as Adam,
//! L2 is applied through the gradient for every optimizer), and what
//! candle-nn does not have: SGD with (heavy-ball) momentum and Adagrad; plus [`SparseOptim`], the same three rules
//! applied to the touched rows of the host-side embedding table.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use candle_nn::Optimizer as _;
use candle_nn::optim::{AdamW, ParamsAdamW, SGD};

/// Which optimizer to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerKind {
    Sgd,
    Adam,
    Adagrad,
}

impl OptimizerKind {
    /// Floats of optimizer state per parameter.
    pub fn state_per_param(self, momentum: f64) -> usize {
        match self {
            OptimizerKind::Sgd => usize::from(momentum > 0.0),
            OptimizerKind::Adagrad => 1,
            OptimizerKind::Adam => 2,
        }
    }
}

/// SGD with momentum as in PyTorch: `v = μ v + g; θ -= lr · v`.
#[derive(Debug)]
pub struct Momentum {
    vars: Vec<(Var, Tensor)>,
    lr: f64,
    mu: f64,
}

impl Momentum {
    pub fn new(vars: Vec<Var>, lr: f64, mu: f64) -> Result<Self> {
        let vars = vars
            .into_iter()
            .map(|v| {
                let vel = v.as_tensor().zeros_like()?;
                Ok((v, vel))
            })
            .collect::<Result<_>>()?;
        Ok(Momentum { vars, lr, mu })
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        for (var, vel) in self.vars.iter_mut() {
            if let Some(g) = grads.get(var) {
                *vel = ((&*vel * self.mu)? + g.detach())?.detach();
                var.set(&var.as_tensor().sub(&(&*vel * self.lr)?)?)?;
            }
        }
        Ok(())
    }
}

/// Adagrad (Duchi et al.): `G += g²; θ -= lr · g / (√G + ε)`, accumulator
/// starting at 0 as in PyTorch.
#[derive(Debug)]
pub struct Adagrad {
    vars: Vec<(Var, Tensor)>,
    lr: f64,
    eps: f64,
}

impl Adagrad {
    pub fn new(vars: Vec<Var>, lr: f64) -> Result<Self> {
        let vars = vars
            .into_iter()
            .map(|v| {
                let acc = v.as_tensor().zeros_like()?;
                Ok((v, acc))
            })
            .collect::<Result<_>>()?;
        Ok(Adagrad {
            vars,
            lr,
            eps: 1e-10,
        })
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        for (var, acc) in self.vars.iter_mut() {
            if let Some(g) = grads.get(var) {
                // Gradients can carry a graph; the state must not.
                let g = g.detach();
                *acc = (&*acc + g.sqr()?)?.detach();
                let denom = (acc.sqrt()? + self.eps)?;
                let update = ((&g / denom)? * self.lr)?;
                var.set(&var.as_tensor().sub(&update)?)?;
            }
        }
        Ok(())
    }
}

/// One of the supported optimizers.
#[derive(Debug)]
pub enum Optim {
    Sgd(SGD),
    Momentum(Momentum),
    Adam(AdamW),
    Adagrad(Adagrad),
}

impl Optim {
    pub fn new(kind: OptimizerKind, vars: Vec<Var>, lr: f64, momentum: f64) -> Result<Self> {
        Ok(match kind {
            OptimizerKind::Sgd if momentum > 0.0 => {
                Optim::Momentum(Momentum::new(vars, lr, momentum)?)
            }
            OptimizerKind::Sgd => Optim::Sgd(SGD::new(vars, lr)?),
            OptimizerKind::Adam => Optim::Adam(AdamW::new(
                vars,
                ParamsAdamW {
                    lr,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: 0.0,
                },
            )?),
            OptimizerKind::Adagrad => Optim::Adagrad(Adagrad::new(vars, lr)?),
        })
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        match self {
            Optim::Sgd(o) => o.step(grads),
            Optim::Momentum(o) => o.step(grads),
            Optim::Adam(o) => o.step(grads),
            Optim::Adagrad(o) => o.step(grads),
        }
    }
}

/// Adds the L2 penalty's gradient `l2 · θ` to every variable's gradient.
pub fn add_l2(grads: &mut GradStore, vars: &[Var], l2: f64) -> Result<()> {
    if l2 <= 0.0 {
        return Ok(());
    }
    for v in vars {
        if let Some(g) = grads.remove(v.as_tensor()) {
            let g = (g + (v.as_tensor() * l2)?)?;
            grads.insert(v.as_tensor(), g);
        }
    }
    Ok(())
}

/// SGD (with momentum), Adagrad or Adam on the rows of an embedding table
/// that a batch touched (gradients of repeated rows are summed first).
/// Untouched rows are left alone: no L2 decay and no momentum or moment
/// decay (lazy updates, as TF's LazyAdam and PyTorch's SparseAdam; Adam's
/// bias correction uses the global step).
#[derive(Debug)]
pub struct SparseOptim {
    kind: OptimizerKind,
    lr: f32,
    l2: f32,
    mu: f32,
    dim: usize,
    /// SGD's velocity, Adagrad's accumulator, or Adam's first moment.
    s1: Vec<f32>,
    /// Adam's second moment.
    s2: Vec<f32>,
    step: i32,
    scratch: Vec<(u32, u32)>,
}

impl SparseOptim {
    pub fn new(
        kind: OptimizerKind,
        rows: usize,
        dim: usize,
        lr: f64,
        l2: f64,
        momentum: f64,
    ) -> Self {
        let n = rows * dim;
        SparseOptim {
            kind,
            lr: lr as f32,
            l2: l2 as f32,
            mu: momentum as f32,
            dim,
            s1: if kind.state_per_param(momentum) > 0 {
                vec![0.0; n]
            } else {
                Vec::new()
            },
            s2: if kind == OptimizerKind::Adam {
                vec![0.0; n]
            } else {
                Vec::new()
            },
            step: 0,
            scratch: Vec::new(),
        }
    }

    /// Applies one step. `grad` holds one `dim`-vector per entry of
    /// `rows` (the gradient of the gathered embeddings).
    pub fn step(&mut self, table: &mut [f32], rows: &[u32], grad: &[f32]) {
        let d = self.dim;
        debug_assert_eq!(rows.len() * d, grad.len());
        self.step += 1;
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let c1 = 1.0 - b1.powi(self.step);
        let c2 = 1.0 - b2.powi(self.step);
        self.scratch.clear();
        self.scratch
            .extend(rows.iter().enumerate().map(|(k, &r)| (r, k as u32)));
        self.scratch.sort_unstable();
        let mut g = vec![0f32; d];
        let mut i = 0;
        while i < self.scratch.len() {
            let row = self.scratch[i].0 as usize;
            g.iter_mut().for_each(|x| *x = 0.0);
            while i < self.scratch.len() && self.scratch[i].0 as usize == row {
                let k = self.scratch[i].1 as usize;
                for (a, b) in g.iter_mut().zip(&grad[k * d..(k + 1) * d]) {
                    *a += b;
                }
                i += 1;
            }
            let w = &mut table[row * d..(row + 1) * d];
            for j in 0..d {
                let gj = g[j] + self.l2 * w[j];
                match self.kind {
                    OptimizerKind::Sgd if self.s1.is_empty() => w[j] -= self.lr * gj,
                    OptimizerKind::Sgd => {
                        let v = &mut self.s1[row * d + j];
                        *v = self.mu * *v + gj;
                        w[j] -= self.lr * *v;
                    }
                    OptimizerKind::Adagrad => {
                        let acc = &mut self.s1[row * d + j];
                        *acc += gj * gj;
                        w[j] -= self.lr * gj / (acc.sqrt() + 1e-10);
                    }
                    OptimizerKind::Adam => {
                        let m = &mut self.s1[row * d + j];
                        *m = b1 * *m + (1.0 - b1) * gj;
                        let v = &mut self.s2[row * d + j];
                        *v = b2 * *v + (1.0 - b2) * gj * gj;
                        w[j] -= self.lr * (*m / c1) / ((*v / c2).sqrt() + eps);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Minimises (x - 3)² from x = 0 with each optimizer.
    #[test]
    fn every_optimizer_minimises_a_quadratic() {
        for (kind, lr, mu) in [
            (OptimizerKind::Sgd, 0.1, 0.0),
            (OptimizerKind::Sgd, 0.05, 0.9),
            (OptimizerKind::Adam, 0.1, 0.0),
            (OptimizerKind::Adagrad, 1.0, 0.0),
        ] {
            let x = Var::zeros(1, candle_core::DType::F32, &Device::Cpu).unwrap();
            let mut opt = Optim::new(kind, vec![x.clone()], lr, mu).unwrap();
            for _ in 0..300 {
                let loss = (x.as_tensor() - 3.0)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap();
                let grads = loss.backward().unwrap();
                opt.step(&grads).unwrap();
            }
            let v = x.as_tensor().to_vec1::<f32>().unwrap()[0];
            assert!((v - 3.0).abs() < 0.05, "{kind:?} ended at {v}");
        }
    }

    #[test]
    fn sparse_updates_touch_only_batch_rows_and_sum_repeats() {
        let mut table = vec![1.0f32; 4 * 2];
        let mut opt = SparseOptim::new(OptimizerKind::Sgd, 4, 2, 0.5, 0.0, 0.0);
        // Row 2 appears twice: its gradients add up.
        opt.step(&mut table, &[2, 0, 2], &[1.0, 0.0, 2.0, 2.0, 1.0, -2.0]);
        assert_eq!(table, vec![0.0, 0.0, 1.0, 1.0, 0.0, 2.0, 1.0, 1.0]);
        // Adagrad and Adam move a touched coordinate by lr on the first step.
        for kind in [OptimizerKind::Adagrad, OptimizerKind::Adam] {
            let mut table = vec![0.0f32; 3];
            let mut opt = SparseOptim::new(kind, 3, 1, 0.1, 0.0, 0.9);
            opt.step(&mut table, &[1], &[4.0]);
            assert!((table[1] + 0.1).abs() < 1e-5, "{kind:?} {table:?}");
            assert_eq!((table[0], table[2]), (0.0, 0.0));
        }
    }

    #[test]
    fn adagrad_first_step_moves_by_lr() {
        let x = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        let mut opt = Adagrad::new(vec![x.clone()], 0.5).unwrap();
        // loss = 3 x0 - x1: gradient (3, -1); first step is lr · sign(g).
        let w = Tensor::new(&[3.0f32, -1.0], &Device::Cpu).unwrap();
        let loss = (x.as_tensor() * &w).unwrap().sum_all().unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        let v = x.as_tensor().to_vec1::<f32>().unwrap();
        assert!(
            (v[0] - 0.5).abs() < 1e-5 && (v[1] + 1.5).abs() < 1e-5,
            "{v:?}"
        );
    }
}
