//! Insight records: derived when a campaign ends, exported and imported as
//! JSON lines, and served to later campaigns' generators (only those that
//! apply). Through the real binary, with the scripted toy job.

use serde_json::{Value, json};

use crate::campaign::{Project, text};
use reagent::campaign::stats;
use reagent::strategy::Direction;

fn records(p: &Project) -> Vec<Value> {
    p.json(&["insights", "list", "--json"])
        .as_array()
        .unwrap()
        .clone()
}

/// Runs `toy.toml` (edited by `edit`) to the end and checks it finished.
fn run_campaign(p: &Project, file: &str) {
    let o = p.reagent(&["run", file, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
}

/// A record without `id`, `origin` and `campaign_id`: what was learned,
/// whatever workspace holds the copy.
fn content(record: &Value) -> Value {
    let mut r = record.clone();
    for local in ["origin", "campaign_id"] {
        r.as_object_mut().unwrap().remove(local);
    }
    r
}

/// A record's change as the `changes` map `reagent trials --json` prints.
fn change_map(record: &Value) -> Value {
    let mut map = serde_json::Map::new();
    for a in record["assignments"].as_array().unwrap() {
        let (_, v) = a["value"].as_object().unwrap().iter().next().unwrap();
        map.insert(a["knob"].as_str().unwrap().to_string(), v.clone());
    }
    Value::Object(map)
}

/// The audit log's events and the index of its `insights-recorded` one.
fn recorded_event(p: &Project) -> (Vec<Value>, usize) {
    let events: Vec<Value> = text(&p.reagent(&["audit", "show", "--json"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let at = events
        .iter()
        .position(|e| e["type"] == "insights-recorded")
        .expect("an insights-recorded event");
    (events, at)
}

#[test]
fn a_campaign_that_ends_records_each_change_it_ran_with_effect_and_ci_from_its_trials() {
    let p = Project::new(|t| t.replace("max_trials = 24", "max_trials = 12"));
    assert!(
        text(&p.reagent(&["insights", "list"])).contains("no insight records"),
        "an empty workspace says how records appear"
    );
    run_campaign(&p, "toy.toml");
    let recs = records(&p);
    let trials = p.json(&["trials", "1", "--json"]);
    let trials = trials.as_array().unwrap();

    // One record per hypothesis other than the baseline that ran.
    let mut ran: Vec<u64> = trials
        .iter()
        .filter(|t| {
            t["hypothesis"] != 0 && matches!(t["status"].as_str(), Some("succeeded" | "failed"))
        })
        .map(|t| t["hypothesis"].as_u64().unwrap())
        .collect();
    ran.sort_unstable();
    ran.dedup();
    assert!(recs.len() >= 3, "{recs:?}");
    assert_eq!(recs.len(), ran.len(), "{recs:#?}");

    let objective = |t: &Value| t["metrics"]["valid_loss"].as_f64().unwrap();
    let values = |changes: &Value, confirm: bool| -> Vec<f64> {
        trials
            .iter()
            .filter(|t| &t["changes"] == changes && t["status"] == "succeeded")
            .filter(|t| (t["phase"] == "confirm") == confirm)
            .map(objective)
            .collect()
    };
    let mut better = 0;
    let mut worse = 0;
    for r in &recs {
        assert_eq!(r["campaign"], "toy", "{r}");
        assert_eq!(r["campaign_id"], 1, "{r}");
        assert_eq!(r["origin"], "recorded", "{r}");
        assert_eq!(r["tags"], json!(["test"]), "{r}");
        assert_eq!(r["metric"], "valid_loss", "{r}");
        assert_eq!(r["direction"], "Minimize", "{r}");
        assert_eq!(r["id"].as_str().unwrap().len(), 16, "{r}");
        assert!(r["failure"].is_null(), "the toy job never fails: {r}");
        let changes = change_map(r);
        // The baseline values of exactly the changed knobs.
        let knobs: Vec<&Value> = r["assignments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["knob"])
            .collect();
        let base_knobs: Vec<&Value> = r["baseline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["knob"])
            .collect();
        assert_eq!(knobs, base_knobs, "{r}");
        // The arms the effect compares, from the stored trials.
        let confirmed = r["confirmed"].as_bool().unwrap();
        let treated = values(&changes, confirmed);
        let baseline = values(&json!({}), confirmed);
        let all_ok = values(&changes, false).len() + values(&changes, true).len();
        assert_eq!(r["trials"].as_u64().unwrap() as usize, all_ok, "{r}");
        assert_eq!(r["failed"], 0, "{r}");
        assert!(!treated.is_empty() && !baseline.is_empty(), "{r}");
        let b = stats::summarize(&baseline).unwrap();
        let t = stats::summarize(&treated).unwrap();
        // Minimize: positive = the change lowered the loss.
        let effect = r["effect"].as_f64().unwrap();
        assert!((effect - (b.mean - t.mean)).abs() < 1e-9, "{r}");
        assert_eq!(effect > 0.0, t.mean < b.mean, "{r}");
        // Welch 95% CI with the job's reported evaluation noise.
        let e = stats::effect(Direction::Minimize, &b, &t, 0.0005f64.powi(2));
        let (lo, hi) = (
            r["ci95_low"].as_f64().unwrap(),
            r["ci95_high"].as_f64().unwrap(),
        );
        assert!(
            (lo - e.ci95_low).abs() < 1e-9 && (hi - e.ci95_high).abs() < 1e-9,
            "{r}"
        );
        assert!(lo < effect && effect < hi, "{r}");
        assert!(r["cost_cpu_hours"].as_f64().unwrap() > 0.0, "{r}");
        if effect > 0.0 {
            better += 1;
        } else {
            worse += 1;
        }
    }
    assert!(better > 0 && worse > 0, "the toy space has both: {recs:#?}");

    // Written with the campaign's end, and covered by the chain.
    let (events, at) = recorded_event(&p);
    assert_eq!(events[at - 1]["type"], "campaign-finished");
    assert_eq!(events[at]["campaign"], 1);
    assert_eq!(events[at]["body"]["count"], recs.len() as u64);
    let o = p.reagent(&["audit", "verify"]);
    assert!(o.status.success(), "{}", text(&o));

    // The table: newest last, the change as `knob from → to`.
    let table = text(&p.reagent(&["insights", "list"]));
    assert!(table.contains(" → "), "{table}");
    assert!(
        table.contains(&format!("{} of {} records", recs.len(), recs.len())),
        "{table}"
    );
    let id = recs[0]["id"].as_str().unwrap();
    let shown = text(&p.reagent(&["insights", "show", &id[..6]]));
    assert!(shown.contains(&format!("insight {id}")), "{shown}");
    assert!(shown.contains("origin     recorded"), "{shown}");
}

#[test]
fn export_then_import_carries_identical_records_to_a_fresh_workspace_once() {
    let a = Project::new(|t| t.replace("max_trials = 24", "max_trials = 9"));
    run_campaign(&a, "toy.toml");
    let mine = records(&a);
    assert!(!mine.is_empty());
    let file = a.path("insights.jsonl");
    let o = a.reagent(&["insights", "export", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("exported {} records", mine.len())),
        "{}",
        text(&o)
    );
    let exported = std::fs::read_to_string(&file).unwrap();
    assert_eq!(exported.lines().count(), mine.len());
    // stdout gives the same lines.
    let o = a.reagent(&["insights", "export"]);
    assert_eq!(String::from_utf8(o.stdout).unwrap(), exported);

    let b = Project::new(|t| t);
    let file = file.to_str().unwrap();
    let o = b.reagent(&["insights", "import", file, "--dry-run"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(records(&b).is_empty(), "a dry run writes nothing");
    let import_says = |imported: usize, present: usize| {
        let o = b.reagent(&["insights", "import", file]);
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        let expect = format!("imported {imported} records ({present} already present)");
        assert!(out.contains(&expect), "{out}");
    };
    import_says(mine.len(), 0);
    let theirs = records(&b);
    assert_eq!(
        theirs.iter().map(content).collect::<Vec<_>>(),
        mine.iter().map(content).collect::<Vec<_>>(),
        "the same records, ids included, in the same order"
    );
    let sha = reagent_sha256(exported.as_bytes());
    for r in &theirs {
        assert!(r["campaign_id"].is_null(), "{r}");
        assert_eq!(
            r["origin"],
            format!("imported from {file} (sha256 {})", &sha[..16]),
            "{r}"
        );
    }

    // Again: nothing new.
    import_says(0, mine.len());
    assert_eq!(records(&b).len(), mine.len());

    // Both imports are in the audit log, which still verifies.
    let o = b.reagent(&["audit", "verify"]);
    assert!(o.status.success(), "{}", text(&o));
    let log = text(&b.reagent(&["audit", "show", "--json"]));
    let imports: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "insights-imported")
        .collect();
    assert_eq!(imports.len(), 2, "{log}");
    assert_eq!(imports[0]["body"]["imported"], mine.len() as u64);
    assert_eq!(imports[1]["body"]["skipped"], mine.len() as u64);
    assert_eq!(imports[1]["body"]["sha256"], sha);
}

fn reagent_sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A record line as another workspace might hold it.
fn line(campaign: &str, assignments: Value, effect: Option<f64>, failure: Option<&str>) -> String {
    let mut r = json!({
        "campaign": campaign,
        "recorded": "2025-01-31T12:00:00Z",
        "tags": ["elsewhere"],
        "metric": "valid_loss",
        "direction": "Minimize",
        "title": format!("from {campaign}"),
        "phase": "Validate",
        "assignments": assignments,
        "trials": if effect.is_some() { 1 } else { 0 },
        "failed": if failure.is_some() { 1 } else { 0 },
        "cost_cpu_hours": 0.01,
        "failure": failure,
    });
    if let Some(e) = effect {
        let o = r.as_object_mut().unwrap();
        o.insert("effect".into(), json!(e));
        o.insert("ci95_low".into(), json!(e - 0.01));
        o.insert("ci95_high".into(), json!(e + 0.01));
    }
    serde_json::to_string(&r).unwrap()
}

#[test]
fn a_bad_or_truncated_line_is_named_and_nothing_of_the_file_is_imported() {
    let p = Project::new(|t| t);
    let lr = |x: f64| json!([{"knob": "lr", "value": {"Float": x}}]);
    let good = [
        line("a", lr(0.1), Some(0.02), None),
        line("b", lr(0.2), Some(0.01), None),
        line("c", lr(0.5), Some(-0.01), None),
    ];
    std::fs::write(p.path("one.jsonl"), format!("{}\n", good[0])).unwrap();
    let o = p.reagent(&["insights", "import", "one.jsonl"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(records(&p).len(), 1);

    let cases = [
        (
            "malformed.jsonl",
            format!("{}\n{{\"campaign\": \"x\", oops}}\n{}\n", good[1], good[2]),
            "malformed.jsonl:2:",
            "not valid JSON",
        ),
        (
            "truncated.jsonl",
            format!(
                "{}\n{}\n{}",
                good[1],
                good[2],
                &good[0][..good[0].len() / 2]
            ),
            "truncated.jsonl:3:",
            "truncated",
        ),
        (
            "unknown.jsonl",
            format!(
                "{}\n{}\n",
                good[1],
                good[2].replacen('{', "{\"colour\":1,", 1)
            ),
            "unknown.jsonl:2:",
            "unknown field `colour`",
        ),
        (
            "infinite.jsonl",
            format!(
                "{}\n",
                good[1].replace("\"effect\":0.01", "\"effect\":1e999")
            ),
            "infinite.jsonl:1:",
            "number out of range",
        ),
        (
            "empty.jsonl",
            format!("{}\n\n{}\n", good[1], line("d", json!([]), Some(0.1), None)),
            "empty.jsonl:3:",
            "`assignments` is empty",
        ),
    ];
    for (name, body, at, what) in cases {
        std::fs::write(p.path(name), body).unwrap();
        let o = p.reagent(&["insights", "import", name]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {out}");
        assert!(out.contains(at), "{name}: {out}");
        assert!(out.contains(what), "{name}: {out}");
        assert!(
            out.contains(&format!("nothing was imported from {name}")),
            "{name}: {out}"
        );
        assert_eq!(records(&p).len(), 1, "{name}: nothing imported");
    }
    // Only the good import is in the log.
    let o = p.reagent(&["audit", "verify"]);
    assert!(o.status.success(), "{}", text(&o));
    let log = text(&p.reagent(&["audit", "show"]));
    assert_eq!(log.matches("insights-imported").count(), 1, "{log}");
}

/// Every insight record a campaign's generator calls were shown, by
/// campaign name, from the recorded host-call answers.
fn served_to(p: &Project, campaign: &str) -> Vec<String> {
    let o = p.reagent(&["audit", "export", "--campaign", campaign]);
    assert!(o.status.success(), "{}", text(&o));
    let mut names = Vec::new();
    for l in String::from_utf8(o.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        let Some(record) = v.get("record") else {
            continue;
        };
        for call in record["host_calls"].as_array().unwrap() {
            if call["function"] == "insights.find" {
                for item in call["response"]["items"].as_array().unwrap() {
                    names.push(item["campaign"].as_str().unwrap().to_string());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The rationales of every hypothesis a campaign's generator proposed.
fn rationales(p: &Project, campaign: &str) -> Vec<String> {
    let o = p.reagent(&["audit", "export", "--campaign", campaign]);
    let mut out = Vec::new();
    for l in String::from_utf8(o.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        if let Some(hs) = v
            .get("record")
            .and_then(|r| r["outcome"]["Ok"]["hypotheses"].as_array())
        {
            out.extend(
                hs.iter()
                    .map(|h| h["rationale"].as_str().unwrap().to_string()),
            );
        }
    }
    out
}

#[test]
fn only_records_that_apply_are_served_to_a_campaign() {
    let p = Project::new(|t| t.replace("max_trials = 24", "max_trials = 8"));
    let lines = [
        // Applies: a knob the toy campaign has, with a value of its kind.
        line(
            "applies",
            json!([{"knob": "lr", "value": {"Float": 0.05}}]),
            Some(0.05),
            None,
        ),
        line(
            "fails-here-too",
            json!([{"knob": "layers", "value": {"Int": 2}}]),
            None,
            Some("OutOfMemory"),
        ),
        // Do not apply: a knob the campaign lacks, or a value of another kind.
        line(
            "lacks-a-knob",
            json!([{"knob": "lr", "value": {"Float": 0.2}}, {"knob": "momentum", "value": {"Float": 0.9}}]),
            Some(0.04),
            None,
        ),
        line(
            "wrong-kind",
            json!([{"knob": "lr", "value": {"Choice": "fast"}}]),
            Some(0.03),
            None,
        ),
        line(
            "int-as-float",
            json!([{"knob": "batch_size", "value": {"Float": 128.0}}]),
            Some(0.02),
            None,
        ),
        line(
            "lacks-a-knob-failure",
            json!([{"knob": "momentum", "value": {"Float": 0.99}}]),
            None,
            Some("Divergence"),
        ),
    ];
    std::fs::write(p.path("elsewhere.jsonl"), lines.join("\n") + "\n").unwrap();
    let o = p.reagent(&["insights", "import", "elsewhere.jsonl"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("imported 6 records"), "{}", text(&o));

    // The plan's slate preview is shown the same records as the engine:
    // three-phase tries the value that helped elsewhere (not one of its
    // own steps from 0.3) first.
    let plan = p.json(&["plan", "toy.toml", "--json"]);
    let first = plan["slate"][0].as_str().unwrap();
    assert!(first.contains("0.3 → 0.05"), "{plan}");
    run_campaign(&p, "1");
    assert_eq!(served_to(&p, "1"), ["applies", "fails-here-too"]);
    let said = rationales(&p, "1");
    assert!(
        said.iter()
            .any(|r| r.contains("In campaign applies, lr = 0.05 improved valid_loss")),
        "{said:#?}"
    );

    // `list --campaign` shows what that campaign is served: not its own
    // records (it has some now), nor those that do not apply.
    let own = records(&p).iter().filter(|r| r["campaign_id"] == 1).count();
    assert!(own > 0);
    let listed = p.json(&["insights", "list", "--campaign", "1", "--json"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["campaign"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["applies", "fails-here-too"]);
    let failures = p.json(&["insights", "list", "--failures", "--json"]);
    assert_eq!(failures.as_array().unwrap().len(), 2, "{failures}");
}

#[test]
fn a_later_campaign_reads_what_an_earlier_one_recorded() {
    let p = Project::new(|t| t.replace("max_trials = 24", "max_trials = 10"));
    let second = std::fs::read_to_string(p.path("toy.toml"))
        .unwrap()
        .replace("name = \"toy\"", "name = \"toy-again\"");
    std::fs::write(p.path("again.toml"), second).unwrap();
    run_campaign(&p, "toy.toml");
    assert!(served_to(&p, "1").is_empty(), "nothing recorded before it");
    run_campaign(&p, "again.toml");
    assert_eq!(served_to(&p, "2"), ["toy"]);
    let said = rationales(&p, "2");
    assert!(
        said.iter().any(|r| r.contains("In campaign toy,")),
        "{said:#?}"
    );
    // Both campaigns' records are kept.
    let recs = records(&p);
    assert!(recs.iter().any(|r| r["campaign"] == "toy-again"));
}

#[test]
fn show_takes_a_unique_prefix_and_lists_the_candidates_of_an_ambiguous_one() {
    let p = Project::new(|t| t);
    // Ids are content hashes: find two records whose ids share their first
    // two hex digits (a few dozen tries, by the birthday bound).
    let record = |x: f64| {
        line(
            "elsewhere",
            json!([{"knob": "lr", "value": {"Float": x}}]),
            Some(0.01),
            None,
        )
    };
    let id_of = |l: &str| {
        reagent::insights::parse_jsonl("t", l.as_bytes()).unwrap()[0]
            .id
            .clone()
    };
    let mut seen: std::collections::HashMap<String, (f64, String)> = Default::default();
    let (a, b) = (0..2000)
        .find_map(|i| {
            let x = 0.1 + f64::from(i) * 1e-3;
            let id = id_of(&record(x));
            seen.insert(id[..2].to_string(), (x, id.clone()))
                .map(|earlier| (earlier, (x, id)))
        })
        .expect("two ids with the same first two digits");
    let file = format!("{}\n{}\n", record(a.0), record(b.0));
    std::fs::write(p.path("two.jsonl"), file).unwrap();
    let o = p.reagent(&["insights", "import", "two.jsonl"]);
    assert!(o.status.success(), "{}", text(&o));

    let prefix = &a.1[..2];
    let o = p.reagent(&["insights", "show", prefix]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains(&format!("`{prefix}` is the start of 2 insight records")),
        "{out}"
    );
    assert!(out.contains(&a.1) && out.contains(&b.1), "{out}");

    let o = p.reagent(&["insights", "show", &b.1.to_ascii_uppercase()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("change     lr → {}", b.0)),
        "{}",
        text(&o)
    );

    let absent = (0..16u8)
        .map(|d| format!("{d:x}{d:x}{d:x}{d:x}"))
        .find(|x| !a.1.starts_with(x) && !b.1.starts_with(x))
        .unwrap();
    let o = p.reagent(&["insights", "show", &absent]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains(&format!("no insight record `{absent}`")),
        "{}",
        text(&o)
    );
}

#[test]
fn a_forged_id_oversized_field_or_escape_sequence_gets_nowhere() {
    let p = Project::new(|t| t);
    let lr = |x: f64| json!([{"knob": "lr", "value": {"Float": x}}]);
    let genuine = line("genuine", lr(0.1), Some(0.02), None);
    let genuine_id = reagent::insights::parse_jsonl("t", genuine.as_bytes()).unwrap()[0]
        .id
        .clone();
    // A forgery carrying the genuine record's id (the old code took it as
    // given: the forgery shadowed the genuine record, whose later import
    // said "already present", and `show` displayed the forgery).
    let mut forged: Value =
        serde_json::from_str(&line("forged", lr(0.9), Some(0.5), None)).unwrap();
    forged["id"] = json!(genuine_id);
    std::fs::write(p.path("forged.jsonl"), format!("{forged}\n")).unwrap();
    let o = p.reagent(&["insights", "import", "forged.jsonl"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "forged.jsonl:1: `id` {genuine_id} does not match the record's content"
        )),
        "{}",
        text(&o)
    );
    std::fs::write(p.path("genuine.jsonl"), format!("{genuine}\n")).unwrap();
    let o = p.reagent(&["insights", "import", "genuine.jsonl"]);
    assert!(
        text(&o).contains("imported 1 record (0 already present)"),
        "{}",
        text(&o)
    );
    let shown = text(&p.reagent(&["insights", "show", &genuine_id]));
    assert!(shown.contains("campaign   genuine"), "{shown}");

    // A 30 MiB tag (the old code accepted it and copied it into every later
    // call record), and one just over the cap.
    let mut big: Value = serde_json::from_str(&line("big", lr(0.3), Some(0.01), None)).unwrap();
    big["tags"] = json!(["x".repeat(30 << 20)]);
    std::fs::write(p.path("big.jsonl"), format!("{big}\n")).unwrap();
    let o = p.reagent(&["insights", "import", "big.jsonl"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("big.jsonl:1: the line is"),
        "{}",
        text(&o)
    );
    big["tags"] = json!(["x".repeat(300)]);
    std::fs::write(p.path("big.jsonl"), format!("{big}\n")).unwrap();
    let o = p.reagent(&["insights", "import", "big.jsonl"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("`tags[]` is 300 bytes; at most 256 are accepted"),
        "{}",
        text(&o)
    );

    // Escape sequences in an imported record reach the terminal as visible
    // escapes (the old code printed them raw: `^[]0;pwned^G^[[2J`).
    let mut loud: Value = serde_json::from_str(&line("loud", lr(0.4), Some(0.01), None)).unwrap();
    loud["campaign"] = json!("loud\u{1b}]0;pwned\u{7}\u{1b}[2J");
    loud["tags"] = json!(["tag\u{202e}"]);
    std::fs::write(p.path("loud.jsonl"), format!("{loud}\n")).unwrap();
    let o = p.reagent(&["insights", "import", "loud.jsonl"]);
    assert!(o.status.success(), "{}", text(&o));
    for args in [
        &["insights", "list"][..],
        &[
            "insights",
            "show",
            &reagent::insights::parse_jsonl("t", loud.to_string().as_bytes()).unwrap()[0].id,
        ],
    ] {
        let out = text(&p.reagent(args));
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{7}') && !out.contains('\u{202e}'),
            "{args:?}: {out:?}"
        );
        assert!(
            out.contains("loud\\x1b]0;pwned\\x07\\x1b[2J"),
            "{args:?}: {out}"
        );
    }
}

#[test]
fn a_cancelled_campaign_records_what_it_measured_before_it_ended() {
    // Each trial takes a second, so the campaign is still running when a
    // change has been measured.
    let p = Project::new(|t| {
        t.replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { TOY_SLEEP = \"1\" }",
        )
    });
    let o = p.reagent(&["run", "toy.toml", "--yes", "--detach"]);
    assert!(o.status.success(), "{}", text(&o));
    let start = std::time::Instant::now();
    loop {
        let trials = p.json(&["trials", "1", "--json"]);
        let measured = trials
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["hypothesis"] != 0 && t["status"] == "succeeded");
        if measured {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "no change measured yet: {trials}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let o = p.reagent(&["cancel", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(p.json(&["status", "1", "--json"])["state"], "cancelled");
    let recs = records(&p);
    assert!(!recs.is_empty(), "the measured change is recorded");
    assert!(recs.iter().all(|r| r["campaign_id"] == 1), "{recs:#?}");
    let (events, at) = recorded_event(&p);
    let ended = events[..at]
        .iter()
        .rposition(|e| e["type"] == "state-changed")
        .unwrap();
    assert_eq!(
        events[ended]["body"]["to"],
        "cancelled",
        "{:#?}",
        &events[ended..]
    );
    assert_eq!(events[at]["body"]["count"], recs.len() as u64);
}

#[test]
fn a_change_that_failed_is_recorded_as_a_known_failure() {
    // Trial 4 is the first single change (1–3 are the baseline).
    let p = Project::new(|t| {
        t.replace("max_trials = 24", "max_trials = 9").replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { FAIL_T4 = \"crash\" }",
        )
    });
    run_campaign(&p, "toy.toml");
    let trials = p.json(&["trials", "1", "--json"]);
    let t4 = trials
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == 4)
        .unwrap()
        .clone();
    assert_eq!(t4["failure"], "program-error", "{t4}");
    let failures = p.json(&["insights", "list", "--failures", "--json"]);
    let failures = failures.as_array().unwrap();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    let f = &failures[0];
    assert_eq!(change_map(f), t4["changes"], "{f}");
    assert_eq!(f["failure"], "ProgramError", "{f}");
    assert_eq!(
        (f["trials"].as_u64(), f["failed"].as_u64()),
        (Some(0), Some(1)),
        "{f}"
    );
    assert!(f["effect"].is_null() && f["ci95_low"].is_null(), "{f}");
    let table = text(&p.reagent(&["insights", "list", "--failures"]));
    assert!(table.contains("program-error"), "{table}");
}
