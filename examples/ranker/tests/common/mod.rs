// Shared helpers for the integration tests (each test file includes this
// with `mod common;`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use reagent_ranker::synth::{self, SynthConfig};

/// A fresh, empty temporary directory named after the test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("reagent-ranker-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A very small synthetic data set (about 2,000 rows).
pub fn tiny_config(seed: u64) -> SynthConfig {
    SynthConfig {
        seed,
        users: 40,
        items: 80,
        queries: 150,
        min_candidates: 10,
        max_candidates: 20,
        ..SynthConfig::default()
    }
}

pub fn tiny_data(name: &str) -> PathBuf {
    let dir = temp_dir(name).join("data");
    synth::generate(&tiny_config(7), &dir).unwrap();
    dir
}

/// The binary, with every REAGENT_* variable of the caller removed.
pub fn ranker() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_reagent-ranker"));
    for (k, _) in std::env::vars() {
        if k.starts_with("REAGENT_") || k == "RAYON_NUM_THREADS" {
            c.env_remove(k);
        }
    }
    c
}

pub fn run(mut c: Command) -> (Output, String, String) {
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out, stdout, stderr)
}

/// Parses a metrics file, accepting Python's bare NaN / Infinity tokens.
pub fn metrics_lines(path: &Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let l = l
                .replace(":NaN", ":\"NaN\"")
                .replace(":Infinity", ":\"Infinity\"")
                .replace(":-Infinity", ":\"-Infinity\"");
            match serde_json::from_str(&l).unwrap() {
                serde_json::Value::Object(m) => m,
                other => panic!("not an object: {other}"),
            }
        })
        .collect()
}
