//! The fuzz targets of `reagent::fuzz`, on stable: every committed corpus
//! file (`fuzz/corpus/<target>/`, grown coverage-guided by
//! `scripts/fuzz.sh`), then seeded mutations of them for a bounded time
//! (`REAGENT_FUZZ_SECS` per target, 6 by default; `REAGENT_FUZZ_SEED` to
//! repeat a run). A finding is saved under `target/fuzz-findings/<target>/`
//! and fails the test; once fixed it goes into the corpus, where every later
//! run replays it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reagent::fuzz::{TARGETS, Target};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = root().join("fuzz/corpus").join(name);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let bytes = std::fs::read(&path).expect("corpus file");
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Runs one input; the panic's message when the target broke a promise.
fn run(target: Target, input: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| target(input))).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

/// Tokens the readers give meaning to, and values at the edges.
const TOKENS: &[&str] = &[
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
    "=",
    ":",
    ",",
    "\n",
    "\r\n",
    "\0",
    "#",
    "'''",
    "\"\"\"",
    "1e309",
    "-1",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "0x10",
    "18446744073709551616",
    "-9223372036854775809",
    "é",
    "💥",
    "\u{2028}",
    "true",
    "null",
    "{}",
    "[]",
    "\t",
    "(?P<",
    ">",
    ")",
    "*",
    "+",
    "\\d",
    ".",
    "when",
    "permit",
    "forbid",
    "unless",
    "principal",
    "resource",
    "==",
    "&&",
    "{seed}",
    "{lr}",
    "\"step\":",
    "\"value\":",
    "0.5",
    "1e-300",
    "-0",
    "  ",
];

fn mutate(rng: &mut SmallRng, input: &[u8], pool: &[(PathBuf, Vec<u8>)]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = out.len();
        let at = if len == 0 {
            0
        } else {
            rng.random_range(0..=len)
        };
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] = rng.random();
            }
            2 => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())];
                out.splice(at..at, token.bytes());
            }
            3 if len > 0 => {
                let end = rng.random_range(at..=len.min(at + 16));
                out.drain(at..end);
            }
            4 if len > 0 => {
                let start = rng.random_range(0..len);
                let end = rng.random_range(start..=len.min(start + 64));
                let copy = out[start..end].to_vec();
                out.splice(at..at, copy);
            }
            5 if !pool.is_empty() => {
                let other = &pool[rng.random_range(0..pool.len())].1;
                let from = if other.is_empty() {
                    0
                } else {
                    rng.random_range(0..other.len())
                };
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
            _ => out.truncate(at),
        }
    }
    out.truncate(64 * 1024);
    out
}

struct Finding {
    target: &'static str,
    saved: PathBuf,
    message: String,
}

fn save(target: &str, input: &[u8]) -> PathBuf {
    let dir = root().join("target/fuzz-findings").join(target);
    std::fs::create_dir_all(&dir).expect("findings folder");
    let name = digest_hex(input);
    let path = dir.join(name);
    std::fs::write(&path, input).expect("save finding");
    path
}

fn digest_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(bytes)[..12])
}

/// Runs one target: its corpus, then mutations until `budget` is spent.
fn fuzz_one(
    name: &'static str,
    target: Target,
    budget: Duration,
    seed: u64,
) -> (String, Vec<Finding>) {
    let pool = corpus(name);
    assert!(!pool.is_empty(), "fuzz/corpus/{name} is empty");
    let mut findings = Vec::new();
    let mut found = |input: &[u8], message: String| {
        if findings.len() < 5 {
            findings.push(Finding {
                target: name,
                saved: save(name, input),
                message,
            });
        }
    };
    for (path, bytes) in &pool {
        if let Err(message) = run(target, bytes) {
            found(bytes, format!("corpus file {}: {message}", path.display()));
        }
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < budget {
        let parent = &pool[rng.random_range(0..pool.len())].1;
        let input = mutate(&mut rng, parent, &pool);
        runs += 1;
        if let Err(message) = run(target, &input) {
            found(&input, message);
        }
    }
    let summary = format!(
        "{name}: {} corpus files, {runs} mutated inputs in {:.1} s",
        pool.len(),
        start.elapsed().as_secs_f64()
    );
    (summary, findings)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_mutations() {
    let budget = Duration::from_secs(env_u64("REAGENT_FUZZ_SECS").unwrap_or(6));
    let seed = env_u64("REAGENT_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    println!("fuzz: seed {seed} (REAGENT_FUZZ_SEED={seed} repeats this run)");
    // REAGENT_FUZZ_TARGETS="policy try_input" limits the run (scripts/fuzz.sh).
    let only = std::env::var("REAGENT_FUZZ_TARGETS").unwrap_or_default();
    let chosen = |name: &str| only.trim().is_empty() || only.split_whitespace().any(|t| t == name);
    // One target after another, on one core: the rest of the suite runs
    // beside it, and some of its tests wait on real jobs.
    let results: Vec<(String, Vec<Finding>)> = TARGETS
        .iter()
        .enumerate()
        .filter(|(_, (name, _))| chosen(name))
        .map(|(i, &(name, target))| fuzz_one(name, target, budget, seed.wrapping_add(i as u64)))
        .collect();
    let mut findings = Vec::new();
    for (summary, found) in results {
        println!("fuzz: {summary}, {} finding(s)", found.len());
        findings.extend(found);
    }
    let report: Vec<String> = findings
        .iter()
        .map(|f| {
            format!(
                "{}: {} (saved to {})",
                f.target,
                f.message,
                f.saved.display()
            )
        })
        .collect();
    assert!(
        findings.is_empty(),
        "fuzz findings (fix each, then copy the saved input into fuzz/corpus/<target>/):\n{}",
        report.join("\n")
    );
}

#[test]
fn every_target_has_a_corpus_and_a_cargo_fuzz_entry() {
    let manifest =
        std::fs::read_to_string(root().join("fuzz/Cargo.toml")).expect("fuzz/Cargo.toml");
    for (name, _) in TARGETS {
        assert!(!corpus(name).is_empty(), "fuzz/corpus/{name} is empty");
        let source = Path::new("fuzz/fuzz_targets").join(format!("{name}.rs"));
        assert!(
            root().join(&source).is_file(),
            "{} is missing",
            source.display()
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] {name}"
        );
    }
}
