//! Campaigns that cannot work stop early and say why (issue 18), as a new
//! user meets them: a metric name the job never reports, a typo in the
//! script's name, a baseline the debugger would like to change.

use crate::campaign::{Project, text};

fn trials(p: &Project) -> Vec<serde_json::Value> {
    p.json(&["trials", "1", "--json"])
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_metric_the_job_never_reports_halts_after_the_baseline_and_names_the_right_one() {
    // Before the gate this campaign ran every one of its 24 trials, raised
    // an escalation per failure and then waited at confirm for answers.
    let p = Project::new(|t| t.replace("metric = \"valid_loss\"", "metric = \"val_loss\""));
    let o = p.reagent(&["run", "toy.toml", "--yes"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "a halted run exits 1: {out}");
    assert!(
        out.contains("halted: the baseline never produced `val_loss`"),
        "{out}"
    );
    assert!(out.contains("did you mean `valid_loss`?"), "{out}");
    assert!(
        out.contains(".reagent/jobs/c1-t1-"),
        "names a job folder: {out}"
    );
    assert!(
        !out.contains("Nothing beat the baseline") && !out.contains("Keep the current"),
        "the final words say how it ended: {out}"
    );
    // Nothing beyond the three baseline runs was launched.
    let all = trials(&p);
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all.iter().all(|t| t["hypothesis"] == 0), "{all:?}");
    // No request is left waiting for a human.
    let pending = p.json(&["approvals", "--json"]);
    assert_eq!(pending.as_array().unwrap().len(), 0, "{pending}");
    let r = p.json(&["report", "1", "--format", "json"]);
    assert_eq!(r["state"], "halted", "{r}");
    let verdict = r["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("The campaign halted in validate"),
        "{verdict}"
    );
}

#[test]
fn a_typo_in_the_script_name_halts_quoting_stderr_and_the_debugger_quotes_it_too() {
    let p = Project::new(|t| t.replace("\"toy.sh\"", "\"tyo.sh\""));
    let o = p.reagent(&["run", "toy.toml", "--yes"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("all 3 run(s) exited with code 2"), "{out}");
    assert!(out.contains("tyo.sh"), "quotes what the shell said: {out}");
    assert_eq!(trials(&p).len(), 3);
    // The diagnosis quotes the line too (it used to say "exit code 2 and
    // nothing else to explain it").
    let r = p.json(&["report", "1", "--format", "json"]);
    let rationale = r["failures"][0]["rationale"].as_str().unwrap();
    assert!(rationale.contains("tyo.sh"), "{rationale}");
}

#[test]
fn a_baseline_is_retried_unchanged_when_the_debugger_asks_for_a_change() {
    // The runbook answers out-of-memory with "retry with a smaller
    // batch_size"; for a baseline run that would measure another
    // configuration under the baseline's name.
    let p = Project::new(|t| {
        t.replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { FAIL_T1 = \"oom\" }",
        )
        .replace("max_trials = 24", "max_trials = 12")
    });
    let o = p.reagent(&["run", "toy.toml", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let all = trials(&p);
    let t1 = all.iter().find(|t| t["id"] == 1).unwrap();
    assert_eq!(t1["failure"], "out-of-memory", "{t1}");
    let action = t1["action"].as_str().unwrap();
    assert!(action.contains("unchanged"), "{action}");
    let retry = all
        .iter()
        .find(|t| t["retry_of"] == 1)
        .unwrap_or_else(|| panic!("no retry of trial 1: {all:?}"));
    assert_eq!(retry["hypothesis"], 0, "{retry}");
    assert_eq!(retry["status"], "succeeded", "{retry}");
    assert_eq!(
        retry["assignments"], t1["assignments"],
        "the baseline's configuration"
    );
}

#[test]
fn plan_smoke_runs_the_baseline_once_and_registers_only_when_the_metric_arrives() {
    let p = Project::new(|t| t.replace("metric = \"valid_loss\"", "metric = \"val_loss\""));
    let o = p.reagent(&["plan", "toy.toml", "--smoke"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("smoke run failed"), "{out}");
    assert!(out.contains("did you mean `valid_loss`?"), "{out}");
    assert!(out.contains("Nothing was registered"), "{out}");
    let status = p.json(&["status", "--json"]);
    assert_eq!(status.as_array().map(Vec::len), Some(0), "{status}");

    std::fs::write(
        p.path("toy.toml"),
        std::fs::read_to_string(p.path("toy.toml"))
            .unwrap()
            .replace("metric = \"val_loss\"", "metric = \"valid_loss\""),
    )
    .unwrap();
    let o = p.reagent(&["plan", "toy.toml", "--smoke"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("the baseline reported `valid_loss` = "),
        "{out}"
    );
    let status = p.json(&["status", "--json"]);
    assert_eq!(status.as_array().map(Vec::len), Some(1), "{status}");
}

#[test]
fn plan_warns_of_a_missing_script_and_a_second_plan_of_one_file_and_dry_run_registers_nothing() {
    let p = Project::new(|t| t.replace("\"toy.sh\"", "\"tyo.sh\""));
    let o = p.reagent(&["plan", "toy.toml", "--dry-run"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("`tyo.sh` (argument 1 of [job] command) is not a file"),
        "{out}"
    );
    assert!(out.contains("did you mean `toy.sh`?"), "{out}");
    assert!(out.contains("dry run: nothing was registered"), "{out}");
    let status = p.json(&["status", "--json"]);
    assert_eq!(status.as_array().map(Vec::len), Some(0), "{status}");

    let p = Project::new(|t| t);
    assert!(p.reagent(&["plan", "toy.toml"]).status.success());
    let out = text(&p.reagent(&["plan", "toy.toml"]));
    assert!(
        out.contains("campaign 1 was planned from this same file"),
        "{out}"
    );
    // `run FILE --yes` starts the campaign: it does not tell the user to.
    let p = Project::new(|t| t.replace("max_trials = 24", "max_trials = 8"));
    let out = text(&p.reagent(&["run", "toy.toml", "--yes"]));
    assert!(out.contains("; starting it"), "{out}");
    assert!(!out.contains("start it with"), "{out}");
}

#[test]
fn a_cancelled_campaign_says_it_was_cancelled_and_proposes_nothing() {
    // Before: "Nothing beat the baseline… Keep the current configuration."
    let p = Project::new(|t| {
        t.replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { TOY_SLEEP = \"2\" }",
        )
    });
    let o = p.reagent(&["run", "toy.toml", "--yes", "--detach"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = p.reagent(&["cancel", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let r = p.json(&["report", "1", "--format", "json"]);
    assert_eq!(r["state"], "cancelled", "{r}");
    let verdict = r["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("The campaign was cancelled in validate. It makes no proposal."),
        "{verdict}"
    );
    assert!(!verdict.contains("Keep the current"), "{verdict}");
}
