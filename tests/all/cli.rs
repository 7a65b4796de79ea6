//! The `reagent strategy` commands as a user runs them.

use std::path::Path;
use std::process::{Command, Output};

use reagent::sandbox::test_guests as g;

fn reagent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reagent"))
        .args(args)
        .env("REAGENT_CACHE_DIR", crate::support::cache_dir())
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run reagent")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn inspect_accepts_the_builtins_and_exits_zero() {
    let o = reagent(&["strategy", "inspect", "builtin:runbook"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("world     reagent:strategy/debugger@0.1.0"),
        "{out}"
    );
    assert!(out.contains("reagent:strategy/log@0.1.0"), "{out}");
    assert!(out.contains("verdict   accepted"), "{out}");

    let o = reagent(&["strategy", "inspect", "builtin:three-phase", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["world"], "generator");
    assert_eq!(v["accepted"], true);
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    assert!(v["size"].as_u64().unwrap() > 1000);
}

#[test]
fn inspect_names_refused_imports_and_exits_one() {
    let o = reagent(&["strategy", "inspect", g::IMPORTS_UNKNOWN]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("evil:exfil/send@1.0.0: not part of the strategy surface"));
}

#[test]
fn try_runs_the_example_inputs() {
    let o = reagent(&[
        "strategy",
        "try",
        "builtin:three-phase",
        "--call",
        "propose",
        "--input",
        "examples/strategy-inputs/propose.json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("8 hypotheses"), "{}", text(&o));
    assert!(text(&o).contains("usage: fuel"), "{}", text(&o));

    let o = reagent(&[
        "strategy",
        "try",
        "builtin:runbook",
        "--call",
        "diagnose",
        "--input",
        "examples/strategy-inputs/diagnose.json",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["outcome"]["Ok"]["diagnosis"]["class"], "Divergence",
        "{v}"
    );
}

#[test]
fn try_reports_the_limit_hit_and_exits_one() {
    let o = reagent(&[
        "strategy",
        "try",
        g::INFINITE_LOOP,
        "--call",
        "propose",
        "--input",
        "examples/strategy-inputs/propose.json",
        "--fuel",
        "1000000",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("error (out-of-fuel)"), "{}", text(&o));
    assert!(text(&o).contains("fuel 1000000 of 1000000"), "{}", text(&o));
}

#[test]
fn try_with_malformed_input_names_the_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, "{\n  \"context\": {\n    \"campaign\": 3\n").unwrap();
    let o = reagent(&[
        "strategy",
        "try",
        "builtin:three-phase",
        "--call",
        "propose",
        "--input",
        path.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let out = text(&o);
    assert!(out.contains(&format!("{}:3:", path.display())), "{out}");

    let o = reagent(&[
        "strategy",
        "try",
        "builtin:three-phase",
        "--call",
        "diagnose",
        "--input",
        "examples/strategy-inputs/diagnose.json",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("use --call propose"), "{}", text(&o));
}

#[test]
fn new_scaffolds_a_strategy_that_builds_and_passes_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let o = reagent(&[
        "strategy",
        "new",
        "my-gen",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let root = dir.path().join("my-gen");
    assert!(root.join("reagent-sdk/src/lib.rs").exists());

    // Share the guests' target dir so wit-bindgen is not rebuilt.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests");
    let build = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(&root)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", text(&build));
    let wasm = target.join("wasm32-wasip2/release/my_gen.wasm");
    let o = reagent(&["strategy", "inspect", wasm.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("reagent:strategy/generator@0.1.0"));

    let again = reagent(&[
        "strategy",
        "new",
        "my-gen",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).contains("already exists"));
}
