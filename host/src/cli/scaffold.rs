//! `reagent strategy new`: a strategy crate that builds on its own.
//!
//! The SDK is not on crates.io yet, so the scaffold vendors it (sources
//! and the WIT package, embedded in this binary) next to the new crate;
//! the only download is wit-bindgen from crates.io.

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

/// Creates `dir/name` and returns its path.
pub fn create(dir: &Path, name: &str, world: World) -> anyhow::Result<PathBuf> {
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
