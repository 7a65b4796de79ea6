//! `reagent strategy new`: a strategy crate that builds on its own.
//!
//! The SDK is not on crates.io yet, so the scaffold vendors it (sources
//! and the WIT package, embedded in this binary) next to the new crate;
//! the only download is wit-bindgen from crates.io.
//!
//! `--lang python` writes a Python project instead: `app.py` (the
//! generator or debugger template from `guest-sdk-py/templates/`), its
//! pytest tests, a vendored `reagent_sdk/`, and a `pyproject.toml` whose
//! `[tool.reagent]` table tells `strategy build` the world and module.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::strategy::World;

const SDK_FILES: &[(&str, &str)] = &[
    (
        "reagent-sdk/src/lib.rs",
        include_str!("../../../guest-sdk/src/lib.rs"),
    ),
    (
        "reagent-sdk/src/helpers.rs",
        include_str!("../../../guest-sdk/src/helpers.rs"),
    ),
    (
        "reagent-sdk/src/rng.rs",
        include_str!("../../../guest-sdk/src/rng.rs"),
    ),
    (
        "reagent-sdk/src/testing.rs",
        include_str!("../../../guest-sdk/src/testing.rs"),
    ),
    (
        "wit/strategy.wit",
        include_str!("../../../wit/strategy.wit"),
    ),
];

const SDK_MANIFEST: &str = r#"[package]
name = "reagent-sdk"
description = "Write Reagent strategies (vendored copy made by `reagent strategy new`)"
version = "0.1.0"
edition = "2024"
license = "Apache-2.0"

[features]
default = ["generator", "debugger"]
generator = []
debugger = []
# The `llm` import: add "llm" to the strategy's reagent-sdk features
# (a generator only; the campaign's `[strategies.grants] llm` lets it reach
# the model, and without the grant each call answers an error).
llm = ["generator"]

[dependencies]
wit-bindgen = { version = "0.46", default-features = false, features = ["macros", "realloc"] }
"#;

fn manifest(name: &str, world: World) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
# Add "llm" to the features to import the language model (generators).
reagent-sdk = {{ path = "reagent-sdk", default-features = false, features = ["{world}"] }}

# A workspace of its own, so it builds wherever it is created.
[workspace]

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = "debuginfo"
"#,
        world = world.name()
    )
}

fn type_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

fn generator_source(ty: &str) -> String {
    format!(
        r#"//! A Reagent generator. `propose` dispatches on the phase; implement the
//! phases you care about (validate, combine, exploit).

use reagent_sdk::{{Context, Generator, Hypothesis, Rng, log}};

pub struct {ty};

impl Generator for {ty} {{
    /// One random change per knob, in random order.
    fn validate(ctx: &Context, max: u32) -> Vec<Hypothesis> {{
        let mut rng = Rng::new(ctx.seed);
        let mut out = Vec::new();
        for knob in &ctx.knobs {{
            let value = knob.from_unit(rng.f64());
            if value != knob.baseline {{
                out.push(
                    Hypothesis::new(format!("try {{}} = {{}}", knob.name, value.render()))
                        .because("a first look at each knob")
                        .category(knob.name.clone())
                        .set(knob.name.clone(), value),
                );
            }}
        }}
        rng.shuffle(&mut out);
        out.truncate(max as usize);
        log::info(&format!("proposing {{}} single changes", out.len()));
        out
    }}
}}

reagent_sdk::export_generator!({ty});

#[cfg(test)]
mod tests {{
    use super::*;
    use reagent_sdk::{{Direction, FloatRange, KnobKind, KnobSpec, Objective, Phase, Value}};

    fn context() -> Context {{
        Context {{
            campaign: "test".into(),
            tags: vec![],
            objective: Objective {{ metric: "loss".into(), direction: Direction::Minimize }},
            knobs: vec![KnobSpec {{
                name: "lr".into(),
                kind: KnobKind::LogFloat(FloatRange {{ low: 1e-4, high: 1.0 }}),
                baseline: Value::Float(0.01),
            }}],
            phase: Phase::Validate,
            baseline: None,
            noise: None,
            seed: 7,
            round: 0,
            trials_done: 0,
            trials_left: 10,
        }}
    }}

    #[test]
    fn proposes_valid_changes() {{
        reagent_sdk::testing::install(Default::default());
        let ctx = context();
        let out = {ty}::propose(&ctx, 4);
        assert_eq!(out.len(), 1);
        assert!(ctx.knobs[0].accepts(&out[0].assignments[0].value));
    }}
}}
"#
    )
}

fn debugger_source(ty: &str) -> String {
    format!(
        r#"//! A Reagent debugger: reads a failed trial and decides what to do.

use reagent_sdk::{{Action, Context, Debugger, Diagnosis, FailureClass, FailureReport}};

pub struct {ty};

impl Debugger for {ty} {{
    fn diagnose(_ctx: &Context, failure: &FailureReport) -> Diagnosis {{
        let tail = failure.log_tail.to_lowercase();
        if tail.contains("connection reset") && failure.attempt < failure.max_attempts {{
            return Diagnosis {{
                class: FailureClass::Infrastructure,
                action: Action::Retry,
                rationale: "network flake; retrying".into(),
            }};
        }}
        Diagnosis {{
            class: FailureClass::Unknown,
            action: Action::Escalate,
            rationale: format!("trial {{}} failed; asking a human", failure.trial),
        }}
    }}
}}

reagent_sdk::export_debugger!({ty});
"#
    )
}

