//! `reagent strategy build`: a Rust crate via cargo for wasm32-wasip2, a
//! Python project via a pinned componentize-py in a venv the command
//! manages; each build kept by the sha256 of its inputs.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::cli::scaffold::{PYTHON_SDK_FILES, WIT};

/// The componentize-py every Python strategy is built with.
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// The folders of a Python project that never go into the component.
const SKIPPED_DIRS: &[&str] = &[
    "build",
    "tests",
    "test",
    "target",
    "venv",
    "__pycache__",
    "node_modules",
];

pub fn build(dir: &Path, out: Option<&Path>) -> anyhow::Result<PathBuf> {
    if dir.join("pyproject.toml").is_file() {
        build_python(dir, out)
    } else if dir.join("Cargo.toml").is_file() {
        if out.is_some() {
            bail!("--out is for Python strategies; cargo decides where a Rust build goes");
        }
        build_rust(dir)
    } else {
        bail!(
            "{}: no Cargo.toml (a Rust strategy) or pyproject.toml (a Python strategy) here; \
             create one with `reagent strategy new NAME [--lang python]`",
            dir.display()
        )
    }
}

#[derive(Debug, Deserialize)]
struct CargoManifest {
    package: Option<CargoPackage>,
}

#[derive(Debug, Deserialize)]
struct CargoPackage {
    name: String,
}

fn build_rust(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest_path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let manifest: CargoManifest = toml::from_str(&text)
        .with_context(|| format!("{}: not a Cargo manifest", manifest_path.display()))?;
    let name = manifest
        .package
        .with_context(|| format!("{}: no [package] (a workspace?)", manifest_path.display()))?
        .name;
    let status = Command::new("cargo")
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(dir)
        .status()
        .map_err(|e| {
            anyhow::anyhow!("cannot run cargo ({e}); install Rust with rustup, then `rustup target add wasm32-wasip2`")
        })?;
    if !status.success() {
        bail!(
            "cargo build failed ({status}); if it says the wasm32-wasip2 target is missing, run `rustup target add wasm32-wasip2`"
        );
    }
    // Where cargo put it: $CARGO_TARGET_DIR (relative to the crate) or
    // the crate's own target/.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| dir.join(t))
        .unwrap_or_else(|| dir.join("target"));
    let wasm = target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    if !wasm.is_file() {
        bail!(
            "cargo succeeded but {} is missing; is the crate a cdylib (`crate-type = [\"cdylib\", \"rlib\"]`)?",
            wasm.display()
        );
    }
    Ok(wasm)
}

#[derive(Debug, Default, Deserialize)]
struct PyProject {
    #[serde(default)]
    project: Option<PyProjectMeta>,
    #[serde(default)]
    tool: Option<PyTools>,
}

#[derive(Debug, Deserialize)]
struct PyProjectMeta {
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PyTools {
    reagent: Option<ReagentTool>,
}

/// `[tool.reagent]` in pyproject.toml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReagentTool {
    #[serde(default = "default_world")]
    world: String,
    #[serde(default = "default_module")]
    module: String,
    #[serde(default)]
    llm: bool,
}

fn default_world() -> String {
    "generator".into()
}

fn default_module() -> String {
    "app".into()
}

fn build_python(dir: &Path, out: Option<&Path>) -> anyhow::Result<PathBuf> {
    let pyproject_path = dir.join("pyproject.toml");
    let text = std::fs::read_to_string(&pyproject_path)
        .with_context(|| format!("cannot read {}", pyproject_path.display()))?;
    let pyproject: PyProject =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", pyproject_path.display()))?;
    let tool = pyproject
        .tool
        .and_then(|t| t.reagent)
        .with_context(|| {
            format!(
                "{}: no [tool.reagent] table; add one with `world = \"generator\"` (or \"debugger\") and `module = \"app\"`",
                pyproject_path.display()
            )
        })?;
    let world = match (tool.world.as_str(), tool.llm) {
        ("generator", false) => BuildWorld::Generator,
        ("generator", true) => BuildWorld::GeneratorLlm,
        ("debugger", false) => BuildWorld::Debugger,
        ("debugger", true) => bail!(
            "{}: llm = true is only for generators (the debugger world has no llm import)",
            pyproject_path.display()
        ),
        (other, _) => bail!(
            "{}: [tool.reagent] world = {other:?}; expected \"generator\" or \"debugger\"",
            pyproject_path.display()
        ),
    };
    let module = tool.module;
    if module.is_empty()
        || !module
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!(
            "{}: [tool.reagent] module = {module:?} is not a module name",
            pyproject_path.display()
        );
    }
    if !dir.join(format!("{module}.py")).is_file() {
        bail!(
            "{}: [tool.reagent] module = {module:?}, but {module}.py is not in {}",
            pyproject_path.display(),
            dir.display()
        );
    }
    let name = pyproject
        .project
        .and_then(|p| p.name)
        .or_else(|| {
            dir.canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| "strategy".into());
    if name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!(
            "{}: project name {name:?} cannot name the output file; use letters, digits, `-`, `_` and `.`",
            pyproject_path.display()
        );
    }

    let mut sources = python_sources(dir)?;
    if !sources.contains_key("reagent_sdk/__init__.py") {
        for (path, contents) in PYTHON_SDK_FILES {
            sources.insert(path.to_string(), contents.as_bytes().to_vec());
        }
    }
    let key = build_key(world, &module, &sources);

    let tools = python_dir()?;
    let builds = tools.join("builds");
    std::fs::create_dir_all(&builds)
        .with_context(|| format!("cannot create {}", builds.display()))?;
    let cached = builds.join(format!("{key}.wasm"));
    if cached.is_file() {
        eprintln!("sources unchanged since an earlier build: reusing it");
    } else {
        let componentize = componentize_py(&tools)?;
        eprintln!(
            "building {name} with componentize-py {COMPONENTIZE_PY} (world {}; this takes ~20 s)",
            world.describe()
        );
        let staging = builds.join(format!("{key}.staging-{}", std::process::id()));
        let result = componentize_in(&staging, &componentize, world, &module, &sources);
        let _ = std::fs::remove_dir_all(&staging);
        let wasm = result?;
        let tmp = builds.join(format!("{key}.wasm.tmp-{}", std::process::id()));
        std::fs::write(&tmp, &wasm).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &cached)
            .with_context(|| format!("cannot write {}", cached.display()))?;
    }
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("build").join(format!("{name}.wasm")));
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::copy(&cached, &out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(out)
}

