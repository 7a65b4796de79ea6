//! Strategies that try to hold the host, or read real time, through the
//! WASI timers (`tests/guests/timer-abuse`, one mode per attack). Every
//! call must come back within its deadline plus a generous margin (this is
//! a shared, noisy machine: the bounds catch a host that sleeps, not a
//! slow one), and a timer-driven loop must give the same output on every
//! run and under replay.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reagent::sandbox::Limits;
use reagent::sandbox::test_guests as g;
use reagent::strategy::record::CallRecord;
use reagent::strategy::{CallOutput, Grants, Phase};

use crate::support::{context, guest, propose, sandbox};

/// The deadline these calls run under, and the most wall time one may take.
const DEADLINE_MS: u64 = 1_000;
const BOUND: Duration = Duration::from_secs(5);
/// How long to wait for a call before declaring the host held: past this
/// the test fails instead of hanging (the held thread is left behind).
const GIVE_UP: Duration = Duration::from_secs(40);

/// Calls the timer-abuse guest in `mode` on a thread; panics if the call
/// has not come back after `GIVE_UP`. Returns the record and the wall time.
fn call(mode: &str) -> (CallRecord, Duration) {
    let (tx, rx) = mpsc::channel();
    let mode_owned = mode.to_string();
    std::thread::spawn(move || {
        let limits = Limits {
            deadline_ms: DEADLINE_MS,
            ..Limits::default()
        };
        let started = Instant::now();
        let r = propose(
            &guest(g::TIMER_ABUSE),
            context(&mode_owned, Phase::Validate, 1),
            4,
            &limits,
        );
        let _ = tx.send((r, started.elapsed()));
    });
    match rx.recv_timeout(GIVE_UP) {
        Ok(done) => done,
        Err(_) => panic!("mode {mode}: the call still held the host after {GIVE_UP:?}"),
    }
}

fn title(r: &CallRecord) -> String {
    match &r.outcome {
        Ok(CallOutput::Hypotheses(h)) => h[0].title.clone(),
        other => panic!("expected hypotheses, got {other:?}"),
    }
}

/// The `clock=N` the guest reported: how far its monotonic clock moved.
fn clock(title: &str) -> u64 {
    title
        .split_whitespace()
        .find_map(|w| w.strip_prefix("clock="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no clock in {title:?}"))
}

#[test]
fn a_20_second_block_on_a_timer_does_not_hold_the_host() {
    let (r, wall) = call("sleep-20s");
    assert!(
        wall < BOUND,
        "wall {wall:?} for a {DEADLINE_MS} ms deadline"
    );
    let t = title(&r);
    assert!(t.starts_with("slept "), "{t}");
    // The virtual clock moved to the timer's deadline: the strategy sees a
    // consistent 20 s sleep that took no real time.
    assert!(clock(&t) >= 20_000_000_000, "{t}");
    assert!(clock(&t) < 20_001_000_000, "{t}");
}

#[test]
fn a_584_year_block_does_not_hold_the_host() {
    let (r, wall) = call("sleep-forever");
    assert!(wall < BOUND, "wall {wall:?}");
    let t = title(&r);
    assert!(t.starts_with("woke "), "{t}");
    assert!(clock(&t) > 1 << 63, "{t}");
}

#[test]
fn polling_many_long_timers_does_not_hold_the_host_and_is_deterministic() {
    let (a, wall) = call("many-timers");
    assert!(wall < BOUND, "wall {wall:?}");
    let (b, _) = call("many-timers");
    assert_eq!(title(&a), title(&b), "same call, same readiness");
    assert!(title(&a).starts_with("fired="), "{}", title(&a));
    assert!(clock(&title(&a)) >= 64 * 1_000_000_000, "{}", title(&a));
}

#[test]
fn sleeping_in_a_loop_does_not_hold_the_host() {
    let (r, wall) = call("sleep-loop");
    assert!(wall < BOUND, "wall {wall:?}");
    let t = title(&r);
    assert!(t.starts_with("slept "), "{t}");
    assert!(clock(&t) >= 40 * 500_000_000, "{t}");
}

#[test]
fn stdin_and_stdout_do_not_wait_on_anything_real() {
    let (r, wall) = call("stdio");
    assert!(wall < BOUND, "wall {wall:?}");
    let t = title(&r);
    assert!(t.starts_with("stdin=0 "), "stdin is closed: {t}");
    let limits = Limits::default();
    assert_eq!(r.log.stdout.len() as u64, limits.max_stdio_bytes);
    assert_eq!(
        r.log.dropped_stdio_bytes,
        2 * (256 * 4096 - limits.max_stdio_bytes)
    );
}

#[test]
fn counting_turns_until_a_timer_fires_gives_the_same_count_every_run_and_under_replay() {
    let runs: Vec<CallRecord> = (0..3).map(|_| call("turns").0).collect();
    let titles: Vec<String> = runs.iter().map(title).collect();
    assert!(titles[0].starts_with("turns="), "{titles:?}");
    assert!(
        titles.iter().all(|t| t == &titles[0]),
        "output depends on real time: {titles:?}"
    );
    assert!(
        runs.iter()
            .all(|r| r.output_sha256 == runs[0].output_sha256)
    );
    assert!(runs.iter().all(|r| r.usage.fuel == runs[0].usage.fuel));
    let strategy = sandbox()
        .load(&guest(g::TIMER_ABUSE), &Grants::default())
        .unwrap();
    let report = sandbox().replay(&strategy, &runs[0]);
    assert!(report.identical, "{:?}", report.differences);
}

/// Runs `reagent strategy try --deadline-ms 1000` on the guest in `mode`,
/// killing it (and failing) if it is still running after `GIVE_UP`.
fn try_through_the_binary(mode: &str) -> (String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let example = std::fs::read_to_string(format!("{root}/examples/strategy-inputs/propose.json"))
        .expect("example input");
    let mut input: serde_json::Value = serde_json::from_str(&example).unwrap();
    input["context"]["campaign"] = serde_json::Value::String(mode.into());
    let path = dir.path().join("input.json");
    std::fs::write(&path, serde_json::to_vec(&input).unwrap()).unwrap();

    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_reagent"))
        .args(["strategy", "try", g::TIMER_ABUSE, "--call", "propose"])
        .arg("--input")
        .arg(&path)
        .args(["--deadline-ms", &DEADLINE_MS.to_string(), "--json"])
        .env("REAGENT_CACHE_DIR", crate::support::cache_dir())
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run reagent");
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > GIVE_UP {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`reagent strategy try` on {mode} still running after {GIVE_UP:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let wall = started.elapsed();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (text, wall)
}

#[test]
fn strategy_try_with_a_1_second_deadline_returns_in_bounded_time() {
    for mode in ["sleep-20s", "sleep-forever"] {
        let (out, wall) = try_through_the_binary(mode);
        // The binary also starts an engine and may compile: a wider bound.
        assert!(wall < 2 * BOUND, "{mode}: wall {wall:?}");
        let record: serde_json::Value = serde_json::from_str(&out).expect("a JSON call record");
        let t = record["outcome"]["Ok"]["hypotheses"][0]["title"]
            .as_str()
            .unwrap_or_else(|| panic!("{mode}: {out}"));
        assert!(t.contains("clock="), "{mode}: {t}");
    }
}
