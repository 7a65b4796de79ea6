//! Bench tasks: objectives that answer a trial in microseconds but behave
//! like tuning a model: known optima, interactions single changes cannot
//! see, log-scale, categorical and dead knobs, evaluation noise the size of
//! the effects, and regions where training fails (out of memory, diverged).
//!
//! Every task is minimised and reports `loss` (the objective) and
//! `holdout_loss` (the same noise-free value with independent noise). The
//! noise is a pure function of the task instance, the trial's seed and the
//! configuration, so a bench run and a real campaign running
//! `reagent __task` see the same numbers.

use std::collections::BTreeMap;
use std::f64::consts::PI;

use sha2::Digest as _;

use crate::strategy::{FloatRange, IntRange, KnobKind, KnobSpec, Value, render_value};

use super::surrogate::Surrogate;

/// A configuration: every knob's value.
pub type Config = BTreeMap<String, Value>;

/// The objective and holdout metric names every task reports.
pub const METRIC: &str = "loss";
pub const HOLDOUT: &str = "holdout_loss";

/// How a trial of a task ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Eval {
    Done {
        loss: f64,
        holdout: f64,
        secs: f64,
    },
    /// Training failed: the message a real trainer would print, and how
    /// long it ran before failing.
    Failed {
        message: String,
        secs: f64,
    },
}

/// A failing region's verdict on a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    OutOfMemory,
    Diverged,
    /// A surrogate's: the nearest recorded trial failed.
    Recorded,
}

impl Failure {
    /// What a PyTorch trainer prints (the runbook debugger reads it).
    pub fn message(self) -> &'static str {
        match self {
            Failure::OutOfMemory => {
                "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
            }
            Failure::Diverged => "step 40 loss nan\nValueError: loss is NaN",
            Failure::Recorded => "the recorded trial nearest to this configuration failed",
        }
    }
    /// The part of a trial's run time spent before failing.
    fn fraction(self) -> f64 {
        match self {
            Failure::OutOfMemory => 0.05,
            Failure::Diverged => 0.3,
            Failure::Recorded => 0.5,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Kind {
    Branin,
    Hartmann6,
    Mixed,
    Interact,
    Trainer,
    Surrogate(Box<Surrogate>),
}

/// A task: its knob space (with the baseline), its objective and noise.
#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub summary: String,
    pub knobs: Vec<KnobSpec>,
    /// The noise-free optimum, where known.
    pub optimum: Option<f64>,
    /// Per-(seed, configuration) noise sd, independent per metric.
    pub run_sd: f64,
    /// Per-seed shift shared by every configuration and both metrics.
    pub seed_sd: f64,
    /// Simulated run time of a trial that succeeds, in seconds.
    pub secs: f64,
    /// Which noise draws this instance sees (a bench seed).
    pub instance: u64,
    pub kind: Kind,
}

/// The names of the shipped tasks, with one line each.
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "branin",
        "Branin (2 floats; three optima of 0.397887), noise sd 1",
    ),
    (
        "hartmann6",
        "Hartmann-6 (6 floats in [0,1]; optimum -3.32237), noise sd 0.05",
    ),
    (
        "mixed",
        "a kernel choice with conditional knobs (gamma, degree) and a dead flag; optimum 0.12",
    ),
    (
        "interact",
        "optimizer x learning rate x batch size, depth x dropout: single changes mislead; optimum 0.22",
    ),
    (
        "trainer",
        "interact plus dead knobs, noise the size of the effects, OOM above a memory size and divergence at high learning rates",
    ),
];

fn float(name: &str, low: f64, high: f64, baseline: f64) -> KnobSpec {
    KnobSpec {
        name: name.into(),
        kind: KnobKind::Float(FloatRange { low, high }),
        baseline: Value::Float(baseline),
    }
}

fn log_float(name: &str, low: f64, high: f64, baseline: f64) -> KnobSpec {
    KnobSpec {
        name: name.into(),
        kind: KnobKind::LogFloat(FloatRange { low, high }),
        baseline: Value::Float(baseline),
    }
}

