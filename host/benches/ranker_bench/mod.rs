//! What the benches that run the example ranker share (`compare`,
//! `transfer`): the repository root, list-valued environment knobs, checked
//! commands, the trainer binary and its synthetic data.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// A comma-separated environment knob, or `default`.
pub fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

pub fn check(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The folder holding `reagent-ranker`, built in release if needed.
pub fn ranker_bin() -> PathBuf {
    let target = repo().join("target/ranker");
    let bin = target.join("release");
    if !bin.join("reagent-ranker").exists() {
        let o = Command::new("cargo")
            .args(["build", "--release", "--manifest-path"])
            .arg(repo().join("examples/ranker/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .output()
            .unwrap();
        check(&o, "building the ranker");
    }
    bin
}

/// Small synthetic data from `seed` in `dir` (a trial takes about a
/// second), generated once.
#[allow(dead_code)] // transfer.rs; compare.rs sizes its own
pub fn ranker_data(bin: &Path, dir: &Path, seed: &str) {
    ranker_data_sized(
        bin,
        dir,
        seed,
        &["--users", "300", "--items", "600", "--queries", "900"],
    );
}

/// Click logs of the size `size` asks for (gen-data's flags; none for the
/// demo's size).
pub fn ranker_data_sized(bin: &Path, dir: &Path, seed: &str, size: &[&str]) {
    if dir.exists() {
        return;
    }
    let o = Command::new(bin.join("reagent-ranker"))
        .args(["gen-data", "--out"])
        .arg(dir)
        .args(["--seed", seed])
        .args(size)
        .output()
        .unwrap();
    check(&o, "reagent-ranker gen-data");
}
