//! Compiles the guest crates (built-in strategies and the hostile test
//! guests) to wasm32-wasip2 components, the way wasmtime's test-programs do,
//! so `cargo build`, `cargo run` and `cargo test` need no separate step.
//!
//! Writes `$OUT_DIR/guests.rs` with one constant per component path.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (workspace dir relative to the repo root, package, SDK feature set).
/// Packages with the same feature set are built in one cargo invocation;
/// different sets are built separately so the SDK's features never unify
/// across them (`generator-llm`: the generator world plus the `llm`
/// import, which must not leak into the other generators).
const GUESTS: &[(&str, &str, &str)] = &[
    ("strategies", "three-phase", "generator"),
    ("strategies", "researcher", "generator-llm"),
    ("strategies", "runbook", "debugger"),
    ("tests/guests", "echo-generator", "generator"),
    ("tests/guests", "echo-debugger", "debugger"),
    ("tests/guests", "infinite-loop", "generator"),
    ("tests/guests", "memory-bomb", "generator"),
    ("tests/guests", "deep-recursion", "generator"),
    ("tests/guests", "huge-output", "generator"),
    ("tests/guests", "log-spam", "generator"),
    ("tests/guests", "hostcall-flood", "generator"),
    ("tests/guests", "panic-mid-call", "generator"),
    ("tests/guests", "invalid-hypotheses", "generator"),
    ("tests/guests", "imports-filesystem", "generator"),
    ("tests/guests", "imports-sockets", "generator"),
    ("tests/guests", "imports-unknown", "generator"),
    ("tests/guests", "wall-clock", "generator"),
    ("tests/guests", "other-world", "none"),
    ("tests/guests", "llm-echo", "generator-llm"),
    ("tests/guests", "hostile-text", "generator"),
    ("tests/guests", "timer-abuse", "generator"),
    ("tests/guests", "boundary-flood", "generator-llm"),
    ("tests/guests", "random-guest", "generator"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for dir in [
        "wit",
        "guest-sdk",
        "crates/lenient-json",
        "strategies",
        "tests/guests",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    // REAGENT_PREBUILT_GUESTS: a target dir whose guests a stable build
    // already compiled (scripts/fuzz.sh: the nightly toolchain that
    // cargo-fuzz needs may have no wasm32-wasip2 standard library).
    println!("cargo:rerun-if-env-changed=REAGENT_PREBUILT_GUESTS");
    let prebuilt = env::var_os("REAGENT_PREBUILT_GUESTS").map(PathBuf::from);
    let target_dir = prebuilt.clone().unwrap_or_else(|| {
        env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|p| if p.is_absolute() { p } else { root.join(p) })
            .unwrap_or_else(|| root.join("target"))
            .join("guests")
    });

    let mut groups: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for (dir, package, world) in GUESTS {
        match groups.iter_mut().find(|(d, w, _)| d == dir && w == world) {
            Some(group) => group.2.push(package),
            None => groups.push((dir, world, vec![package])),
        }
    }
    if prebuilt.is_none() {
        for (dir, _world, packages) in &groups {
            build_group(&root.join(dir), &target_dir, packages);
        }
    }

    let out_dir = target_dir.join("wasm32-wasip2").join("release");
    let mut code = String::new();
    for (_, package, _) in GUESTS {
        let file = out_dir.join(format!("{}.wasm", package.replace('-', "_")));
        assert!(
            file.exists(),
            "guest {package} was not built: {}",
            file.display()
        );
        let name = package.replace('-', "_").to_uppercase();
        writeln!(
            code,
            "pub const {name}: &str = {:?};",
            file.display().to_string()
        )
        .unwrap();
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    std::fs::write(out.join("guests.rs"), code).unwrap();
    // The built-ins are embedded with include_bytes! from OUT_DIR.
    for builtin in ["three_phase", "researcher", "runbook"] {
        let file = format!("{builtin}.wasm");
        std::fs::copy(out_dir.join(&file), out.join(&file)).unwrap();
    }
}

fn build_group(workspace: &Path, target_dir: &Path, packages: &[&str]) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(target_dir);
    for package in packages {
        cmd.args(["-p", package]);
    }
    // The outer build's flags and wrappers (clippy, coverage) are for the
    // host target; the guests get a plain build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
    if !status.success() {
        panic!(
            "building the wasm guests in {} failed (is the target installed? \
             run `rustup target add wasm32-wasip2`)",
            workspace.display()
        );
    }
}
