//! The trust boundary around the workspace, through the real binary: who
//! can read it, who can hold the driver's wake socket, what an anchor
//! proves about the audit log, and where an `[llm]` key may be sent.
//! (Hostile strategies are in `hostile.rs`, hostile jobs in
//! `hostile_jobs.rs`, hostile words for people in `governance.rs` and
//! `insights.rs`; docs/security.md lists them all.)

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::campaign::{Project, text};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_new_workspace_is_private_and_an_open_one_is_named_at_every_command() {
    let p = Project::new(|t| t);
    // The old code left these 0755 / 0644: another local user read the
    // database's prompts, model exchanges and call records.
    assert_eq!(mode(&p.path(".reagent")), 0o700);
    assert_eq!(mode(&p.path(".reagent/jobs")), 0o700);
    assert_eq!(mode(&p.path(".reagent/reagent.redb")), 0o600);
    let o = p.reagent(&["status"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("warning"), "{}", text(&o));

    std::fs::set_permissions(p.path(".reagent"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = p.reagent(&["status"]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is open to other users (mode 755)") && err.contains("chmod -R go-rwx"),
        "{err}"
    );
    // `init` on an existing workspace leaves its modes to its owner.
    let o = p.reagent(&["init"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(mode(&p.path(".reagent")), 0o755);
}

#[test]
fn idle_connections_to_the_wake_socket_do_not_starve_the_driver() {
    // A foreground driver limited to 64 descriptors, and 100 connections
    // that never say anything. On the old code the driver kept every
    // connection until its next pass, ran out of descriptors, could not
    // read a finished job's status ("lost") and halted the campaign.
    let p = Project::new(|t| {
        t.replace("max_trials = 24", "max_trials = 8").replace(
            "resources = { cpus = 1 }",
            "resources = { cpus = 1 }\nenv = { TOY_SLEEP = \"1\" }",
        )
    });
    assert!(p.reagent(&["plan", "toy.toml", "--yes"]).status.success());
    let driver = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 64 && exec "$0" run 1 --workspace "$1""#)
        .arg(env!("CARGO_BIN_EXE_reagent"))
        .arg(p.dir.path())
        .current_dir(p.dir.path())
        .env("REAGENT_CACHE_DIR", crate::support::cache_dir())
        .env_remove("REAGENT_CRASH_AFTER_COMMITS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let sock = p.path(".reagent/wake.sock");
    let start = Instant::now();
    while !sock.exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "no wake socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut idle = Vec::new();
    for _ in 0..100 {
        if let Ok(s) = UnixStream::connect(&sock) {
            idle.push(s);
        }
    }
    assert!(idle.len() >= 50, "only {} connections", idle.len());
    let out = driver.wait_with_output().unwrap();
    drop(idle);
    assert!(out.status.success(), "{}", text(&out));
    let s = p.json(&["status", "1", "--json"]);
    assert_eq!(s["state"], "finished", "{s}");
    assert_eq!(s["trials"]["failed"], 0, "no trial lost: {s}");
}

#[test]
fn an_anchor_kept_elsewhere_catches_a_rewritten_log() {
    let p = Project::new(|t| t);
    assert!(p.reagent(&["plan", "toy.toml"]).status.success());
    let o = p.reagent(&["audit", "verify"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    let anchor = out
        .lines()
        .find_map(|l| l.strip_prefix("anchor "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no anchor printed: {out}"))
        .to_string();
    let (seq, hash) = anchor.split_once(':').unwrap();
    assert_eq!(hash.len(), 64, "{anchor}");
    let o = p.reagent(&["audit", "verify", "--anchor", &anchor]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("anchor {anchor}: matches")),
        "{}",
        text(&o)
    );

    // A same-user writer rewrites history and recomputes the chain: stand in
    // for it with a fresh workspace holding a different log of the same
    // length. The chain verifies; only the anchor shows the rewrite.
    let q = Project::new(|t| t.replace("name = \"toy\"", "name = \"rewritten\""));
    assert!(q.reagent(&["plan", "toy.toml"]).status.success());
    assert!(q.reagent(&["audit", "verify"]).status.success());
    let o = q.reagent(&[
        "audit",
        "verify",
        "--anchor",
        &format!("{seq}:{}", &hash[..16]),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("anchor {seq}: entry {seq} now hashes to")),
        "{}",
        text(&o)
    );
    let o = q.reagent(&["audit", "verify", "--anchor", "7:nothex"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("expected SEQ:HASH"), "{}", text(&o));
}

#[test]
fn an_llm_key_goes_over_plain_http_only_to_a_loopback_address() {
    let p = Project::new(|t| t);
    let toy = std::fs::read_to_string(p.path("toy.toml")).unwrap();
    let with = |url: &str| {
        format!(
            "{toy}\n[strategies]\ngenerator = \"builtin:researcher\"\ngrants = {{ llm = true }}\n\n[llm]\nurl = {url:?}\nmodel = \"m\"\napi_key_env = \"REAGENT_TEST_KEY\"\n"
        )
    };
    // The old check took `starts_with("127.")`: this name passed.
    std::fs::write(
        p.path("bad.toml"),
        with("http://127.0.0.1.attacker.example/v1/chat/completions"),
    )
    .unwrap();
    let o = p.reagent(&["plan", "bad.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("plain http would send the API key unencrypted"),
        "{}",
        text(&o)
    );
    std::fs::write(
        p.path("creds.toml"),
        with("https://bob:hunter2@example.com/v1?key=abc"),
    )
    .unwrap();
    let o = p.reagent(&["plan", "creds.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("credentials in the URL"), "{}", text(&o));
    assert!(
        !text(&o).contains("hunter2") && !text(&o).contains("key=abc"),
        "{}",
        text(&o)
    );
    std::fs::write(
        p.path("ok.toml"),
        with("http://127.0.0.1:9/v1/chat/completions?key=abc"),
    )
    .unwrap();
    let o = p.reagent(&["plan", "ok.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("http://127.0.0.1:9/v1/chat/completions?…"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("key=abc"), "{}", text(&o));
}
