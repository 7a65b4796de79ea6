//! gen-data: determinism by seed, split by query, and reading it back.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use reagent_ranker::letor;
use reagent_ranker::synth::{self, SPLIT_FILES};

fn read_all(dir: &std::path::Path) -> Vec<Vec<u8>> {
    SPLIT_FILES
        .iter()
        .chain(["meta.json"].iter())
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect()
}

#[test]
fn gen_data_is_deterministic_by_seed() {
    let root = common::temp_dir("determinism");
    let cfg = common::tiny_config(11);
    synth::generate(&cfg, &root.join("a")).unwrap();
    synth::generate(&cfg, &root.join("b")).unwrap();
    let mut other = cfg.clone();
    other.seed = 12;
    synth::generate(&other, &root.join("c")).unwrap();
    let a = read_all(&root.join("a"));
    assert_eq!(a, read_all(&root.join("b")));
    assert_ne!(a[0], read_all(&root.join("c"))[0]);
    // The binary writes the same bytes as the library.
    let mut c = common::ranker();
    c.args(["gen-data", "--seed", "11", "--users", "40", "--items", "80"]);
    c.args([
        "--queries",
        "150",
        "--min-candidates",
        "10",
        "--max-candidates",
        "20",
    ]);
    c.arg("--out").arg(root.join("d"));
    let (out, stdout, stderr) = common::run(c);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("train.txt"), "{stdout}");
    assert_eq!(a, read_all(&root.join("d")));
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn splits_are_by_query() {
    let root = common::temp_dir("splits");
    let cfg = common::tiny_config(3);
    let summary = synth::generate(&cfg, &root).unwrap();
    let meta = letor::read_meta(&root).unwrap().unwrap();
    assert_eq!(meta.categorical.len(), 6);
    let mut owner: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, name) in SPLIT_FILES.iter().enumerate() {
        let (ds, _) = letor::read_file(&root.join(name), &meta.categorical).unwrap();
        assert_eq!(ds.rows(), summary.rows[i]);
        assert_eq!(ds.groups.len(), summary.queries[i]);
        // Queries keep their 10..=20 candidates together.
        for g in &ds.groups {
            assert!((10..=20).contains(&g.len()), "{g:?}");
        }
        let qids: BTreeSet<u64> = ds.qids.iter().copied().collect();
        for q in qids {
            assert!(owner.insert(q, i).is_none(), "qid {q} is in two splits");
        }
    }
    // Every query is somewhere; valid and test have about 10% each.
    assert_eq!(owner.len(), cfg.queries);
    assert_eq!(*owner.keys().next().unwrap(), 1);
    assert_eq!(*owner.keys().last().unwrap(), cfg.queries as u64);
    assert_eq!(summary.queries[1], 15);
    assert_eq!(summary.queries[2], 15);
    // Labels are clicks, with some clicks and many non-clicks.
    let total: usize = summary.rows.iter().sum();
    let clicks: usize = summary.clicks.iter().sum();
    assert!(
        clicks > total / 50 && clicks < total / 2,
        "{clicks} of {total}"
    );
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn finds_split_files_by_convention() {
    let root = common::temp_dir("find");
    let line = "1 qid:1 1:0.5\n0 qid:1 1:0.1\n";
    // Yahoo!-style names.
    for f in [
        "set1.train.txt",
        "set1.valid.txt",
        "set1.test.txt",
        "README.md",
    ] {
        std::fs::write(root.join(f), line).unwrap();
    }
    let s = letor::find_splits(&root).unwrap();
    assert!(s.train.ends_with("set1.train.txt"));
    assert!(s.valid.ends_with("set1.valid.txt"));
    assert!(s.test.unwrap().ends_with("set1.test.txt"));
    // MSLR-style names win over fuzzy matches; test is optional.
    let mslr = root.join("mslr");
    std::fs::create_dir_all(&mslr).unwrap();
    std::fs::write(mslr.join("train.txt"), line).unwrap();
    std::fs::write(mslr.join("vali.txt"), line).unwrap();
    let s = letor::find_splits(&mslr).unwrap();
    assert!(s.valid.ends_with("vali.txt") && s.test.is_none());
    let err = letor::find_splits(&root.join("missing")).unwrap_err();
    assert!(err.to_string().contains("does not exist"));
    let _ = std::fs::remove_dir_all(root);
}