/// Every `.py` file of the project that belongs in the component, by
/// relative path (tests, builds, hidden folders and venvs left out).
fn python_sources(dir: &Path) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> anyhow::Result<()> {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                let skipped = name.starts_with('.')
                    || SKIPPED_DIRS.contains(&name.as_str())
                    || path.join("pyvenv.cfg").exists();
                if !skipped {
                    walk(root, &path, out)?;
                }
            } else if kind.is_file() && name.ends_with(".py") {
                let relative = path
                    .strip_prefix(root)
                    .expect("walked from root")
                    .to_string_lossy()
                    .into_owned();
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                out.insert(relative, bytes);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// The world a Python strategy is built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BuildWorld {
    Generator,
    /// `generator` and `llm-client` together. componentize-py 0.25.1
    /// panics when given two `-w`, so the build writes a world that
    /// includes both in a package of its own, next to a copy of the
    /// contract (the released WIT is not touched).
    GeneratorLlm,
    Debugger,
}

impl BuildWorld {
    fn describe(self) -> &'static str {
        match self {
            BuildWorld::Generator => "generator",
            BuildWorld::GeneratorLlm => "generator + llm-client",
            BuildWorld::Debugger => "debugger",
        }
    }

    /// The `-w` argument and the WIT files (path, text) to hand
    /// componentize-py.
    fn wit(self) -> (&'static str, Vec<(&'static str, &'static str)>) {
        match self {
            BuildWorld::Generator => ("generator", vec![("strategy.wit", WIT)]),
            BuildWorld::Debugger => ("debugger", vec![("strategy.wit", WIT)]),
            BuildWorld::GeneratorLlm => (
                "generator-llm",
                vec![
                    ("deps/strategy/strategy.wit", WIT),
                    ("build.wit", GENERATOR_LLM_WIT),
                ],
            ),
        }
    }
}

const GENERATOR_LLM_WIT: &str = "package reagent:python-build;\n\n\
    world generator-llm {\n    \
    include reagent:strategy/generator@0.1.0;\n    \
    include reagent:strategy/llm-client@0.1.0;\n}\n";

fn build_key(world: BuildWorld, module: &str, sources: &BTreeMap<String, Vec<u8>>) -> String {
    let mut h = Sha256::new();
    h.update(format!("componentize-py {COMPONENTIZE_PY}\n"));
    let (name, wit) = world.wit();
    h.update(format!("world {name}\nmodule {module}\n"));
    for (path, text) in wit {
        h.update(format!("wit {path} {}\n", text.len()));
        h.update(text.as_bytes());
    }
    for (path, bytes) in sources {
        h.update(format!("file {path} {}\n", bytes.len()));
        h.update(bytes);
    }
    hex::encode(h.finalize())
}

/// Where the venv and the builds live.
fn python_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("REAGENT_PYTHON_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither REAGENT_PYTHON_DIR, XDG_CACHE_HOME nor HOME is set: set REAGENT_PYTHON_DIR to a folder for the Python build tools")?;
    Ok(base.join("reagent").join("python"))
}

