//! The compile cache holds native code the host maps and runs, so nothing
//! in it is used unless it is exactly what this host wrote for this
//! component: a symlinked, swapped or tampered entry, or a directory others
//! can write to, means a fresh compile.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reagent::sandbox::test_guests as g;
use reagent::sandbox::{Limits, Sandbox, SandboxConfig};
use reagent::strategy::data::{MemoryStore, StaticData};
use reagent::strategy::{CallInput, CallOutput, Grants, Phase, World};

use crate::support::{context, guest};

fn sandbox_in(dir: &Path) -> Sandbox {
    Sandbox::new(SandboxConfig {
        cache_dir: Some(dir.to_path_buf()),
        pooling: false,
    })
    .unwrap()
}

/// The cache entry of the component whose wasm hashes to `sha256`.
fn entry(dir: &Path, sha256: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(sha256) && n.ends_with(".cwasm"))
        })
        .unwrap_or_else(|| panic!("no cache entry for {sha256} in {}", dir.display()))
}

/// A cache where A (echo-generator) and B (echo-debugger, another world
/// with other imports) are both compiled; returns their hashes.
fn two_entries(dir: &Path) -> (String, String) {
    let sb = sandbox_in(dir);
    let a = sb
        .inspect(&guest(g::ECHO_GENERATOR), &Grants::default())
        .unwrap();
    let b = sb
        .inspect(&guest(g::ECHO_DEBUGGER), &Grants::default())
        .unwrap();
    assert!(a.compiled && b.compiled);
    assert_eq!(a.world, Some(World::Generator));
    assert_eq!(b.world, Some(World::Debugger));
    (a.sha256, b.sha256)
}

/// Inspects and runs A from the cache in `dir`: A must be A.
fn assert_a_is_a(dir: &Path) {
    let sb = sandbox_in(dir);
    let source = guest(g::ECHO_GENERATOR);
    let info = sb.inspect(&source, &Grants::default()).unwrap();
    assert_eq!(info.world, Some(World::Generator), "{info:?}");
    assert!(
        info.imports
            .iter()
            .any(|i| i.contains("reagent:strategy/memory")),
        "A's own imports: {:?}",
        info.imports
    );
    assert!(
        info.compiled,
        "the bad entry is not loaded: A is compiled afresh"
    );
    let strategy = sb.load(&source, &Grants::default()).unwrap();
    let (r, _) = sb.call(
        &strategy,
        CallInput::Propose {
            context: context("cached", Phase::Validate, 1),
            max: 4,
        },
        Arc::new(StaticData::default()),
        MemoryStore::default(),
        &Limits::default(),
    );
    assert!(
        matches!(r.outcome, Ok(CallOutput::Hypotheses(_))),
        "A runs as A: {:?}",
        r.outcome
    );
}

#[test]
fn a_cache_entry_symlinked_to_another_components_entry_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_entries(dir.path());
    let a_entry = entry(dir.path(), &a);
    let b_entry = entry(dir.path(), &b);
    std::fs::remove_file(&a_entry).unwrap();
    std::os::unix::fs::symlink(&b_entry, &a_entry).unwrap();
    assert_a_is_a(dir.path());
}

#[test]
fn another_components_entry_copied_over_this_ones_is_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_entries(dir.path());
    let a_entry = entry(dir.path(), &a);
    std::fs::copy(entry(dir.path(), &b), &a_entry).unwrap();
    assert_a_is_a(dir.path());
}

#[test]
fn another_components_entry_copied_over_with_its_sum_is_not_loaded() {
    // The sum binds the artifact to its entry's name: B's artifact and
    // B's sum under A's name do not check out.
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_entries(dir.path());
    let (a_entry, b_entry) = (entry(dir.path(), &a), entry(dir.path(), &b));
    let sum = |p: &Path| PathBuf::from(format!("{}.sum", p.display()));
    std::fs::copy(&b_entry, &a_entry).unwrap();
    std::fs::copy(sum(&b_entry), sum(&a_entry)).unwrap();
    assert_a_is_a(dir.path());
    // And an artifact without its sum is not used either.
    std::fs::remove_file(sum(&a_entry)).unwrap();
    assert_a_is_a(dir.path());
}

#[test]
fn a_tampered_cache_entry_is_recompiled_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = two_entries(dir.path());
    let a_entry = entry(dir.path(), &a);
    let mut bytes = std::fs::read(&a_entry).unwrap();
    // Flip one byte in the middle of the artifact (its code, not a header
    // a loader would check anyway).
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&a_entry, &bytes).unwrap();
    assert_a_is_a(dir.path());
}

#[test]
fn a_cache_directory_others_can_write_is_not_trusted() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = two_entries(dir.path());
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let a_entry = entry(dir.path(), &a);
    let before = std::fs::read(&a_entry).unwrap();
    for _ in 0..2 {
        // A new sandbox each time: one sandbox keeps what it compiled in
        // memory, and that is not the directory's doing.
        let sb = sandbox_in(dir.path());
        let info = sb
            .inspect(&guest(g::ECHO_GENERATOR), &Grants::default())
            .unwrap();
        assert!(
            info.compiled,
            "nothing is loaded from a world-writable directory"
        );
    }
    assert_eq!(
        std::fs::read(&a_entry).unwrap(),
        before,
        "nor written to it"
    );
}