fn int(name: &str, low: i64, high: i64, baseline: i64) -> KnobSpec {
    KnobSpec {
        name: name.into(),
        kind: KnobKind::Int(IntRange { low, high }),
        baseline: Value::Int(baseline),
    }
}

fn choice(name: &str, choices: &[&str], baseline: &str) -> KnobSpec {
    KnobSpec {
        name: name.into(),
        kind: KnobKind::Categorical(choices.iter().map(|c| c.to_string()).collect()),
        baseline: Value::Choice(baseline.into()),
    }
}

fn flag(name: &str, baseline: bool) -> KnobSpec {
    KnobSpec {
        name: name.into(),
        kind: KnobKind::Flag,
        baseline: Value::Flag(baseline),
    }
}

/// The interact/trainer knobs (the space of bench/objectives/noisy.py).
fn interact_knobs() -> Vec<KnobSpec> {
    vec![
        log_float("lr", 1e-4, 1.0, 0.3),
        choice("optimizer", &["sgd", "adam", "adagrad"], "sgd"),
        int("layers", 0, 4, 0),
        int("batch_size", 32, 2048, 256),
        float("dropout", 0.0, 0.5, 0.0),
    ]
}

impl Task {
    /// A shipped task by name, for noise instance `instance`.
    pub fn shipped(name: &str, instance: u64) -> Option<Task> {
        let summary = SHIPPED.iter().find(|(n, _)| *n == name)?.1.to_string();
        let (knobs, optimum, run_sd, seed_sd, kind) = match name {
            "branin" => (
                vec![float("x1", -5.0, 10.0, 2.5), float("x2", 0.0, 15.0, 7.5)],
                Some(0.397_887),
                1.0,
                0.0,
                Kind::Branin,
            ),
            "hartmann6" => (
                (1..=6)
                    .map(|i| float(&format!("x{i}"), 0.0, 1.0, 0.5))
                    .collect(),
                Some(-3.322_37),
                0.05,
                0.0,
                Kind::Hartmann6,
            ),
            "mixed" => (
                vec![
                    choice("kernel", &["linear", "rbf", "poly"], "linear"),
                    log_float("c", 1e-3, 1e3, 1.0),
                    log_float("gamma", 1e-4, 10.0, 0.1),
                    int("degree", 2, 5, 2),
                    flag("shrinking", true),
                ],
                Some(0.12),
                0.005,
                0.0,
                Kind::Mixed,
            ),
            "interact" => (interact_knobs(), Some(0.22), 0.003, 0.002, Kind::Interact),
            "trainer" => {
                let mut knobs = interact_knobs();
                knobs.push(log_float("weight_decay", 1e-6, 1e-2, 1e-4));
                knobs.push(int("num_workers", 1, 16, 4));
                (knobs, Some(0.22), 0.01, 0.004, Kind::Trainer)
            }
            _ => return None,
        };
        Some(Task {
            name: name.into(),
            summary,
            knobs,
            optimum,
            run_sd,
            seed_sd,
            secs: 60.0,
            instance,
            kind,
        })
    }

    /// The same task seeing noise instance `instance`.
    pub fn with_instance(&self, instance: u64) -> Task {
        Task {
            instance,
            ..self.clone()
        }
    }

    /// The baseline configuration.
    pub fn baseline(&self) -> Config {
        self.knobs
            .iter()
            .map(|k| (k.name.clone(), k.baseline.clone()))
            .collect()
    }

    /// The noise-free loss of a configuration, or the failure it hits.
    pub fn truth(&self, c: &Config) -> Result<f64, Failure> {
        Ok(match &self.kind {
            Kind::Branin => branin(num(c, "x1"), num(c, "x2")),
            Kind::Hartmann6 => {
                let x: Vec<f64> = (1..=6).map(|i| num(c, &format!("x{i}"))).collect();
                hartmann6(&x)
            }
            Kind::Mixed => mixed(c),
            Kind::Interact => interact(c),
            Kind::Trainer => {
                if let Some(f) = trainer_failure(c) {
                    return Err(f);
                }
                interact(c)
            }
            Kind::Surrogate(s) => return s.truth(&self.knobs, c),
        })
    }

