//! Synthetic click logs with real structure, written as LETOR files.
//!
//! The world: users (a category, a latent vector, an activity level), items
//! (a category, a latent vector, a quality), and requests (a query: one user
//! at one hour on one device, shown 20–50 candidate items ordered by a noisy
//! logging policy). A shown item is clicked with probability
//! `examine(position) × sigmoid(attractiveness)`, with
//!
//! ```text
//! attractiveness = 0.7·quality + activity(user) + evening(hour)
//!                + s·( uᵀA v / k                       user × item feature products
//!                    + M[user_cat][item_cat]            category × category affinity
//!                    + D[device][item_cat] )            context × category affinity
//!                + N(0, 0.25²)
//! examine(pos)   = pos^(-position_bias)
//! ```
//!
//! and with probability `noise` a label is replaced by a fair coin. The
//! bracketed terms are products of features: a logistic model over the
//! features (and one-hot ids) can fit only their main effects, a cross layer
//! or an MLP can fit them. Position is not a feature (it only appears in the
//! trailing comment), so position bias is a confounder as in real logs.
//!
//! Queries are split into train / valid / test at random by query (a qid is
//! in exactly one file). Everything is deterministic given the seed.

use anyhow::{Context, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use crate::letor::Meta;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub seed: u64,
    pub users: usize,
    pub items: usize,
    pub queries: usize,
    pub min_candidates: usize,
    pub max_candidates: usize,
    pub user_categories: usize,
    pub item_categories: usize,
    /// Dimension k of the user and item latent feature vectors.
    pub latent_dim: usize,
    /// Scale s of the interaction terms.
    pub interaction: f64,
    /// Exponent of the examination probability `pos^-b`.
    pub position_bias: f64,
    /// Probability that a label is replaced by a coin flip.
    pub noise: f64,
    pub valid_fraction: f64,
    pub test_fraction: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            seed: 1,
            users: 5000,
            items: 10000,
            queries: 40000,
            min_candidates: 20,
            max_candidates: 50,
            user_categories: 8,
            item_categories: 16,
            latent_dim: 4,
            interaction: 1.0,
            position_bias: 0.7,
            noise: 0.02,
            valid_fraction: 0.1,
            test_fraction: 0.1,
        }
    }
}

/// Counts written, for the caller's summary.
#[derive(Debug, Clone, Default)]
pub struct SynthSummary {
    pub rows: [usize; 3],
    pub queries: [usize; 3],
    pub clicks: [usize; 3],
    /// NE of the true click probabilities (which know the position) on valid.
    pub oracle_valid_ne: f64,
}

pub const SPLIT_FILES: [&str; 3] = ["train.txt", "vali.txt", "test.txt"];

/// A standard normal draw (Box–Muller).
pub fn normal(rng: &mut SmallRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

struct User {
    cat: usize,
    latent: Vec<f64>,
    activity: f64,
}

struct Item {
    cat: usize,
    latent: Vec<f64>,
    quality: f64,
}

/// Feature indices (1-based) of the generated files.
pub struct Layout {
    pub k: usize,
}

impl Layout {
    pub fn user_latent(&self, i: usize) -> usize {
        1 + i
    }
    pub fn item_latent(&self, i: usize) -> usize {
        1 + self.k + i
    }
    pub fn quality(&self) -> usize {
        2 * self.k + 1
    }
    pub fn activity(&self) -> usize {
        2 * self.k + 2
    }
    pub fn hour_dense(&self) -> usize {
        2 * self.k + 3
    }
    pub fn noise_feature(&self) -> usize {
        2 * self.k + 4
    }
    /// Categorical fields: user_id, item_id, user_cat, item_cat, device, hour.
    pub fn categorical(&self) -> Vec<u32> {
        (0..6).map(|i| (2 * self.k + 5 + i) as u32).collect()
    }
    pub fn names(&self) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for i in 0..self.k {
            out.push((self.user_latent(i), format!("user_feature_{i}")));
        }
        for i in 0..self.k {
            out.push((self.item_latent(i), format!("item_feature_{i}")));
        }
        out.push((self.quality(), "item_quality_observed".into()));
        out.push((self.activity(), "user_activity_observed".into()));
        out.push((self.hour_dense(), "hour_fraction".into()));
        out.push((self.noise_feature(), "irrelevant_noise".into()));
        let cats = [
            "user_id",
            "item_id",
            "user_category",
            "item_category",
            "device",
            "hour",
        ];
        for (f, name) in self.categorical().into_iter().zip(cats) {
            out.push((f as usize, format!("{name} (categorical)")));
        }
        out
    }
}

