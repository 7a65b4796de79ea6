//! The `train` command as a job: metrics file, failures, knobs from the
//! environment, public-format data.

mod common;

use serde_json::Value;

const METRICS: [&str; 13] = [
    "epoch",
    "train_loss",
    "valid_ne",
    "valid_auc",
    "valid_ndcg",
    "valid_logloss",
    "valid_ne_stderr",
    "valid_ndcg_stderr",
    "test_ne",
    "test_auc",
    "test_ndcg",
    "test_logloss",
    "train_seconds",
];

#[test]
fn json_lines_one_per_epoch_then_a_final_line() {
    let data = common::tiny_data("jsonl");
    let metrics = data.parent().unwrap().join("metrics.jsonl");
    // Appends: an earlier line stays.
    std::fs::write(&metrics, "{\"step\": 0, \"note\": 1}\n").unwrap();
    let mut c = common::ranker();
    c.args(["train", "--epochs", "3", "--seed", "5"])
        .arg("--data")
        .arg(&data);
    c.env("REAGENT_METRICS", &metrics);
    let (out, stdout, stderr) = common::run(c);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines = common::metrics_lines(&metrics);
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0]["step"], 0);
    for (k, line) in lines[1..4].iter().enumerate() {
        assert_eq!(line["epoch"], (k + 1) as u64);
        for m in METRICS {
            assert!(line[m].is_number(), "{m} missing in {line:?}");
        }
        let ne = line["valid_ne"].as_f64().unwrap();
        assert!(ne > 0.5 && ne < 1.5, "{ne}");
        let auc = line["valid_auc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&auc));
        assert!(line["valid_ndcg_stderr"].as_f64().unwrap() > 0.0);
    }
    let last = &lines[4];
    assert_eq!(last["final"], Value::Bool(true));
    assert_eq!(last["epoch"], 3);
    for m in METRICS.iter().filter(|m| **m != "train_seconds") {
        assert_eq!(last[*m], lines[3][*m], "{m}");
    }
    assert!(last["wall_seconds"].is_number() && last["num_params"].is_number());
    // One human-readable line per epoch on stdout, naming NDCG@10.
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("epoch ")).count(),
        3
    );
    assert!(stdout.contains("ndcg@10"), "{stdout}");
    let _ = std::fs::remove_dir_all(data.parent().unwrap());
}

#[test]
fn huge_learning_rate_diverges() {
    let data = common::tiny_data("diverge");
    let metrics = data.parent().unwrap().join("metrics.jsonl");
    let mut c = common::ranker();
    // Default model and optimizer (one cross layer, SGD with momentum);
    // small batches so the tiny data set gives enough steps.
    c.args(["train", "--lr", "5", "--batch-size", "32"])
        .arg("--data")
        .arg(&data);
    c.env("REAGENT_METRICS", &metrics);
    let (out, stdout, stderr) = common::run(c);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("error: loss exploded ("), "{stderr}");
    assert!(stderr.contains(") at step "), "{stderr}");
    let lines = common::metrics_lines(&metrics);
    let last = lines.last().unwrap();
    assert_eq!(last["epoch"], 1);
    assert!(last.contains_key("train_loss"));
    let _ = std::fs::remove_dir_all(data.parent().unwrap());
}

#[test]
fn memory_limit_aborts_before_training() {
    let data = common::tiny_data("oom");
    let metrics = data.parent().unwrap().join("metrics.jsonl");
    let mut c = common::ranker();
    c.args([
        "train",
        "--memory-limit-mb",
        "64",
        "--hash-buckets",
        "10000000",
    ]);
    c.args(["--embedding-dim", "16", "--batch-size", "512"]);
    c.arg("--data").arg(&data);
    c.env("REAGENT_METRICS", &metrics);
    let (out, stdout, stderr) = common::run(c);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // 10M x 16 table floats x 4 B x (value, gradient, temporary, momentum)
    // = 2441.4 MiB; with the cross layer, head and activations 2443.3 MiB.
    assert!(
        stderr.contains(
            "RuntimeError: out of memory: the model needs 2444 MiB but the limit is 64 MiB (batch size 512)"
        ),
        "{stderr}"
    );
    assert!(!metrics.exists(), "no training, no metrics");
    assert!(!stdout.contains("epoch "), "{stdout}");
    // Under the limit it trains.
    let mut c = common::ranker();
    c.args(["train", "--memory-limit-mb", "64", "--epochs", "1"]);
    c.arg("--data").arg(&data);
    let (out, _, stderr) = common::run(c);
    assert!(out.status.success(), "{stderr}");
    let _ = std::fs::remove_dir_all(data.parent().unwrap());
}

