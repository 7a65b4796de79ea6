//! Bad components and bad files: a clear error naming the file and what
//! was expected.

use reagent::sandbox::LoadError;
use reagent::sandbox::test_guests as g;
use reagent::strategy::{Grants, StrategySource, World};

use crate::support::{guest, sandbox};

fn load_err(source: &StrategySource) -> String {
    match sandbox().load(source, &Grants::default()) {
        Ok(_) => panic!("{source} should not load"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_file_that_is_not_wasm_is_named_and_explained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.wasm");
    std::fs::write(&path, "hello, I am text").unwrap();
    let msg = load_err(&StrategySource::File(path.clone()));
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("not a WebAssembly file"),
        "{msg}"
    );
}

#[test]
fn a_core_module_is_told_to_become_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let msg = load_err(&StrategySource::File(path));
    assert!(
        msg.contains("core WebAssembly module, not a component"),
        "{msg}"
    );
    assert!(msg.contains("wasm32-wasip2"), "{msg}");
}

#[test]
fn a_truncated_component_is_invalid() {
    let bytes = std::fs::read(g::ECHO_GENERATOR).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.wasm");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load_err(&StrategySource::File(path));
    assert!(msg.contains("is not a valid component"), "{msg}");
}

#[test]
fn a_missing_file_and_an_unknown_builtin_are_named() {
    let msg = load_err(&StrategySource::File("/nonexistent/strategy.wasm".into()));
    assert!(
        msg.contains("cannot read strategy /nonexistent/strategy.wasm"),
        "{msg}"
    );
    let msg = load_err(&StrategySource::parse("builtin:nope"));
    assert!(
        msg.contains("builtin:three-phase") && msg.contains("builtin:runbook"),
        "{msg}"
    );
}

#[test]
fn a_component_of_another_world_is_refused() {
    match sandbox().load(&guest(g::OTHER_WORLD), &Grants::default()) {
        Err(LoadError::Refused { refusals, .. }) => {
            assert!(refusals[0].reason.contains("another world"), "{refusals:?}");
            assert!(refusals[0].reason.contains("greet"), "{refusals:?}");
        }
        other => panic!("expected refusal, got {other:?}"),
    }
}

#[test]
fn only_the_researcher_imports_llm_and_it_loads_with_or_without_the_grant() {
    let inspect = |name: &str, grants: &Grants| {
        sandbox()
            .inspect(&StrategySource::parse(name), grants)
            .unwrap()
    };
    let llm = |import: &String| import.starts_with("reagent:strategy/llm@");
    let three_phase = inspect("builtin:three-phase", &Grants::default());
    assert!(
        !three_phase.imports.iter().any(llm),
        "{:?}",
        three_phase.imports
    );
    // Without the grant the import is linked but answers an error (see
    // llm.rs::without_the_grant_the_import_answers_an_error_and_nothing_is_sent),
    // so the researcher works without a language model.
    for grants in [
        Grants::default(),
        Grants {
            llm: true,
            ..Grants::default()
        },
    ] {
        let researcher = inspect("builtin:researcher", &grants);
        assert_eq!(researcher.world, Some(World::Generator));
        assert!(
            researcher.imports.iter().any(llm),
            "{:?}",
            researcher.imports
        );
        assert!(researcher.accepted, "{:?}", researcher.refusals);
    }
    // Without `insights` it still loads (a workspace may keep campaigns
    // blind to each other); the import is linked and answers nothing, and
    // inspect says so.
    let no_insights = Grants {
        insights: false,
        ..Grants::default()
    };
    let researcher = inspect("builtin:researcher", &no_insights);
    assert!(researcher.accepted, "{:?}", researcher.refusals);
    assert_eq!(researcher.ungranted, ["insights", "llm"]);
}

#[test]
fn the_builtins_import_only_the_strategy_surface_and_virtual_wasi() {
    for name in [
        "builtin:three-phase",
        "builtin:runbook",
        "builtin:researcher",
    ] {
        let info = sandbox()
            .inspect(&StrategySource::parse(name), &Grants::default())
            .unwrap();
        assert!(info.accepted, "{name}: {:?}", info.refusals);
        assert_eq!(info.sdk_version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
        for import in &info.imports {
            let ok = import.starts_with("reagent:strategy/")
                || ["wasi:io/", "wasi:cli/", "wasi:clocks/", "wasi:random/"]
                    .iter()
                    .any(|p| import.starts_with(p));
            assert!(ok, "{name} imports {import}");
            assert!(!import.contains("filesystem") && !import.contains("sockets"));
        }
    }
}