/// Generates the data set into `out` (created if needed).
pub fn generate(cfg: &SynthConfig, out: &Path) -> Result<SynthSummary> {
    anyhow::ensure!(
        cfg.users > 0 && cfg.items > 0,
        "need at least one user and item"
    );
    anyhow::ensure!(
        cfg.min_candidates >= 2 && cfg.min_candidates <= cfg.max_candidates,
        "need 2 <= min-candidates <= max-candidates"
    );
    anyhow::ensure!(
        cfg.max_candidates <= cfg.items,
        "max-candidates exceeds the number of items"
    );
    anyhow::ensure!(
        cfg.valid_fraction >= 0.0
            && cfg.test_fraction >= 0.0
            && cfg.valid_fraction + cfg.test_fraction < 1.0,
        "valid and test fractions must be >= 0 and sum below 1"
    );
    anyhow::ensure!(cfg.latent_dim > 0, "latent-dim must be positive");
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut rng = SmallRng::seed_from_u64(cfg.seed);
    let k = cfg.latent_dim;
    let layout = Layout { k };

    // The world.
    let users: Vec<User> = (0..cfg.users)
        .map(|_| User {
            cat: rng.random_range(0..cfg.user_categories),
            latent: (0..k).map(|_| normal(&mut rng)).collect(),
            activity: 0.4 * normal(&mut rng),
        })
        .collect();
    let items: Vec<Item> = (0..cfg.items)
        .map(|_| Item {
            cat: rng.random_range(0..cfg.item_categories),
            latent: (0..k).map(|_| normal(&mut rng)).collect(),
            quality: normal(&mut rng),
        })
        .collect();
    let a: Vec<f64> = (0..k * k).map(|_| normal(&mut rng)).collect();
    let m: Vec<f64> = (0..cfg.user_categories * cfg.item_categories)
        .map(|_| normal(&mut rng))
        .collect();
    let d: Vec<f64> = (0..3 * cfg.item_categories)
        .map(|_| 0.5 * normal(&mut rng))
        .collect();

    // Split by query.
    let n_test = (cfg.queries as f64 * cfg.test_fraction).round() as usize;
    let n_valid = (cfg.queries as f64 * cfg.valid_fraction).round() as usize;
    let mut perm: Vec<usize> = (0..cfg.queries).collect();
    for i in (1..perm.len()).rev() {
        let j = rng.random_range(0..=i);
        perm.swap(i, j);
    }
    let mut split_of = vec![0u8; cfg.queries];
    for (pos, &q) in perm.iter().enumerate() {
        split_of[q] = if pos < n_test {
            2
        } else if pos < n_test + n_valid {
            1
        } else {
            0
        };
    }

    let mut writers = Vec::new();
    for name in SPLIT_FILES {
        let p = out.join(name);
        let f =
            std::fs::File::create(&p).with_context(|| format!("cannot create {}", p.display()))?;
        writers.push(std::io::BufWriter::new(f));
    }
    let mut summary = SynthSummary::default();
    let mut oracle_loss = 0.0;
    let mut line = String::new();
    let cat_fields = layout.categorical();
    for (q, &split) in split_of.iter().enumerate() {
        let split = split as usize;
        let qid = q + 1;
        let r: f64 = rng.random();
        let user_id = ((cfg.users as f64) * r.powf(1.5)) as usize % cfg.users;
        let user = &users[user_id];
        let device = match rng.random::<f64>() {
            x if x < 0.6 => 0,
            x if x < 0.9 => 1,
            _ => 2,
        };
        let hour = rng.random_range(0..24usize);
        let evening = if (18..23).contains(&hour) { 0.3 } else { 0.0 };
        let n = rng.random_range(cfg.min_candidates..=cfg.max_candidates);
        let mut cands: Vec<usize> = Vec::with_capacity(n);
        while cands.len() < n {
            let i = rng.random_range(0..cfg.items);
            if !cands.contains(&i) {
                cands.push(i);
            }
        }
        // Attractiveness and the logging policy's order.
        let mut shown: Vec<(f64, usize, f64)> = cands
            .iter()
            .map(|&i| {
                let item = &items[i];
                let mut bil = 0.0;
                for x in 0..k {
                    for y in 0..k {
                        bil += user.latent[x] * a[x * k + y] * item.latent[y];
                    }
                }
                bil /= k as f64;
                let affinity = m[user.cat * cfg.item_categories + item.cat];
                let context = d[device * cfg.item_categories + item.cat];
                let attract = 0.7 * item.quality
                    + user.activity
                    + evening
                    + cfg.interaction * (bil + affinity + context)
                    + 0.25 * normal(&mut rng);
                let policy = 0.7 * item.quality + 0.5 * affinity + normal(&mut rng);
                (policy, i, attract)
            })
            .collect();
        shown.sort_by(|x, y| y.0.total_cmp(&x.0));
        for (rank, &(_, item_id, attract)) in shown.iter().enumerate() {
            let pos = rank + 1;
            let item = &items[item_id];
            let examine = (pos as f64).powf(-cfg.position_bias);
            let p_click = examine * sigmoid(attract);
            let mut click = rng.random::<f64>() < p_click;
            if rng.random::<f64>() < cfg.noise {
                click = rng.random::<bool>();
            }
            let p_label = cfg.noise * 0.5 + (1.0 - cfg.noise) * p_click;
            if split == 1 {
                let y = if click { 1.0 } else { 0.0 };
                oracle_loss -= y * p_label.ln() + (1.0 - y) * (1.0 - p_label).ln();
            }
            summary.rows[split] += 1;
            summary.clicks[split] += click as usize;

            line.clear();
            write!(line, "{} qid:{qid}", click as u8)?;
            for (x, v) in user.latent.iter().enumerate() {
                write!(line, " {}:{:.3}", layout.user_latent(x), v)?;
            }
            for (x, v) in item.latent.iter().enumerate() {
                write!(line, " {}:{:.3}", layout.item_latent(x), v)?;
            }
            let quality_obs = item.quality + 0.5 * normal(&mut rng);
            let activity_obs = user.activity + 0.2 * normal(&mut rng);
            write!(line, " {}:{:.3}", layout.quality(), quality_obs)?;
            write!(line, " {}:{:.3}", layout.activity(), activity_obs)?;
            write!(line, " {}:{:.3}", layout.hour_dense(), hour as f64 / 23.0)?;
            write!(line, " {}:{:.3}", layout.noise_feature(), normal(&mut rng))?;
            let ids = [user_id, item_id, user.cat, item.cat, device, hour];
            for (f, id) in cat_fields.iter().zip(ids) {
                write!(line, " {f}:{id}")?;
            }
            writeln!(line, " # item={item_id} pos={pos}")?;
            writers[split].write_all(line.as_bytes())?;
        }
        summary.queries[split] += 1;
    }
    for mut w in writers {
        w.flush()?;
    }
    let valid_ctr = summary.clicks[1] as f64 / summary.rows[1].max(1) as f64;
    summary.oracle_valid_ne =
        oracle_loss / summary.rows[1].max(1) as f64 / crate::metrics::entropy(valid_ctr);

    let mut extra = serde_json::Map::new();
    extra.insert("generator".into(), "reagent-ranker gen-data".into());
    extra.insert("seed".into(), cfg.seed.into());
    extra.insert("users".into(), cfg.users.into());
    extra.insert("items".into(), cfg.items.into());
    extra.insert("queries".into(), cfg.queries.into());
    extra.insert("interaction".into(), cfg.interaction.into());
    extra.insert("position_bias".into(), cfg.position_bias.into());
    extra.insert("noise".into(), cfg.noise.into());
    extra.insert("rows".into(), summary.rows.to_vec().into());
    extra.insert("clicks".into(), summary.clicks.to_vec().into());
    extra.insert("split_queries".into(), summary.queries.to_vec().into());
    if summary.oracle_valid_ne.is_finite() {
        extra.insert(
            "oracle_valid_ne_with_position".into(),
            summary.oracle_valid_ne.into(),
        );
    }
    let meta = Meta {
        categorical: cat_fields,
        feature_names: layout
            .names()
            .into_iter()
            .map(|(i, n)| (i.to_string(), n))
            .collect(),
        extra,
    };
    let p = out.join("meta.json");
    std::fs::write(&p, serde_json::to_string_pretty(&meta)? + "\n")
        .with_context(|| format!("cannot write {}", p.display()))?;
    Ok(summary)
}