#[test]
fn injected_flake_fails_like_an_infrastructure_error() {
    let data = common::tiny_data("flake");
    let mut c = common::ranker();
    c.args(["train", "--epochs", "1"]).arg("--data").arg(&data);
    c.env("REAGENT_RANKER_FLAKE", "always");
    let t0 = std::time::Instant::now();
    let (out, _, stderr) = common::run(c);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("NCCL error: unhandled system error (connection reset by peer)"),
        "{stderr}"
    );
    assert!(t0.elapsed().as_millis() >= 200, "fails after a short time");
    // p = 0 never flakes; a probability flakes for some trials and not others.
    let mut c = common::ranker();
    c.args(["train", "--epochs", "1"]).arg("--data").arg(&data);
    c.env("REAGENT_RANKER_FLAKE", "0");
    assert!(common::run(c).0.status.success());
    let flaked: Vec<bool> = (1..=8)
        .map(|trial| reagent_ranker::train::flake_draw(0.5, 1, Some(&trial.to_string())).is_some())
        .collect();
    assert!(
        flaked.contains(&true) && flaked.contains(&false),
        "{flaked:?}"
    );
    let _ = std::fs::remove_dir_all(data.parent().unwrap());
}

#[test]
fn knobs_from_the_environment_and_flags_win() {
    let data = common::tiny_data("knobs");
    let metrics = data.parent().unwrap().join("metrics.jsonl");
    let mut c = common::ranker();
    c.args(["train", "--epochs", "2"]).arg("--data").arg(&data);
    c.env("REAGENT_KNOB_EPOCHS", "1"); // the flag wins
    c.env("REAGENT_KNOB_HIDDEN", "8");
    c.env("REAGENT_KNOB_OPTIMIZER", "adagrad");
    c.env("REAGENT_KNOB_LR", "0.05");
    c.env("REAGENT_METRICS", &metrics);
    let (out, stdout, stderr) = common::run(c);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines = common::metrics_lines(&metrics);
    assert_eq!(lines.len(), 3);
    // 60 inputs -> 8 hidden -> head, plus 1 cross layer and the table.
    let params = lines[2]["num_params"].as_u64().unwrap();
    assert_eq!(params, 100_000 * 8 + (60 * 60 + 60) + (60 * 8 + 8) + 9);
    let _ = std::fs::remove_dir_all(data.parent().unwrap());
}

#[test]
fn trains_on_public_style_letor_files() {
    // MSLR-like: graded labels, no meta.json (all features dense, one of them
    // heavy-tailed), comments, a missing feature.
    let root = common::temp_dir("public");
    let mut text = String::new();
    for q in 1..=30 {
        for d in 0..8 {
            let label = (q * 7 + d * 3) % 5;
            let f1 = label as f64 + (d as f64) * 0.1;
            let f2 = (label * 1000 + d * 17) as f64;
            if d == 3 {
                text += &format!("{label} qid:{q} 1:{f1} # doc {d}\n");
            } else {
                text += &format!("{label} qid:{q} 1:{f1} 2:{f2} 3:0.5 # doc {d}\n");
            }
        }
    }
    for f in ["train.txt", "vali.txt", "test.txt"] {
        std::fs::write(root.join(f), &text).unwrap();
    }
    for loss in ["pointwise", "pairwise", "listwise"] {
        let metrics = root.join(format!("{loss}.jsonl"));
        let mut c = common::ranker();
        c.args([
            "train",
            "--epochs",
            "3",
            "--batch-size",
            "32",
            "--loss",
            loss,
        ]);
        c.args(["--optimizer", "adam", "--lr", "0.05", "--cross-layers", "0"]);
        c.arg("--data").arg(&root);
        c.env("REAGENT_METRICS", &metrics);
        let (out, stdout, stderr) = common::run(c);
        assert!(out.status.success(), "{loss}: {stdout}\n{stderr}");
        assert!(stdout.contains("0 categorical fields, 3 dense"), "{stdout}");
        let lines = common::metrics_lines(&metrics);
        let ndcg = lines.last().unwrap()["valid_ndcg"].as_f64().unwrap();
        // Feature 1 orders the documents by label: the model finds it.
        assert!(ndcg > 0.9, "{loss}: ndcg {ndcg}");
    }
    // A malformed line fails the job and names the line.
    std::fs::write(root.join("vali.txt"), "1 qid:1 1:0.5\n2 qid:1 x:1\n").unwrap();
    let mut c = common::ranker();
    c.arg("train").arg("--data").arg(&root);
    let (out, _, stderr) = common::run(c);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("vali.txt:2"), "{stderr}");
    let _ = std::fs::remove_dir_all(root);
}
