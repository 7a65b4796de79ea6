//! `reagent demo` end to end on tiny data: the real trainer (built from
//! examples/ranker), a short campaign, a proposal.

use std::process::Command;

use crate::campaign::text;

#[test]
fn the_demo_runs_the_real_trainer_to_a_proposal_on_tiny_data() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_reagent"))
        .args(["demo", "--dir"])
        .arg(dir.path())
        .args(["--max-trials", "12", "--"])
        .args(["--users", "300", "--items", "600", "--queries", "900"])
        .env("REAGENT_CACHE_DIR", crate::support::cache_dir())
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("[5/5] proposal"), "{out}");
    assert!(out.contains("valid_ne: baseline"), "{out}");
    assert!(out.contains("launch  t1    baseline"), "{out}");
    assert!(dir.path().join("report.md").exists());
    let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(
        report.contains("# Improvement proposal: ranker-ne"),
        "{report}"
    );
    // The trainer really ran: its metrics reached the store.
    let trials = Command::new(env!("CARGO_BIN_EXE_reagent"))
        .args(["trials", "1", "--json", "--workspace"])
        .arg(dir.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&trials.stdout).unwrap();
    let first = v
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["status"] == "succeeded")
        .expect("a succeeded trial");
    for metric in [
        "valid_ne",
        "valid_auc",
        "valid_ndcg",
        "test_ne",
        "train_seconds",
    ] {
        assert!(
            first["metrics"][metric].is_number(),
            "{metric} missing: {first}"
        );
    }
}
