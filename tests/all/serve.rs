//! `reagent serve` over HTTP (issue 20): strangers are refused, a token or
//! a proxy's header names the person, decisions are CSRF-bound POSTs that
//! go through governance as that person, what strategies and jobs wrote is
//! never markup, and the driver's passes reach open pages as server-sent
//! events. (tests/all/browser.rs drives the same pages in Chromium.)

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::campaign::{Project, text};

pub struct Server {
    pub child: Child,
    pub url: String,
    pub login: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `reagent serve` on a free loopback port with `extra` arguments.
pub fn start(p: &Project, extra: &[&str]) -> Server {
    let mut args = vec!["serve", "--bind", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = p
        .command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first.strip_prefix("serving ").expect(&first).to_string();
    let login = if extra.is_empty() {
        let l = lines.next().unwrap().unwrap();
        Some(l.strip_prefix("open ").expect(&l).to_string())
    } else {
        None
    };
    // Keep reading (and dropping) what it prints, so it never blocks.
    std::thread::spawn(move || for _ in lines {});
    Server { child, url, login }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// (status, body) of a GET with these headers.
pub fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.call().unwrap();
    let status = r.status().as_u16();
    (status, r.into_body().read_to_string().unwrap_or_default())
}

fn post(url: &str, headers: &[(&str, &str)], form: &[(&str, &str)]) -> (u16, String) {
    let mut req = agent().post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send_form(form.iter().copied()).unwrap();
    let status = r.status().as_u16();
    let to = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, to)
}

fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form") + 19;
    page[at..at + 32].to_string()
}