/// The Python SDK (`guest-sdk-py/reagent_sdk`), embedded: `strategy new
/// --lang python` vendors it into the new project (so its tests run with
/// plain pytest) and `strategy build` puts it on the path of a project
/// that has no copy of its own.
pub const PYTHON_SDK_FILES: &[(&str, &str)] = &[
    (
        "reagent_sdk/__init__.py",
        include_str!("../../../guest-sdk-py/reagent_sdk/__init__.py"),
    ),
    (
        "reagent_sdk/_component.py",
        include_str!("../../../guest-sdk-py/reagent_sdk/_component.py"),
    ),
    (
        "reagent_sdk/_host.py",
        include_str!("../../../guest-sdk-py/reagent_sdk/_host.py"),
    ),
    (
        "reagent_sdk/imports.py",
        include_str!("../../../guest-sdk-py/reagent_sdk/imports.py"),
    ),
    (
        "reagent_sdk/rng.py",
        include_str!("../../../guest-sdk-py/reagent_sdk/rng.py"),
    ),
    (
        "reagent_sdk/testing.py",
        include_str!("../../../guest-sdk-py/reagent_sdk/testing.py"),
    ),
    (
        "reagent_sdk/types.py",
        include_str!("../../../guest-sdk-py/reagent_sdk/types.py"),
    ),
];

/// The Python SDK's version, as `reagent_sdk.SDK_VERSION` says.
pub fn python_sdk_version() -> &'static str {
    let init = PYTHON_SDK_FILES[0].1;
    init.lines()
        .find_map(|l| l.strip_prefix("SDK_VERSION = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or("unknown")
}

/// The contract, embedded (what `strategy build` hands componentize-py).
pub const WIT: &str = include_str!("../../../wit/strategy.wit");

/// The Python templates (tested in place by scripts/test.sh).
const PY_GENERATOR: &str = include_str!("../../../guest-sdk-py/templates/generator/app.py");
const PY_GENERATOR_TESTS: &str =
    include_str!("../../../guest-sdk-py/templates/generator/tests/test_app.py");
const PY_DEBUGGER: &str = include_str!("../../../guest-sdk-py/templates/debugger/app.py");
const PY_DEBUGGER_TESTS: &str =
    include_str!("../../../guest-sdk-py/templates/debugger/tests/test_app.py");

/// Which language a new strategy is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Python,
}

fn python_project(name: &str, world: World) -> String {
    format!(
        r#"[project]
name = "{name}"
version = "0.1.0"
requires-python = ">=3.10"

# Read by `reagent strategy build`.
[tool.reagent]
# generator (exports propose) or debugger (exports diagnose).
world = "{world}"
# The module that assigns `WitWorld = export_generator(...)`.
module = "app"
# true to import the `llm` capability (a generator only; the campaign must
# grant it too).
llm = false

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["."]
"#,
        world = world.name()
    )
}

fn python_files(name: &str, world: World) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = PYTHON_SDK_FILES
        .iter()
        .map(|(p, c)| (p.to_string(), c.to_string()))
        .collect();
    let (app, tests) = match world {
        World::Generator => (PY_GENERATOR, PY_GENERATOR_TESTS),
        World::Debugger => (PY_DEBUGGER, PY_DEBUGGER_TESTS),
    };
    files.push(("pyproject.toml".into(), python_project(name, world)));
    files.push(("app.py".into(), app.into()));
    files.push(("tests/test_app.py".into(), tests.into()));
    files.push((".gitignore".into(), "build/\n__pycache__/\n".into()));
    files
}

/// Creates `dir/name`, a Rust crate or a Python project, and returns its path.
pub fn create(dir: &Path, name: &str, world: World, lang: Lang) -> anyhow::Result<PathBuf> {
    let valid = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        bail!(
            "invalid strategy name {name:?}: use lowercase letters, digits and dashes, starting with a letter"
        );
    }
    let root = dir.join(name);
    if root.exists() {
        bail!(
            "{} already exists; choose another name or remove it",
            root.display()
        );
    }
    let files = match lang {
        Lang::Rust => rust_files(name, world),
        Lang::Python => python_files(name, world),
    };
    for (path, contents) in files {
        let full = root.join(&path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&full, contents)
            .with_context(|| format!("cannot write {}", full.display()))?;
    }
    Ok(root)
}

fn rust_files(name: &str, world: World) -> Vec<(String, String)> {
    let ty = type_name(name);
    let mut files: Vec<(String, String)> = SDK_FILES
        .iter()
        .map(|(p, c)| (p.to_string(), c.to_string()))
        .collect();
    files.push(("reagent-sdk/Cargo.toml".into(), SDK_MANIFEST.into()));
    files.push(("Cargo.toml".into(), manifest(name, world)));
    files.push((
        "src/lib.rs".into(),
        match world {
            World::Generator => generator_source(&ty),
            World::Debugger => debugger_source(&ty),
        },
    ));
    files.push((".gitignore".into(), "target/\n".into()));
    files
}

#[cfg(test)]
mod tests {
    /// The feature names of a Cargo manifest's `[features]` table.
    fn features(manifest: &str) -> Vec<String> {
        let table: toml::Table = toml::from_str(manifest).unwrap();
        let mut names: Vec<String> = table["features"]
            .as_table()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_vendored_sdk_has_every_feature_of_the_sdk() {
        // It once lacked `llm`: a scaffolded strategy could not import the
        // model and every build warned of an unexpected cfg.
        let sdk = include_str!("../../../guest-sdk/Cargo.toml");
        assert_eq!(features(super::SDK_MANIFEST), features(sdk));
    }
}
