//! The dashboard and the HTML report in a real headless Chromium (issue
//! 20), driven by tests/browser/dashboard.py through Selenium and
//! Debian's chromedriver: a request without the token is refused, the plan
//! is approved in the browser and the campaign then runs, the budget
//! increase it asks for on the way appears live and is approved there too,
//! its page follows live to the end without a reload, plots render, and markup a strategy or
//! job wrote never runs. Screenshots go to target/screenshots/.
//!
//! Needs /usr/bin/chromium, /usr/bin/chromedriver (scripts/browser-setup.sh)
//! and Selenium in target/python/venv (scripts/test.sh); skipped with a
//! message without them, unless REAGENT_REQUIRE_BROWSER=1 (CI).

use std::path::{Path, PathBuf};

use crate::campaign::{Project, text};
use crate::serve::start;

fn available() -> Option<PathBuf> {
    let browser =
        Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists();
    let py = match crate::support::venv_python("selenium") {
        (p, true) => Some(p),
        _ => None,
    };
    if browser && py.is_some() {
        return py;
    }
    let why = format!(
        "the browser tests need /usr/bin/chromium and /usr/bin/chromedriver (scripts/browser-setup.sh) and Selenium in target/python/venv (scripts/test.sh): chromium {}, selenium {}",
        if browser { "found" } else { "missing" },
        if py.is_some() { "found" } else { "missing" }
    );
    assert!(
        std::env::var("REAGENT_REQUIRE_BROWSER").as_deref() != Ok("1"),
        "REAGENT_REQUIRE_BROWSER=1 but {why}"
    );
    eprintln!("skipping: {why}");
    None
}

#[test]
fn a_person_approves_and_follows_a_campaign_in_chromium_and_reads_its_report() {
    let Some(py) = available() else {
        return;
    };
    // Each trial runs ~1 s on "36 cpus": 0.1 CPU-hours cannot hold back
    // the confirmation runs, so the agent asks for more budget on the way
    // (as in governance.rs), and the person approves that in the browser
    // too.
    let p = Project::new(|t| {
        t.replace(
            r#"choices = ["sgd", "adam"]"#,
            r#"choices = ["sgd", "adam", "<img src=x onerror=window.__xss=1>"]"#,
        )
        .replace("time_limit = \"20s\"", "time_limit = \"2s\"")
        .replace("cpu_hours = 1.0", "cpu_hours = 0.1")
        .replace("max_trials = 24", "max_trials = 10")
        .replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 36 }\nenv = { FAIL_T5 = \"html\", TOY_SLEEP = \"1\" }",
        ) + "\n[policy]\nask_for_budget = true\n"
    });
    let o = p.reagent(&["plan", "toy.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = start(&p, &[]);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    let args = serde_json::json!({
        "url": s.url,
        "login": s.login,
        "reagent": env!("CARGO_BIN_EXE_reagent"),
        "workspace": p.dir.path(),
        "shots": shots,
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser/dashboard.py");
    let o = std::process::Command::new(py)
        .arg(script)
        .arg(args.to_string())
        .env("SE_OFFLINE", "true")
        .env("REAGENT_CACHE_DIR", crate::support::cache_dir())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    eprintln!("{}", String::from_utf8_lossy(&o.stdout));
    let st = p.json(&["status", "1", "--json"]);
    assert_eq!(st["state"], "finished", "{st}");
    for shot in ["refused", "campaigns", "approvals", "campaign", "report"] {
        let f = shots.join(format!("{shot}.png"));
        assert!(
            std::fs::metadata(&f).is_ok_and(|m| m.len() > 1000),
            "{}",
            f.display()
        );
    }
}