/// Counts `event: change` on the server-sent stream, from a thread.
fn listen(
    url: &str,
    headers: Vec<(String, String)>,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let keep = std::sync::Arc::clone(&seen);
    let url = format!("{url}events");
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
        let mut req = agent.get(&url);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let Ok(r) = req.call() else { return };
        for line in BufReader::new(r.into_body().into_reader()).lines() {
            let Ok(line) = line else { return };
            if line == "event: change" {
                keep.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    seen
}

fn hostile() -> Project {
    Project::new(|t| {
        t.replace(
            r#"choices = ["sgd", "adam"]"#,
            r#"choices = ["sgd", "<script>alert('choice')</script>"]"#,
        )
        .replace("max_trials = 24", "max_trials = 12")
        .replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { FAIL_T5 = \"html\", TOY_SLEEP = \"0.2\" }",
        )
    })
}

#[test]
fn serve_refuses_strangers_and_decides_as_the_person_through_governance() {
    let p = hostile();
    let o = p.reagent(&["plan", "toy.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = start(&p, &[]);
    let token = std::fs::read_to_string(p.path(".reagent/serve.token")).unwrap();
    let token = token.trim();
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(p.path(".reagent/serve.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Strangers: no token, a wrong one, a wrong login.
    assert_eq!(get(&s.url, &[]).0, 401);
    assert_eq!(get(&s.url, &[("Authorization", "Bearer 00")]).0, 401);
    assert_eq!(get(&format!("{}login?token=00", s.url), &[]).0, 401);
    // The login link sets the cookie.
    let r = agent().get(s.login.as_deref().unwrap()).call().unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_string();
    let me = [("Cookie", cookie.as_str())];
    let (status, page) = get(&s.url, &me);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("waiting on a person") && page.contains("request 1 (plan)"),
        "{page}"
    );

    // The plan request and its payload; decided by POST with CSRF.
    let (status, page) = get(&format!("{}approvals", s.url), &me);
    assert_eq!(status, 200);
    assert!(page.contains("Request 1: plan"), "{page}");
    assert_eq!(
        page.matches("<script").count(),
        1,
        "only the page's own script"
    );
    let token_csrf = csrf(&page);
    let to = format!("{}approvals/1", s.url);
    assert_eq!(
        post(&to, &me, &[("csrf", "0"), ("decision", "approve")]).0,
        403
    );
    assert_eq!(
        get(&s.url, &[("Authorization", &format!("Bearer {token}"))]).0,
        200
    );
    let (status, location) = post(
        &to,
        &me,
        &[
            ("csrf", &token_csrf),
            ("decision", "approve"),
            ("note", "looks fine"),
        ],
    );
    assert_eq!(status, 303, "{location}");
    assert!(location.contains("approved"), "{location}");
    let st = p.json(&["status", "1", "--json"]);
    assert_ne!(st["state"], "awaiting-approval", "{st}");
    let log = text(&p.reagent(&["audit", "show", "--json"]));
    let me_os = reagent::governance::os_user();
    assert!(
        log.lines()
            .any(|l| l.contains("approval-decided") && l.contains(&format!("\"by\":\"{me_os}\""))),
        "the decision is recorded as the person: {log}"
    );

    // More budget, asked for from the campaign page and approved as me
    // (the same requests as `reagent amend`); a forged form is refused.
    let (_, page) = get(&format!("{}campaigns/1", s.url), &me);
    assert!(page.contains("Ask for a change"), "{page}");
    let amend = format!("{}campaigns/1/amend", s.url);
    let fields = |csrf: &'static str| {
        vec![
            ("csrf", csrf),
            ("cpu_hours", "2"),
            ("gpu_hours", "0"),
            ("max_trials", "12"),
            ("generator", "builtin:three-phase"),
            ("debugger", "builtin:runbook"),
            ("approve", "1"),
        ]
    };
    assert_eq!(post(&amend, &me, &fields("0")).0, 403);
    let good: &'static str = Box::leak(token_csrf.clone().into_boxed_str());
    let (status, location) = post(&amend, &me, &fields(good));
    assert_eq!(status, 303, "{location}");
    assert!(
        location.contains("budget") && location.contains("approved"),
        "{location}"
    );
    assert_eq!(
        p.json(&["status", "1", "--json"])["budget"]["cpu_hours"],
        2.0
    );

    // The driver's passes reach an open page as server-sent events.
    let seen = listen(&s.url, vec![("Cookie".into(), cookie.clone())]);
    std::thread::sleep(Duration::from_millis(300));
    let o = p.reagent(&["run", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let start = Instant::now();
    while seen.load(std::sync::atomic::Ordering::SeqCst) == 0
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        seen.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "no change event reached the page"
    );

    // The campaign page: the report's six plots and the trials grid; what
    // the job and the choice said is text.
    let (status, page) = get(&format!("{}campaigns/1", s.url), &me);
    assert_eq!(status, 200);
    assert_eq!(page.matches("<svg").count(), 6);
    assert_eq!(page.matches("<script").count(), 1);
    assert!(
        page.contains("&lt;script&gt;alert(&quot;job&quot;)"),
        "the job's error, escaped"
    );
    assert!(
        page.contains("&lt;script&gt;alert(&#39;choice&#39;)"),
        "the choice, escaped"
    );
    let (_, failed) = get(&format!("{}campaigns/1?status=failed", s.url), &me);
    let grid = &failed[failed.find("id=\"trials\"").unwrap()..];
    assert_eq!(
        grid.matches("<tr><td><a href=\"/campaigns/1/trials/")
            .count(),
        1,
        "only the failed trial"
    );
    let (status, page) = get(&format!("{}campaigns/1/trials/5", s.url), &me);
    assert_eq!(status, 200);
    assert!(
        page.contains("Log tail") && page.contains("&lt;img src=x"),
        "{page}"
    );
    let (status, page) = get(&format!("{}audit", s.url), &me);
    assert_eq!(status, 200);
    assert!(page.contains("Verified:"), "{page}");
    assert_eq!(get(&format!("{}campaigns/99", s.url), &me).0, 404);
}

#[test]
fn a_non_loopback_bind_needs_auth_and_a_proxy_header_names_the_person() {
    let p = Project::new(|t| t.replace("max_trials = 24", "max_trials = 8"));
    let o = p.reagent(&["serve", "--bind", "0.0.0.0:0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("refusing to serve 0.0.0.0:0 beyond this machine without --auth"),
        "{}",
        text(&o)
    );
    let o = p.reagent(&["serve", "--auth", "cookie"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    assert!(p.reagent(&["plan", "toy.toml"]).status.success());
    let s = start(&p, &["--auth", "header:X-Remote-User"]);
    assert_eq!(get(&s.url, &[]).0, 401);
    let alice = [("X-Remote-User", "alice")];
    let (status, page) = get(&s.url, &alice);
    assert_eq!(status, 200);
    assert!(page.contains("Signed in as alice."), "{page}");
    let (_, page) = get(&format!("{}approvals", s.url), &alice);
    let c = csrf(&page);
    // A rejection needs a reason; then alice rejects, and it says so.
    let to = format!("{}approvals/1", s.url);
    let (status, location) = post(&to, &alice, &[("csrf", &c), ("decision", "reject")]);
    assert_eq!(status, 303);
    assert!(location.contains("needs"), "{location}");
    let (status, location) = post(
        &to,
        &alice,
        &[("csrf", &c), ("decision", "reject"), ("note", "not now")],
    );
    assert_eq!(status, 303);
    assert!(
        location.contains("rejected") && location.contains("alice"),
        "{location}"
    );
    let log = text(&p.reagent(&["audit", "show", "--json"]));
    assert!(
        log.lines()
            .any(|l| l.contains("approval-decided") && l.contains("\"by\":\"alice\"")),
        "{log}"
    );
    assert_eq!(p.json(&["status", "1", "--json"])["state"], "cancelled");
}