    /// One trial: the noise-free loss plus this instance's noise for `seed`.
    pub fn evaluate(&self, c: &Config, seed: u64) -> Eval {
        match self.truth(c) {
            Err(f) => Eval::Failed {
                message: f.message().into(),
                secs: self.secs * f.fraction(),
            },
            Ok(f) => {
                let shift = self.seed_sd * normal(&[self.instance, seed], "seed", "");
                let key = config_key(c);
                let e_valid = self.run_sd * normal(&[self.instance, seed], "valid", &key);
                let e_test = self.run_sd * normal(&[self.instance, seed], "test", &key);
                Eval::Done {
                    loss: f + shift + e_valid,
                    holdout: f + shift + e_test,
                    secs: self.secs,
                }
            }
        }
    }

    /// The loss a result must reach to count as "reached": `share` of the
    /// way from the baseline's noise-free loss to the optimum (to the best
    /// of `best_seen` when the optimum is unknown).
    pub fn target(&self, share: f64, best_seen: f64) -> f64 {
        let base = self.truth(&self.baseline()).unwrap_or(f64::INFINITY);
        let best = self.optimum.unwrap_or(best_seen);
        base - share * (base - best)
    }
}

/// What a task file holds (`reagent strategy bench --task-from-campaign`
/// writes one; `--task FILE` reads it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TaskFile {
    /// `reagent-task/1`.
    pub format: String,
    pub name: String,
    pub summary: String,
    pub knobs: Vec<KnobSpec>,
    pub optimum: Option<f64>,
    pub run_sd: f64,
    pub seed_sd: f64,
    pub secs: f64,
    pub surrogate: Surrogate,
}

pub const TASK_FORMAT: &str = "reagent-task/1";

impl Task {
    /// A shipped task's name, or a task file's path.
    pub fn named(spec: &str, instance: u64) -> anyhow::Result<Task> {
        if let Some(t) = Task::shipped(spec, instance) {
            return Ok(t);
        }
        let path = std::path::Path::new(spec);
        if !path.exists() {
            let names: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
            anyhow::bail!(
                "no task {spec:?}: name a shipped one ({}) or a task file",
                names.join(", ")
            );
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read task file {spec}: {e}"))?;
        let file: TaskFile = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{spec} is not a task file: {e}"))?;
        if file.format != TASK_FORMAT {
            anyhow::bail!(
                "{spec}: format {:?}, this reagent reads {TASK_FORMAT:?}",
                file.format
            );
        }
        Ok(Task {
            name: file.name,
            summary: file.summary,
            knobs: file.knobs,
            optimum: file.optimum,
            run_sd: file.run_sd,
            seed_sd: file.seed_sd,
            secs: file.secs,
            instance,
            kind: Kind::Surrogate(Box::new(file.surrogate)),
        })
    }

    /// The task file of a surrogate task (None for a shipped one).
    pub fn to_file(&self) -> Option<TaskFile> {
        let Kind::Surrogate(s) = &self.kind else {
            return None;
        };
        Some(TaskFile {
            format: TASK_FORMAT.into(),
            name: self.name.clone(),
            summary: self.summary.clone(),
            knobs: self.knobs.clone(),
            optimum: self.optimum,
            run_sd: self.run_sd,
            seed_sd: self.seed_sd,
            secs: self.secs,
            surrogate: (**s).clone(),
        })
    }
}

/// A knob's value as a number (ints widened; anything else NaN).
pub fn num(c: &Config, name: &str) -> f64 {
    match c.get(name) {
        Some(Value::Float(x)) => *x,
        Some(Value::Int(i)) => *i as f64,
        _ => f64::NAN,
    }
}

fn text<'a>(c: &'a Config, name: &str) -> &'a str {
    match c.get(name) {
        Some(Value::Choice(s)) => s,
        _ => "",
    }
}

