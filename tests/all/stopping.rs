//! Early stopping (`[stopping]`) end to end: a campaign whose job reports
//! a learning curve, driven by the real binary with the local backend.

use std::path::Path;

use crate::campaign::{Project, text};

const CAMPAIGN: &str = r#"
[campaign]
name = "curves"

[objective]
metric = "valid_loss"
direction = "minimize"

[job]
command = ["sh", "curve.sh", "{lr}", "{layers}", "{seed}"]
time_limit = "60s"
resources = { cpus = 1 }

[knobs]
lr = { kind = "log-float", low = 0.001, high = 1.0, baseline = 0.3 }
layers = { kind = "int", low = 0, high = 3, baseline = 0 }

[budget]
cpu_hours = 1.0
max_trials = 16
max_parallel = 2
baseline_replicates = 3
confirm_replicates = 2

[stopping]
min_steps = 3
min_trials = 3
"#;

fn project(toml: &str) -> Project {
    let p = Project::new(|t| t);
    let jobs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/jobs");
    std::fs::copy(jobs.join("curve.sh"), p.path("curve.sh")).unwrap();
    std::fs::write(p.path("curves.toml"), toml).unwrap();
    p
}

#[test]
fn losing_trials_are_stopped_never_win_and_the_stops_replay() {
    let p = project(CAMPAIGN);
    let o = p.reagent(&["run", "curves.toml", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("stopped early"), "{out}");

    let trials = p.json(&["trials", "1", "--json"]);
    let trials = trials.as_array().unwrap();
    let stopped: Vec<&serde_json::Value> =
        trials.iter().filter(|t| t["status"] == "stopped").collect();
    assert!(!stopped.is_empty(), "{trials:#?}");
    for t in &stopped {
        // The baseline and the confirmation runs are never stopped.
        assert_ne!(t["hypothesis"], 0, "{t:#}");
        assert_ne!(t["phase"], "confirm", "{t:#}");
        // Stopped between min_steps and the end of the curve, with the
        // best value it reached kept as its (lower-fidelity) result.
        let action = t["action"].as_str().unwrap_or_default();
        let step: u32 = action
            .strip_prefix("stopped at step ")
            .and_then(|r| r.split(':').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{t:#}"));
        assert!((3..10).contains(&step), "{t:#}");
        assert!(t["objective"].as_f64().is_some(), "{t:#}");
    }

    let report = p.json(&["report", "1", "--format", "json"]);
    let st = &report["stopping"];
    assert_eq!(
        st["stopped"].as_u64().unwrap() as usize,
        stopped.len(),
        "{report:#}"
    );
    assert!(st["cpu_hours_saved"].as_f64().unwrap() > 0.0, "{report:#}");
    assert_eq!(
        report["trials"]["stopped"].as_u64().unwrap() as usize,
        stopped.len()
    );
    // A stopped trial is never the winner: the winner has succeeded trials
    // and none of its trials was stopped.
    let winner = report["best"]["hypothesis"].as_u64().expect("a winner");
    assert_eq!(report["confirmed"], true, "{report:#}");
    assert!(
        trials
            .iter()
            .filter(|t| t["hypothesis"].as_u64() == Some(winner))
            .all(|t| t["status"] == "succeeded"),
        "{trials:#?}"
    );
    let md = text(&p.reagent(&["report", "1"]));
    assert!(md.contains("Early stopping on valid_loss"), "{md}");

    // Each stop decides the same from the audit log.
    let o = p.reagent(&["audit", "replay", "--campaign", "1"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let stops = out.lines().filter(|l| l.contains(" stopping ")).count();
    assert_eq!(stops, stopped.len(), "{out}");
    assert!(
        out.contains("the stopping rule stops it on the recorded inputs"),
        "{out}"
    );
}

#[test]
fn a_wrong_stopping_section_says_what_to_write() {
    let p = project(&CAMPAIGN.replace("min_steps = 3", "rule = \"hyperband\""));
    let o = p.reagent(&["plan", "curves.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("the only rule is \"median\""),
        "{}",
        text(&o)
    );
    let p = project(&CAMPAIGN.replace("min_trials = 3", "min_trails = 3"));
    let o = p.reagent(&["plan", "curves.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("min_trails"), "{}", text(&o));
}
