//! Governance through the real binary: plan approval, guardrail requests
//! (out-of-space values, escalations, budget increases), expiry, the
//! policy, self-approval, and bad input. The model-based property test is
//! in `governance_model.rs`.

use std::time::{Duration, Instant};

use crate::campaign::{Project, text};

fn requests(p: &Project, all: bool) -> Vec<serde_json::Value> {
    let mut args = vec!["approvals", "--json"];
    if all {
        args.push("--all");
    }
    p.json(&args).as_array().unwrap().clone()
}

fn event_count(p: &Project) -> usize {
    let o = p.reagent(&["audit", "export"]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.contains("\"hash\""))
        .count()
}

/// Waits until a pending request of `kind` appears; returns it.
fn wait_for_request(p: &Project, kind: &str, limit: Duration) -> serde_json::Value {
    let start = Instant::now();
    loop {
        if let Some(r) = requests(p, false).into_iter().find(|r| r["kind"] == kind) {
            return r;
        }
        assert!(
            start.elapsed() < limit,
            "no pending {kind} request after {limit:?}; status: {}",
            text(&p.reagent(&["status", "1"]))
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn small(t: String) -> String {
    t.replace("max_trials = 24", "max_trials = 12")
}

#[test]
fn a_plan_waits_for_approval_and_the_campaign_then_runs_to_the_end() {
    let p = Project::new(small);
    let o = p.reagent(&["plan", "toy.toml"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    // The preflight checklist: strategies with sha256, world, imports,
    // grants and limits; backend; command; knob space; budget split.
    for needle in [
        "preflight checklist:",
        "generator builtin:three-phase: generator world, sha256 ",
        "debugger  builtin:runbook: debugger world, sha256 ",
        "imports reagent:strategy/",
        "limits per call: fuel",
        "backend   local",
        "command   sh toy.sh {lr}",
        "knob space",
        "[0.001, 1]",
        "{sgd, adam}",
        "budget split and cost estimate",
        "awaiting approval (request 1",
    ] {
        assert!(out.contains(needle), "plan output lacks {needle:?}:\n{out}");
    }

    let pending = requests(&p, false);
    assert_eq!(pending.len(), 1, "{pending:?}");
    let r = &pending[0];
    for key in ["id", "campaign", "kind", "state", "created", "payload_hash"] {
        assert!(r.get(key).is_some(), "approvals --json lacks {key}: {r}");
    }
    assert_eq!(
        (&r["kind"], &r["state"], &r["campaign"]),
        (
            &serde_json::json!("plan"),
            &serde_json::json!("pending"),
            &serde_json::json!(1)
        )
    );
    assert_eq!(r["payload_hash"].as_str().unwrap().len(), 64);
    assert_eq!(r["payload"]["budget"]["max_trials"], 12, "{r}");

    // Nothing runs before the approval.
    let o = p.reagent(&["run", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("awaits approval"), "{}", text(&o));
    assert!(
        p.json(&["trials", "1", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Approve only what was reviewed: a wrong hash is refused.
    let o = p.reagent(&["approve", "1", "--hash", "00000000"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("not the 00000000 you reviewed"),
        "{}",
        text(&o)
    );
    let hash = r["payload_hash"].as_str().unwrap();
    let o = p.reagent(&[
        "approve",
        "1",
        "--note",
        "looks fine",
        "--hash",
        &hash[..12],
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("approved by"), "{}", text(&o));

    // Approving twice is refused and changes nothing.
    let before = event_count(&p);
    let o = p.reagent(&["approve", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("already approved"), "{}", text(&o));
    assert_eq!(event_count(&p), before, "a refused decision writes nothing");

    let o = p.reagent(&["run", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = p.json(&["status", "1", "--json"]);
    assert_eq!(s["state"], "finished", "{s}");
    let all = requests(&p, true);
    assert_eq!(all[0]["state"], "approved");
    assert_eq!(all[0]["note"], "looks fine");
    assert_eq!(all[0]["payload_hash"], hash, "bound to what was requested");
}

#[test]
fn a_rejected_plan_cancels_the_campaign_and_launches_nothing() {
    let p = Project::new(small);
    assert!(p.reagent(&["plan", "toy.toml"]).status.success());
    // A reason is required.
    let o = p.reagent(&["reject", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = p.reagent(&["reject", "1", "--reason", "too expensive"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = p.json(&["status", "1", "--json"]);
    assert_eq!(s["state"], "cancelled", "{s}");
    assert!(s["note"].as_str().unwrap().contains("too expensive"), "{s}");
    // Approving a rejected request is refused; nothing ran.
    let o = p.reagent(&["approve", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("already rejected"), "{}", text(&o));
    let o = p.reagent(&["run", "1"]);
    assert!(!o.status.success());
    assert!(
        p.json(&["trials", "1", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn an_expired_request_is_denied_and_unknown_ids_are_named() {
    let p = Project::new(|t| small(t) + "\n[policy]\napproval_expiry = \"1s\"\n");
    assert!(p.reagent(&["plan", "toy.toml"]).status.success());
    std::thread::sleep(Duration::from_millis(1300));
    let o = p.reagent(&["approve", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("expired"), "{}", text(&o));
    let all = requests(&p, true);
    assert_eq!(all[0]["state"], "expired", "{all:?}");
    assert_eq!(p.json(&["status", "1", "--json"])["state"], "cancelled");
    assert!(
        p.json(&["trials", "1", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );

    let o = p.reagent(&["approve", "99"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("no approval request 99"), "{}", text(&o));
}

#[test]
fn the_agent_cannot_approve_its_own_request() {
    let p = Project::new(small);
    assert!(p.reagent(&["plan", "toy.toml"]).status.success());
    // A process inside a job the agent launched carries REAGENT_TRIAL.
    let o = p
        .command(&["approve", "1"])
        .env("REAGENT_TRIAL", "7")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("the agent cannot decide its own requests"),
        "{}",
        text(&o)
    );
    assert_eq!(requests(&p, false)[0]["state"], "pending");
    assert_eq!(
        p.json(&["status", "1", "--json"])["state"],
        "awaiting-approval"
    );
}

#[test]
fn the_policy_auto_approves_small_plans_and_can_refuse_an_operator() {
    let p = Project::new(small);
    std::fs::write(
        p.path(".reagent/policy.cedar"),
        r#"
@id("auto-small")
permit (principal == Reagent::Auto::"policy", action == Reagent::Action::"approve", resource)
when { resource.kind == "plan" && resource.cpu_minutes <= 60 && resource.gpu_minutes == 0 };

@id("operators")
permit (principal is Reagent::User, action == Reagent::Action::"approve", resource);

@id("big-plans-need-a-lead")
forbid (principal is Reagent::User, action, resource)
when { resource.kind == "plan" && resource.cpu_minutes > 600 && principal.name != "lead" };
"#,
    )
    .unwrap();
    // 1 CPU-hour = 60 minutes: approved by the policy itself.
    let o = p.reagent(&["plan", "toy.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    let r = &requests(&p, true)[0];
    assert_eq!(r["state"], "approved", "{r}");
    assert_eq!(r["decided_by"], "policy", "{r}");
    assert!(r["note"].as_str().unwrap().contains("auto-small"), "{r}");
    assert_eq!(p.json(&["status", "1", "--json"])["state"], "running");

    // 20 CPU-hours: --yes is refused by the forbid; the campaign waits.
    std::fs::write(
        p.path("big.toml"),
        std::fs::read_to_string(p.path("toy.toml"))
            .unwrap()
            .replace("cpu_hours = 1.0", "cpu_hours = 20.0"),
    )
    .unwrap();
    // Who decides is the OS user of the real uid, never `$USER`: saying
    // `USER=lead` does not make this process the lead (on the old code it
    // did, and the plan ran "approved by lead").
    let o = p
        .command(&["plan", "big.toml", "--yes"])
        .env("USER", "lead")
        .env("LOGNAME", "lead")
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("big-plans-need-a-lead"), "{}", text(&o));
    assert_eq!(
        p.json(&["status", "2", "--json"])["state"],
        "awaiting-approval"
    );
    let o = p
        .command(&["approve", "2"])
        .env("USER", "lead")
        .env("LOGNAME", "lead")
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("big-plans-need-a-lead"), "{}", text(&o));
    assert_eq!(requests(&p, false).len(), 1, "still pending");
    // The policy names this process's real user as the lead: approved, by
    // that name, whatever the environment says.
    let me = reagent::governance::os_user();
    let policy = std::fs::read_to_string(p.path(".reagent/policy.cedar")).unwrap();
    std::fs::write(
        p.path(".reagent/policy.cedar"),
        policy.replace("\"lead\"", &format!("{me:?}")),
    )
    .unwrap();
    let o = p
        .command(&["approve", "2"])
        .env("USER", "intern")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(p.json(&["status", "2", "--json"])["state"], "running");
    let decided = requests(&p, true);
    let plan2 = decided.iter().find(|r| r["campaign"] == 2).unwrap();
    assert_eq!(plan2["decided_by"], me.as_str(), "{plan2}");

    // `policy check` shows decisions on sample requests.
    let o = p.reagent(&["policy", "check"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("auto-approved yes"), "{}", text(&o));
}

#[test]
fn a_malformed_policy_is_located_and_nothing_is_registered() {
    let p = Project::new(small);
    std::fs::write(
        p.path(".reagent/policy.cedar"),
        "// line 1\npermit (principal, action, resource)\nwhen { resource.cpu_minuts <= 10 };\n",
    )
    .unwrap();
    let o = p.reagent(&["plan", "toy.toml", "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("policy.cedar:3:"), "{}", text(&o));
    assert!(text(&o).contains("cpu_minuts"), "{}", text(&o));
    let s = p.json(&["status", "--json"]);
    assert!(s.as_array().unwrap().is_empty(), "nothing registered: {s}");
    let o = p.reagent(&["policy", "check"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("policy.cedar:3:"), "{}", text(&o));
    // A campaign file cannot approve itself.
    std::fs::remove_file(p.path(".reagent/policy.cedar")).unwrap();
    std::fs::write(
        p.path("self.toml"),
        std::fs::read_to_string(p.path("toy.toml")).unwrap()
            + "\n[policy]\nauto_approve_cpu_hours = 5.0\n",
    )
    .unwrap();
    let o = p.reagent(&["plan", "self.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("self.toml:"), "{}", text(&o));
    assert!(text(&o).contains("cannot approve itself"), "{}", text(&o));
}

#[test]
fn knob_values_outside_the_space_wait_for_a_human_and_run_when_approved() {
    // This guest proposes lr = 1e9 (the space is [0.001, 1]) for a
    // campaign named "out-of-range".
    let generator = reagent::sandbox::test_guests::INVALID_HYPOTHESES;
    let p = Project::new(|t| {
        small(t).replace("name = \"toy\"", "name = \"out-of-range\"")
            + &format!("\n[strategies]\ngenerator = \"{generator}\"\n")
    });
    let o = p.reagent(&["run", "toy.toml", "--yes", "--detach"]);
    assert!(o.status.success(), "{}", text(&o));
    let r = wait_for_request(&p, "out-of-space", Duration::from_secs(60));
    assert!(
        r["summary"]
            .as_str()
            .unwrap()
            .contains("outside [0.001, 1]"),
        "{r}"
    );
    assert_eq!(r["payload"]["changes"]["lr"], 1e9, "{r}");
    // Only that branch waits: the baseline ran, the campaign is not done.
    let s = p.json(&["status", "1", "--json"]);
    assert_eq!(s["state"], "running", "{s}");
    assert!(s["trials"]["succeeded"].as_u64().unwrap() >= 3, "{s}");
    assert_eq!(s["pending_approvals"].as_array().unwrap().len(), 1, "{s}");

    let id = r["id"].to_string();
    let o = p.reagent(&["approve", &id, "--note", "try it"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = p.wait_finished("1", Duration::from_secs(90));
    assert_eq!(s["state"], "finished", "{s}");
    let trials = p.json(&["trials", "1", "--json"]);
    let ran = trials
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["assignments"]["lr"] == 1e9)
        .unwrap_or_else(|| panic!("the approved value never ran: {trials}"));
    assert_eq!(ran["status"], "succeeded", "{ran}");
}

#[test]
fn hostile_titles_and_values_reach_people_escaped_and_code_values_are_refused() {
    // The job command pastes {optimizer} into `sh -c` code. The guest
    // proposes a title that fakes an "approved … nothing pending" row with
    // a newline and reverses text with U+202E, the optimizer value
    // `adam<80 spaces>'; touch PWNED; echo '` (on the old code the summary
    // cut it at 60 characters, a person approved "adam   …", and the job
    // ran `touch PWNED`), and an inert out-of-space value, `rmsprop`.
    let generator = reagent::sandbox::test_guests::HOSTILE_TEXT;
    let p = Project::new(|t| {
        t.replace(
            r#"command = ["sh", "toy.sh", "{lr}", "{optimizer}", "{layers}", "{batch_size}", "{seed}"]"#,
            r#"command = ["sh", "-c", "sh toy.sh {lr} '{optimizer}' {layers} {batch_size} {seed}"]"#,
        ) + &format!("\n[strategies]\ngenerator = \"{generator}\"\n")
    });
    let o = p.reagent(&["plan", "toy.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("warning   {lr}, {optimizer}, {layers}, {batch_size} pasted into shell"),
        "plan warns that knobs are pasted into code: {}",
        text(&o)
    );
    let o = p.reagent(&["run", "1", "--yes", "--detach"]);
    assert!(o.status.success(), "{}", text(&o));
    let r = wait_for_request(&p, "out-of-space", Duration::from_secs(60));
    assert_eq!(r["payload"]["changes"]["optimizer"], "rmsprop", "{r}");
    // The hidden command is refused outright, never put to a person.
    let all = requests(&p, true);
    assert_eq!(
        all.iter().filter(|r| r["kind"] == "out-of-space").count(),
        1,
        "{all:?}"
    );
    let log = text(&p.reagent(&["audit", "show", "--campaign", "1", "--json"]));
    assert!(
        log.contains("refused: the value of `optimizer`")
            && log.contains("would be pasted into shell"),
        "{log}"
    );
    // What people read: no raw newline or U+202E from the title, so no
    // fake row; the escapes show that they were there. (The old code
    // printed the fake row in `approvals` and `status`.)
    for args in [
        &["approvals"][..],
        &["status", "1"],
        &["trials", "1"],
        &["audit", "show"],
    ] {
        let out = text(&p.reagent(args));
        assert!(!out.contains('\u{202e}'), "{args:?}: {out}");
        assert!(
            !out.lines().any(|l| l.starts_with("   9         1  plan")),
            "{args:?} shows the fake row: {out}"
        );
    }
    let out = text(&p.reagent(&["approvals"]));
    assert!(out.contains("\"rmsprop\\n   9         1  plan"), "{out}");
    assert!(out.contains("nothing pending\\u{202e}gnp.exe\""), "{out}");
    // Approving what is pending runs the honest value; nothing else runs.
    let o = p.reagent(&["approve", &r["id"].to_string()]);
    assert!(o.status.success(), "{}", text(&o));
    let s = p.wait_finished("1", Duration::from_secs(120));
    assert_eq!(s["state"], "finished", "{s}");
    assert!(!p.path("PWNED").exists(), "the hidden command ran");
    let trials = p.json(&["trials", "1", "--json"]);
    assert!(
        trials
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["assignments"]["optimizer"] == "rmsprop"),
        "{trials}"
    );
}

#[test]
fn a_long_out_of_space_value_is_shown_whole_or_by_length_and_hash() {
    let generator = reagent::sandbox::test_guests::HOSTILE_TEXT;
    // Passed as its own argument, the padded value is inert: it waits for a
    // person, who must see all of it.
    let p = Project::new(|t| t + &format!("\n[strategies]\ngenerator = \"{generator}\"\n"));
    let o = p.reagent(&["run", "toy.toml", "--yes", "--detach"]);
    assert!(o.status.success(), "{}", text(&o));
    let start = Instant::now();
    while requests(&p, false).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{:?}",
            requests(&p, true)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = text(&p.reagent(&["approvals"]));
    // The summary cuts the value; the listing adds it whole (quoted, as it
    // is under 200 characters), payload and all.
    assert!(
        out.contains(&format!(
            "optimizer = \"adam{}'; touch PWNED; echo '\"",
            " ".repeat(80)
        )),
        "{out}"
    );
    assert!(out.contains("optimizer = \"rmsprop\""), "{out}");
}

#[test]
fn a_budget_increase_is_asked_for_and_the_live_driver_confirms_once_approved() {
    // Each trial runs ~1 s on "36 cpus": it spends 0.01 CPU-hours and
    // reserves 0.02 (2 s limit). 0.1 CPU-hours cannot hold back the four
    // confirmation runs (0.08) while measuring the baseline and exploring
    // (0.06), so the agent asks for more when it gets there.
    let p = Project::new(|t| {
        t.replace("time_limit = \"20s\"", "time_limit = \"2s\"")
            .replace(
                "resources = { cpus = 1 }",
                "resources = { cpus = 36 }\nenv = { TOY_SLEEP = \"1\" }",
            )
            .replace("cpu_hours = 1.0", "cpu_hours = 0.1")
            .replace("max_trials = 24", "max_trials = 10")
            + "\n[policy]\nask_for_budget = true\n"
    });
    assert!(p.reagent(&["plan", "toy.toml", "--yes"]).status.success());
    let driver = p
        .command(&["run", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let r = wait_for_request(&p, "budget-increase", Duration::from_secs(120));
    let more = r["payload"]["cpu_hours"].as_f64().unwrap();
    assert!(more > 0.0, "{r}");
    assert_eq!(p.json(&["status", "1", "--json"])["state"], "running");
    let o = p.reagent(&["approve", &r["id"].to_string()]);
    assert!(o.status.success(), "{}", text(&o));
    let out = driver.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let report = p.json(&["report", "1", "--format", "json"]);
    assert_eq!(report["state"], "finished", "{report}");
    assert_eq!(report["confirmed"], true, "{report}");
    let budget = report["budget"]["cpu_hours"].as_f64().unwrap();
    assert!((budget - (0.1 + more)).abs() < 1e-9, "{report}");
    assert!(report["spent"]["cpu_hours"].as_f64().unwrap() <= budget + 1e-9);
}

#[test]
fn changing_a_running_campaigns_strategies_or_budget_is_a_request() {
    let p = Project::new(small);
    assert!(p.reagent(&["plan", "toy.toml", "--yes"]).status.success());
    // Paused until both requests are decided: approving the first one wakes
    // the workspace, and a quick campaign could otherwise run to its end
    // (closing the second request) before the second `approve`.
    assert!(p.reagent(&["pause", "1"]).status.success());
    let toy = std::fs::read_to_string(p.path("toy.toml")).unwrap();
    std::fs::write(
        p.path("amended.toml"),
        toy.replace("cpu_hours = 1.0", "cpu_hours = 2.0")
            + "\n[strategies.grants]\nmemory = false\n",
    )
    .unwrap();
    let o = p.reagent(&["amend", "1", "amended.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    let pending = requests(&p, false);
    let kinds: Vec<&str> = pending
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["strategy-change", "budget-increase"], "{pending:?}");
    assert_ne!(pending[0]["requested_by"], "agent");
    assert_eq!(pending[1]["payload"]["cpu_hours"], 1.0);

    // Approved: the plan approval follows the amended plan, so the campaign
    // still launches, with the new grants and the larger budget.
    for r in &pending {
        let o = p.reagent(&["approve", &r["id"].to_string()]);
        assert!(o.status.success(), "{}", text(&o));
    }
    assert!(p.reagent(&["resume", "1"]).status.success());
    let o = p.reagent(&["run", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = p.json(&["status", "1", "--json"]);
    assert_eq!(s["state"], "finished", "{s}");
    assert_eq!(s["budget"]["cpu_hours"], 2.0, "{s}");
    let events = text(&p.reagent(&["audit", "show", "--campaign", "1"]));
    assert!(events.contains("campaign-amended"), "{events}");

    // Anything but strategies and budget is refused, naming what differs.
    assert!(p.reagent(&["plan", "toy.toml", "--yes"]).status.success());
    std::fs::write(
        p.path("knobs.toml"),
        toy.replace("high = 3, baseline = 0", "high = 4, baseline = 0"),
    )
    .unwrap();
    let o = p.reagent(&["amend", "2", "knobs.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("also changes knobs"), "{}", text(&o));
    assert!(requests(&p, false).is_empty());
}

#[test]
fn a_reader_that_goes_away_ends_a_listing_quietly() {
    // `reagent policy show | head -1`: the reader closes the pipe before
    // reagent writes; reagent ends by SIGPIPE like other tools, no panic.
    use std::os::unix::process::ExitStatusExt as _;
    let p = Project::new(small);
    let mut child = p
        .command(&["policy", "show"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(!text(&o).contains("panicked"), "{}", text(&o));
    assert_eq!(o.status.signal(), Some(libc::SIGPIPE), "{:?}", o.status);
}
