//! `reagent-ranker`: the example workload of Reagent, a small but real
//! click-through / learning-to-rank trainer on candle.
//!
//! - [`synth`] generates synthetic click logs with structure (feature
//!   interactions, position bias, label noise) as LETOR files;
//! - [`letor`] reads LETOR / SVMlight files (also MSLR-WEB10K, Yahoo! LTR,
//!   Istella);
//! - [`model`] and [`optim`] are the model (embeddings, cross layers, MLP)
//!   and optimizers (SGD, Adam, Adagrad);
//! - [`metrics`] computes NE, AUC, NDCG@10, logloss and standard errors;
//! - [`train`] runs a job, reports JSON lines and fails like real jobs.

pub mod letor;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod synth;
pub mod train;