/// The venv's componentize-py, installing the pinned version first if
/// the venv or the right version is missing.
fn componentize_py(tools: &Path) -> anyhow::Result<PathBuf> {
    let venv = tools.join("venv");
    let bin = venv.join("bin");
    let componentize = bin.join("componentize-py");
    let installed = Command::new(&componentize)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if installed.as_deref() == Some(&format!("componentize-py {COMPONENTIZE_PY}")) {
        return Ok(componentize);
    }
    eprintln!(
        "installing componentize-py {COMPONENTIZE_PY} into {} (once; remove that folder to undo)",
        venv.display()
    );
    if !bin.join("python").exists() {
        let python = std::env::var_os("REAGENT_PYTHON").unwrap_or_else(|| "python3".into());
        let shown = PathBuf::from(&python).display().to_string();
        let made = Command::new(&python)
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .map_err(|e| {
                anyhow::anyhow!(
                    "building a Python strategy needs Python 3.10+ with venv and pip, but `{shown}` could not be run ({e}). \
                     Install Python (Debian/Ubuntu: `apt-get install python3 python3-venv python3-pip`) \
                     or set REAGENT_PYTHON to its path"
                )
            })?;
        if !made.status.success() {
            bail!(
                "`{shown} -m venv {}` failed; install Python's venv module (Debian/Ubuntu: `apt-get install python3-venv`):\n{}",
                venv.display(),
                tail(&made.stderr)
            );
        }
    }
    let pip = Command::new(bin.join("python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg(format!("componentize-py=={COMPONENTIZE_PY}"))
        .output()
        .with_context(|| format!("cannot run {}", bin.join("python").display()))?;
    if !pip.status.success() {
        bail!(
            "pip could not install componentize-py {COMPONENTIZE_PY} into {} (it needs pip and PyPI; Debian/Ubuntu: `apt-get install python3-pip`):\n{}",
            venv.display(),
            tail(&pip.stderr)
        );
    }
    Ok(componentize)
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Runs componentize-py in `staging` (the WIT and the sources copied in,
/// nothing else on its path) and returns the component with the SDK
/// version section appended.
fn componentize_in(
    staging: &Path,
    componentize: &Path,
    world: BuildWorld,
    module: &str,
    sources: &BTreeMap<String, Vec<u8>>,
) -> anyhow::Result<Vec<u8>> {
    let _ = std::fs::remove_dir_all(staging);
    let app = staging.join("app");
    let wit = staging.join("wit");
    let (world_name, wit_files) = world.wit();
    for (path, text) in wit_files {
        let full = wit.join(path);
        std::fs::create_dir_all(full.parent().expect("a file in wit/"))?;
        std::fs::write(full, text)?;
    }
    for (path, bytes) in sources {
        let full = app.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&full, bytes)?;
    }
    let out = staging.join("component.wasm");
    let mut cmd = Command::new(componentize);
    cmd.current_dir(staging)
        .args(["-d", "wit", "-w", world_name]);
    cmd.args(["componentize", module, "-p", "app", "-o", "component.wasm"])
        // Only the project's own files: no site-packages from a venv.
        .env_remove("VIRTUAL_ENV")
        .env_remove("PYTHONPATH");
    let done = cmd
        .output()
        .with_context(|| format!("cannot run {}", componentize.display()))?;
    if !done.status.success() || !out.is_file() {
        bail!(
            "componentize-py failed ({}):\n{}{}",
            done.status,
            tail(&done.stdout),
            tail(&done.stderr)
        );
    }
    let mut wasm = std::fs::read(&out)?;
    let version = crate::cli::scaffold::python_sdk_version();
    append_custom_section(
        &mut wasm,
        "reagent-sdk-version",
        format!("{version} (python)").as_bytes(),
    );
    Ok(wasm)
}

/// Appends a custom section at the component's top level, where
/// `strategy inspect` reads the SDK version.
fn append_custom_section(wasm: &mut Vec<u8>, name: &str, data: &[u8]) {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::new();
    leb128(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(data);
    wasm.push(0);
    leb128(body.len(), wasm);
    let _ = wasm.write_all(&body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_componentize_py_is_the_one_the_test_venv_installs() {
        let pins = include_str!("../../../../guest-sdk-py/requirements-dev.txt");
        assert!(
            pins.lines()
                .any(|l| l.trim() == format!("componentize-py=={COMPONENTIZE_PY}")),
            "guest-sdk-py/requirements-dev.txt and COMPONENTIZE_PY disagree"
        );
    }

    #[test]
    fn the_build_key_changes_with_any_source_byte_and_with_the_worlds() {
        let mut sources = BTreeMap::new();
        sources.insert("app.py".to_string(), b"x = 1\n".to_vec());
        let generator = BuildWorld::Generator;
        let key = build_key(generator, "app", &sources);
        assert_eq!(key, build_key(generator, "app", &sources));
        assert_ne!(key, build_key(BuildWorld::GeneratorLlm, "app", &sources));
        assert_ne!(key, build_key(BuildWorld::Debugger, "app", &sources));
        assert_ne!(key, build_key(generator, "main", &sources));
        sources.insert("app.py".to_string(), b"x = 2\n".to_vec());
        assert_ne!(key, build_key(generator, "app", &sources));
    }

    #[test]
    fn the_sdk_version_section_is_a_well_formed_custom_section() {
        let mut wasm = b"\0asm\x0d\0\x01\0".to_vec();
        append_custom_section(&mut wasm, "reagent-sdk-version", b"0.1.0 (python)");
        assert_eq!(
            crate::sandbox::surface::sdk_version(&wasm).as_deref(),
            Some("0.1.0 (python)")
        );
    }
}
