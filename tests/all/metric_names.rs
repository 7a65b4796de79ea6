//! Metric names as trainers and trackers write them (issue 20): `ndcg@10`,
//! `val/loss`, `eval-auc`, `top1.acc`, from JSON lines and, through a
//! group mapping, from a regex over the job's output.

use crate::campaign::{Project, text};

/// A campaign over one knob whose job (`job.sh`) reports `ndcg@10` (best
/// at x = 0.7), `test/ndcg@10` and `train-loss.max`.
fn campaign(metrics: &str) -> String {
    format!(
        r#"[campaign]
name = "names"
[objective]
metric = "ndcg@10"
direction = "maximize"
holdout = "test/ndcg@10"
guards = [{{ metric = "train-loss.max", max = 5.0 }}]
[job]
command = ["sh", "job.sh"]
time_limit = "20s"
{metrics}
[knobs]
x = {{ kind = "float", low = 0.0, high = 1.0, baseline = 0.2 }}
[budget]
cpu_hours = 1.0
max_trials = 12
max_parallel = 2
baseline_replicates = 2
confirm_replicates = 1
"#
    )
}

const SCORE: &str =
    "s=$(awk -v x=$REAGENT_KNOB_X 'BEGIN { printf(\"%.4f\", 0.9 - (x - 0.7) * (x - 0.7)) }')\n";

#[test]
fn metric_names_with_at_slash_dash_and_dot_work_from_json_lines_and_a_regex() {
    // JSON lines.
    let jsonl = format!(
        "{SCORE}echo \"{{\\\"ndcg@10\\\": $s, \\\"test/ndcg@10\\\": $s, \\\"train-loss.max\\\": 1}}\" > \"$REAGENT_METRICS\"\n"
    );
    let p = Project::new(|t| t);
    std::fs::write(p.path("job.sh"), &jsonl).unwrap();
    std::fs::write(p.path("names.toml"), campaign("")).unwrap();
    let o = p.reagent(&["run", "names.toml", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let r = p.json(&["report", "1", "--format", "json"]);
    assert_eq!(r["state"], "finished", "{r}");
    assert_eq!(r["objective"]["metric"], "ndcg@10", "{r}");
    assert_eq!(r["holdout"]["metric"], "test/ndcg@10", "{r}");
    assert!(r["effect"]["estimate"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["holdout"]["best_mean"].as_f64().is_some(), "{r}");

    // A regex: groups cannot hold `@`, so the file maps them.
    let printed = format!("{SCORE}echo \"eval ndcg@10 = $s test = $s loss = 1\"\n");
    let metrics = r#"metrics = { regex = 'eval ndcg@10 = (?P<ndcg>[0-9.]+) test = (?P<test>[0-9.]+) loss = (?P<loss>[0-9.]+)', names = { ndcg = "ndcg@10", test = "test/ndcg@10", loss = "train-loss.max" } }"#;
    let p = Project::new(|t| t);
    std::fs::write(p.path("job.sh"), &printed).unwrap();
    std::fs::write(p.path("names.toml"), campaign(metrics)).unwrap();
    let o = p.reagent(&["run", "names.toml", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let r = p.json(&["report", "1", "--format", "json"]);
    assert_eq!(r["state"], "finished", "{r}");
    assert!(r["effect"]["estimate"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["holdout"]["best_mean"].as_f64().is_some(), "{r}");

    // What is still refused, with its place: markup, a control character,
    // a group the regex does not have.
    for (bad, said) in [
        (
            campaign("").replace(r#"metric = "ndcg@10""#, r#"metric = "ndcg<10>""#),
            "'<' is not allowed",
        ),
        (
            campaign("").replace(
                r#"holdout = "test/ndcg@10""#,
                r#"holdout = "test\u001b[31m""#,
            ),
            "is not allowed",
        ),
        (
            campaign(&metrics.replace("ndcg = ", "nope = ")),
            "the regex has no group `nope`",
        ),
    ] {
        std::fs::write(p.path("bad.toml"), bad).unwrap();
        let o = p.reagent(&["plan", "bad.toml"]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{out}");
        assert!(out.contains(said) && out.contains("bad.toml:"), "{out}");
    }
}