/// The configuration as text, knobs in name order: what noise hashes.
pub fn config_key(c: &Config) -> String {
    c.iter()
        .map(|(k, v)| format!("{k}={}", render_value(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A standard normal draw that is a pure function of its inputs.
fn normal(ids: &[u64], stream: &str, key: &str) -> f64 {
    let mut h = sha2::Sha256::new();
    for id in ids {
        h.update(id.to_le_bytes());
    }
    h.update(stream.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let d = h.finalize();
    let word = |i: usize| u64::from_le_bytes(d[i * 8..i * 8 + 8].try_into().unwrap());
    // Box–Muller on two uniforms in (0, 1].
    let u1 = ((word(0) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let u2 = (word(1) >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

/// Branin–Hoo with its usual constants.
pub fn branin(x1: f64, x2: f64) -> f64 {
    let b = 5.1 / (4.0 * PI * PI);
    let c = 5.0 / PI;
    let t = 1.0 / (8.0 * PI);
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

/// Hartmann-6 (negated sum of four Gaussian bumps), minimised.
pub fn hartmann6(x: &[f64]) -> f64 {
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
        [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
        [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
        [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
    ];
    -(0..4)
        .map(|i| {
            let s: f64 = (0..6).map(|j| A[i][j] * (x[j] - P[i][j]).powi(2)).sum();
            ALPHA[i] * (-s).exp()
        })
        .sum::<f64>()
}

/// An SVM-like error surface: which knobs matter depends on the kernel.
fn mixed(c: &Config) -> f64 {
    let lc = num(c, "c").log10();
    let lg = num(c, "gamma").log10();
    let degree = num(c, "degree");
    match text(c, "kernel") {
        "rbf" => 0.12 + 0.01 * (lc - 1.0).powi(2) + 0.02 * (lg + 2.0).powi(2),
        "poly" => {
            0.15 + 0.01 * (lc - 2.0).powi(2)
                + 0.01 * (degree - 3.0).powi(2)
                + 0.01 * (lg + 1.0).powi(2)
        }
        _ => 0.20 + 0.01 * lc.powi(2),
    }
}

/// Per optimizer: loss offset, best lr at batch 256, curvature per decade².
fn optimizer(name: &str) -> (f64, f64, f64) {
    match name {
        "adam" => (-0.02, 0.001, 0.05),
        "adagrad" => (-0.01, 0.01, 0.04),
        _ => (0.0, 0.1, 0.04),
    }
}

/// The surface of bench/objectives/noisy.py: the best learning rate
/// depends on the optimizer and the batch size, the best dropout on the
/// depth. Optimum 0.22 (adam, lr 0.001·√2, batch 512, 3 layers, dropout 0.2).
fn interact(c: &Config) -> f64 {
    let (offset, lr0, curv) = optimizer(text(c, "optimizer"));
    let bs = num(c, "batch_size");
    let best_lr = lr0.log10() + 0.5 * (bs / 256.0).log10();
    let layers = num(c, "layers");
    let best_dropout = 0.1 * (layers - 1.0).max(0.0);
    0.30 + offset
        + curv * (num(c, "lr").log10() - best_lr).powi(2)
        + 0.006 * (bs / 512.0).log2().powi(2)
        - 0.06 * (1.0 - ((layers - 3.0) / 3.0).powi(2))
        + 0.5 * (num(c, "dropout") - best_dropout).powi(2)
}

/// Where the trainer task fails: out of memory when batch × (layers + 1)
/// passes 3000; diverged when the learning rate is more than a decade
/// above the best one for its optimizer and batch size.
fn trainer_failure(c: &Config) -> Option<Failure> {
    let bs = num(c, "batch_size");
    if bs * (num(c, "layers") + 1.0) > 3000.0 {
        return Some(Failure::OutOfMemory);
    }
    let (_, lr0, _) = optimizer(text(c, "optimizer"));
    let best_lr = lr0.log10() + 0.5 * (bs / 256.0).log10();
    (num(c, "lr").log10() > best_lr + 1.0).then_some(Failure::Diverged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_optima_are_where_the_literature_puts_them() {
        for (x1, x2) in [(-PI, 12.275), (PI, 2.275), (9.424_78, 2.475)] {
            assert!((branin(x1, x2) - 0.397_887).abs() < 1e-5, "{x1},{x2}");
        }
        let x = [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573];
        assert!(
            (hartmann6(&x) - -3.322_37).abs() < 1e-4,
            "{}",
            hartmann6(&x)
        );
        let t = Task::shipped("interact", 0).unwrap();
        let mut best = t.baseline();
        best.insert("optimizer".into(), Value::Choice("adam".into()));
        best.insert("lr".into(), Value::Float(0.001 * 2f64.sqrt()));
        best.insert("batch_size".into(), Value::Int(512));
        best.insert("layers".into(), Value::Int(3));
        best.insert("dropout".into(), Value::Float(0.2));
        assert!((t.truth(&best).unwrap() - 0.22).abs() < 1e-12);
        assert!((t.truth(&t.baseline()).unwrap() - 0.315_11).abs() < 1e-4);
        let trainer = Task::shipped("trainer", 0).unwrap();
        let mut tb = trainer.baseline();
        tb.extend(best.clone());
        assert!((trainer.truth(&tb).unwrap() - 0.22).abs() < 1e-12);
    }

    #[test]
    fn single_changes_mislead_on_interact() {
        // adam alone (keeping lr = 0.3) is much worse than the baseline.
        let t = Task::shipped("interact", 0).unwrap();
        let mut c = t.baseline();
        c.insert("optimizer".into(), Value::Choice("adam".into()));
        assert!(t.truth(&c).unwrap() > t.truth(&t.baseline()).unwrap() + 0.2);
    }

    #[test]
    fn trainer_fails_where_it_says() {
        let t = Task::shipped("trainer", 0).unwrap();
        let mut c = t.baseline();
        c.insert("batch_size".into(), Value::Int(2048));
        c.insert("layers".into(), Value::Int(2));
        assert_eq!(t.truth(&c), Err(Failure::OutOfMemory));
        let mut c = t.baseline();
        c.insert("optimizer".into(), Value::Choice("adam".into()));
        assert_eq!(t.truth(&c), Err(Failure::Diverged));
        assert!(t.truth(&t.baseline()).is_ok());
        // Dead knobs change nothing.
        let mut c = t.baseline();
        c.insert("num_workers".into(), Value::Int(16));
        assert_eq!(t.truth(&c), t.truth(&t.baseline()));
    }

    #[test]
    fn noise_is_a_function_of_instance_seed_and_configuration() {
        let t = Task::shipped("interact", 3).unwrap();
        let c = t.baseline();
        assert_eq!(t.evaluate(&c, 1), t.evaluate(&c, 1));
        assert_ne!(t.evaluate(&c, 1), t.evaluate(&c, 2));
        assert_ne!(t.evaluate(&c, 1), t.with_instance(4).evaluate(&c, 1));
        // Its size is the task's: the sd of 2000 draws is near
        // sqrt(seed_sd² + run_sd²).
        let xs: Vec<f64> = (0..2000)
            .map(|s| match t.evaluate(&c, s) {
                Eval::Done { loss, .. } => loss,
                Eval::Failed { .. } => unreachable!(),
            })
            .collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 1999.0).sqrt();
        let want = (0.002f64.powi(2) + 0.003f64.powi(2)).sqrt();
        assert!((sd / want - 1.0).abs() < 0.1, "sd {sd} vs {want}");
    }
}
