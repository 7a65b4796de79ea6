//! Notifications (issue 20): a webhook receiver on 127.0.0.1 is told when
//! a plan waits for approval, when a budget share is crossed and when the
//! campaign ends; a receiver that hangs does not hold the campaign; one
//! that is down gets the message on a later attempt; every attempt is
//! recorded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::campaign::{Project, text};

/// What a receiver does with a request.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Answer,
    /// Reads the request and never answers.
    Hang,
}

/// A webhook receiver: records each JSON body it is posted.
fn receiver(listener: TcpListener, mode: Mode) -> Arc<Mutex<Vec<serde_json::Value>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let got = Arc::clone(&keep);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                got.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                if mode == Mode::Hang {
                    std::thread::sleep(Duration::from_secs(60));
                    return;
                }
                let mut stream = stream;
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            });
        }
    });
    got
}

fn wait_for(
    got: &Mutex<Vec<serde_json::Value>>,
    n: usize,
    limit: Duration,
) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let v = got.lock().unwrap().clone();
        if v.len() >= n || start.elapsed() > limit {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn deliveries(p: &Project) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p.path(".reagent/notify/deliveries.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn toy() -> Project {
    Project::new(|t| t.replace("max_trials = 24", "max_trials = 10"))
}

#[test]
fn a_webhook_is_told_of_a_waiting_plan_a_budget_share_and_the_end() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = receiver(listener, Mode::Answer);
    let p = toy();
    // Each trial reserves 1 CPU x 20 s of the 1 CPU-hour budget: 1% is
    // crossed by the second launch.
    std::fs::write(
        p.path(".reagent/config.toml"),
        format!(
            "[notify]\nwebhook = \"http://127.0.0.1:{port}/hook\"\nbudget_thresholds = [0.01]\n"
        ),
    )
    .unwrap();
    let o = p.reagent(&["plan", "toy.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    let first = wait_for(&got, 1, Duration::from_secs(30));
    assert_eq!(first.len(), 1, "the waiting plan was not told");
    assert_eq!(first[0]["reagent"]["event"], "approval", "{}", first[0]);
    let said = first[0]["text"].as_str().unwrap();
    assert!(
        said.contains("waits for approval 1 (plan)") && said.contains("reagent approve 1"),
        "{said}"
    );

    let o = p.reagent(&["run", "1", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let all = wait_for(&got, 3, Duration::from_secs(30));
    let events: Vec<&str> = all
        .iter()
        .map(|m| m["reagent"]["event"].as_str().unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{all:?}");
    assert!(
        events.contains(&"budget") && events.contains(&"end"),
        "{events:?}"
    );
    let end = all.iter().find(|m| m["reagent"]["event"] == "end").unwrap();
    assert!(end["text"].as_str().unwrap().contains("finished"), "{end}");
    // Each delivery is recorded, once: a later pass tells nothing again.
    let o = p.reagent(&["wake"]);
    assert!(o.status.success(), "{}", text(&o));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(got.lock().unwrap().len(), 3);
    let d = deliveries(&p);
    assert_eq!(d.len(), 3, "{d:?}");
    assert!(
        d.iter()
            .all(|l| l["ok"] == true && l["channel"] == "webhook"),
        "{d:?}"
    );
}

#[test]
fn a_hanging_receiver_does_not_hold_the_campaign_and_a_down_one_is_retried() {
    // Hanging: the campaign runs to its end while the request waits.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = receiver(listener, Mode::Hang);
    let p = toy();
    std::fs::write(
        p.path(".reagent/config.toml"),
        format!("[notify]\nwebhook = \"http://127.0.0.1:{port}/hook\"\non = [\"approval\"]\n"),
    )
    .unwrap();
    assert!(p.reagent(&["plan", "toy.toml"]).status.success());
    assert_eq!(wait_for(&got, 1, Duration::from_secs(30)).len(), 1);
    let o = p.reagent(&["run", "1", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(p.json(&["status", "1", "--json"])["state"], "finished");
    // The receiver still has not answered: nothing is recorded as sent.
    assert!(
        deliveries(&p).iter().all(|l| l["ok"] != true),
        "{:?}",
        deliveries(&p)
    );

    // Down: refused, recorded, retried after the backoff, delivered.
    let spare = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = spare.local_addr().unwrap().port();
    drop(spare);
    let p = toy();
    std::fs::write(
        p.path(".reagent/config.toml"),
        format!("[notify]\nwebhook = \"http://127.0.0.1:{port}/hook\"\non = [\"approval\"]\n"),
    )
    .unwrap();
    assert!(p.reagent(&["plan", "toy.toml"]).status.success());
    let start = Instant::now();
    while deliveries(&p).is_empty() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let d = deliveries(&p);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["ok"], false, "{d:?}");
    assert_eq!(d[0]["attempt"], 1, "{d:?}");
    // Still in the outbox, waiting for its next attempt (a dot file is
    // the helper rewriting it).
    let waiting = std::fs::read_dir(p.path(".reagent/notify/outbox"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(waiting, 1);
    // The receiver comes up on that port: the retry (5 s later) gets through.
    let got = receiver(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        Mode::Answer,
    );
    assert_eq!(
        wait_for(&got, 1, Duration::from_secs(30)).len(),
        1,
        "the retry never came"
    );
    let start = Instant::now();
    while deliveries(&p).len() < 2 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let d = deliveries(&p);
    assert_eq!(
        (d.len(), &d[1]["ok"], &d[1]["attempt"]),
        (2, &serde_json::json!(true), &serde_json::json!(2)),
        "{d:?}"
    );
    assert_eq!(
        std::fs::read_dir(p.path(".reagent/notify/sent"))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn a_command_gets_the_message_on_its_stdin() {
    let p = toy();
    let inbox = p.path("inbox.jsonl");
    std::fs::write(
        p.path(".reagent/config.toml"),
        format!(
            "[notify]\ncommand = [\"sh\", \"-c\", \"cat >> '{}'; echo >> '{}'; echo \\\"$REAGENT_NOTIFY_EVENT\\\" >> '{}.events'\"]\non = [\"approval\", \"end\"]\n",
            inbox.display(),
            inbox.display(),
            inbox.display()
        ),
    )
    .unwrap();
    assert!(p.reagent(&["plan", "toy.toml"]).status.success());
    let o = p.reagent(&["run", "1", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let start = Instant::now();
    let messages = loop {
        let got: Vec<serde_json::Value> = std::fs::read_to_string(&inbox)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if got.len() >= 2 || start.elapsed() > Duration::from_secs(30) {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let events: Vec<&str> = messages
        .iter()
        .map(|m| m["reagent"]["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["approval", "end"], "{messages:?}");
    let env = std::fs::read_to_string(format!("{}.events", inbox.display())).unwrap();
    assert_eq!(env.lines().collect::<Vec<_>>(), ["approval", "end"]);
    let d = deliveries(&p);
    assert!(
        d.iter()
            .all(|l| l["ok"] == true && l["channel"] == "command"),
        "{d:?}"
    );
}
