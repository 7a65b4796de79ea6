//! Notifications: `[notify]` in `.reagent/config.toml`. Someone is told
//! when an approval request waits, when a campaign ends (finished, halted,
//! cancelled), and when a campaign's spend crosses a share of its budget —
//! through a webhook (a JSON `POST` in the shape of Slack-style incoming
//! webhooks: `{"text": …}`, plus a `reagent` object) and/or a command
//! (the same JSON on its stdin).
//!
//! Never in the engine's way: after each pass the driver only writes small
//! files into `.reagent/notify/outbox/` (one per message, named after what
//! caused it, so a pass repeated after a crash spools nothing twice) and
//! starts `reagent __notify` detached if none runs. That process delivers,
//! retries with backoff (5 s, doubling, at most 1 h apart, 10 attempts),
//! moves each message to `sent/` or `failed/`, and appends every attempt to
//! `deliveries.jsonl`.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::records::campaign::EventBody;
use crate::spec::ConfigError;
use crate::store::Store;

/// What can be notified.
pub const KINDS: [&str; 3] = ["approval", "end", "budget"];
/// Attempts before a message is given up (moved to `failed/`).
pub const MAX_ATTEMPTS: u32 = 10;
const FIRST_BACKOFF_MS: u64 = 5_000;
const MAX_BACKOFF_MS: u64 = 3_600_000;

/// The `[notify]` section, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    pub webhook: Option<String>,
    pub command: Option<Vec<String>>,
    pub on: BTreeSet<String>,
    /// Shares of a campaign's budget (spent + reserved) that are told.
    pub budget_thresholds: Vec<f64>,
}

/// Parses a workspace config; `Ok(None)` without `[notify]`.
pub fn parse(file: &str, text: &str) -> Result<Option<Notify>, ConfigError> {
    resolve(&crate::config::parse(file, text)?)
}

/// The `[notify]` of a parsed config, checked.
pub fn resolve(c: &crate::config::Config) -> Result<Option<Notify>, ConfigError> {
    let Some(n) = c.sections.notify.clone() else {
        return Ok(None);
    };
    let at = |span: std::ops::Range<usize>, m: String| c.at(span, m);
    if let Some(w) = &n.webhook {
        let u = w.get_ref();
        if !(u.starts_with("https://") || u.starts_with("http://")) || u.len() > 2048 {
            return Err(at(
                w.span(),
                format!("notify.webhook must be an http:// or https:// URL (it is {u:?})"),
            ));
        }
    }
    if let Some(c) = &n.command
        && (c.get_ref().is_empty() || c.get_ref()[0].is_empty())
    {
        return Err(at(
            c.span(),
            "notify.command must name a program: [\"/path/to/program\", \"arg\", …]".into(),
        ));
    }
    if n.webhook.is_none() && n.command.is_none() {
        return Err(at(
            0..0,
            "[notify] needs a `webhook` URL or a `command` to call".into(),
        ));
    }
    let mut on = BTreeSet::new();
    for k in n.on.unwrap_or_else(|| {
        KINDS
            .iter()
            .map(|k| Spanned::new(0..0, (*k).to_string()))
            .collect()
    }) {
        if !KINDS.contains(&k.get_ref().as_str()) {
            return Err(at(
                k.span(),
                format!(
                    "notify.on: unknown event {:?}; the events are {}",
                    k.get_ref(),
                    KINDS.join(", ")
                ),
            ));
        }
        on.insert(k.into_inner());
    }
    let thresholds = match n.budget_thresholds {
        Some(t) => {
            if t.get_ref()
                .iter()
                .any(|x| !(x.is_finite() && *x > 0.0 && *x <= 1.0))
            {
                return Err(at(
                    t.span(),
                    "notify.budget_thresholds are shares of the budget, each in (0, 1]".into(),
                ));
            }
            t.into_inner()
        }
        None => vec![0.5, 0.9],
    };
    Ok(Some(Notify {
        webhook: n.webhook.map(Spanned::into_inner),
        command: n.command.map(Spanned::into_inner),
        on,
        budget_thresholds: thresholds,
    }))
}

/// The `[notify]` of the workspace at `dir` (its `.reagent/`).
pub fn load(dir: &Path) -> Result<Option<Notify>, ConfigError> {
    match crate::config::read(dir)? {
        Some(c) => resolve(&c),
        None => Ok(None),
    }
}

/// One message, as spooled and delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    /// Unique per cause (e.g. `e42-approval`, `c3-budget-90`).
    pub name: String,
    pub kind: String,
    pub campaign: Option<u64>,
    /// One line for people (Slack-style escaping is applied at delivery).
    pub text: String,
    /// Structured details (approval id and kind, state, spend…).
    pub data: serde_json::Value,
    pub created_ms: u64,
    pub attempts: u32,
    pub next_ms: u64,
    /// Channels that took it (`webhook`, `command`).
    #[serde(default)]
    pub done: BTreeSet<String>,
}

fn folder(ws_dir: &Path, sub: &str) -> PathBuf {
    ws_dir.join("notify").join(sub)
}

fn spooled(ws_dir: &Path, name: &str) -> bool {
    ["outbox", "sent", "failed"]
        .iter()
        .any(|s| folder(ws_dir, s).join(format!("{name}.json")).exists())
}

fn spool(ws_dir: &Path, m: &Message) -> anyhow::Result<bool> {
    if spooled(ws_dir, &m.name) {
        return Ok(false);
    }
    let dir = folder(ws_dir, "outbox");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::files::write_atomic(
        &dir.join(format!("{}.json", m.name)),
        &serde_json::to_vec_pretty(m)?,
    )?;
    Ok(true)
}

/// The next event to look at, kept in `notify/cursor`; `None` before the
/// first look.
fn cursor(ws_dir: &Path) -> Option<u64> {
    let t = std::fs::read_to_string(folder(ws_dir, "cursor")).ok()?;
    t.trim().parse().ok()
}

/// At the first look, an ended campaign older than this is history, not
/// news (requests still waiting are always told).
const FIRST_LOOK_MS: u64 = 3_600_000;

/// After a pass: spools a message for each approval still waiting, each
/// campaign that ended, and each budget share crossed since the last call.
/// Returns how many it spooled.
pub fn collect(ws_dir: &Path, store: &Store, cfg: &Notify, now: u64) -> anyhow::Result<usize> {
    let first_look = cursor(ws_dir);
    let from = first_look.unwrap_or(1);
    let first_look = first_look.is_none();
    let events = store.events(from)?;
    let mut count = 0;
    let name_of = |id: Option<u64>| -> anyhow::Result<String> {
        Ok(match id {
            Some(id) => store.campaign(id)?.map(|c| c.spec.name).unwrap_or_default(),
            None => String::new(),
        })
    };
    for e in &events {
        let m = match &e.body {
            EventBody::ApprovalRequested {
                id,
                kind,
                summary,
                expires_ms,
                ..
            } if cfg.on.contains("approval") => {
                // Decided already (the policy approved it): nobody waits.
                let pending = store
                    .approval(*id)?
                    .is_some_and(|a| a.state == crate::governance::ApprovalState::Pending);
                if !pending {
                    continue;
                }
                let c = e.campaign;
                Message {
                    name: format!("e{}-approval", e.seq),
                    kind: "approval".into(),
                    campaign: c,
                    text: format!(
                        "reagent: campaign {} ({}) waits for approval {id} ({}): {summary} — `reagent approve {id}` or `reagent reject {id} --reason …`; it expires at {}",
                        c.unwrap_or(0),
                        name_of(c)?,
                        kind.name(),
                        crate::time::utc(*expires_ms)
                    ),
                    data: serde_json::json!({"approval": id, "kind": kind.name(), "summary": summary, "expires_ms": expires_ms}),
                    created_ms: now,
                    attempts: 0,
                    next_ms: now,
                    done: BTreeSet::new(),
                }
            }
            EventBody::StateChanged { to, reason, .. }
                if to.is_terminal()
                    && cfg.on.contains("end")
                    && !(first_look && now.saturating_sub(e.at_ms) > FIRST_LOOK_MS) =>
            {
                let c = e.campaign;
                let verdict = match c {
                    Some(id) => crate::campaign::report::headline(
                        &crate::campaign::engine::View::load(store, id)?,
                    ),
                    None => String::new(),
                };
                Message {
                    name: format!("e{}-end", e.seq),
                    kind: "end".into(),
                    campaign: c,
                    text: format!(
                        "reagent: campaign {} ({}) {}: {reason}. {verdict} — `reagent report {}`",
                        c.unwrap_or(0),
                        name_of(c)?,
                        to.name(),
                        c.unwrap_or(0)
                    ),
                    data: serde_json::json!({"state": to.name(), "reason": reason, "verdict": verdict}),
                    created_ms: now,
                    attempts: 0,
                    next_ms: now,
                    done: BTreeSet::new(),
                }
            }
            _ => continue,
        };
        if spool(ws_dir, &m)? {
            count += 1;
        }
    }
    if cfg.on.contains("budget") {
        count += budget_messages(ws_dir, store, cfg, now)?;
    }
    let next = events.last().map_or(from, |e| e.seq + 1);
    let dir = ws_dir.join("notify");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::files::write_atomic(&folder(ws_dir, "cursor"), format!("{next}\n").as_bytes())?;
    Ok(count)
}

fn budget_messages(ws_dir: &Path, store: &Store, cfg: &Notify, now: u64) -> anyhow::Result<usize> {
    let mut count = 0;
    for c in store.campaigns()? {
        // (An ended campaign's message says what it spent.)
        if !c.state.is_active() {
            continue;
        }
        let b = c.budget();
        let l = &c.ledger;
        let share = |used: f64, budget: f64| if budget > 0.0 { used / budget } else { 0.0 };
        let used = share(l.spent_cpu + l.reserved_cpu, b.cpu_hours)
            .max(share(l.spent_gpu + l.reserved_gpu, b.gpu_hours));
        for t in &cfg.budget_thresholds {
            if used + 1e-12 < *t {
                continue;
            }
            let pct = (t * 100.0).round() as u32;
            let m = Message {
                name: format!("c{}-budget-{pct}", c.id),
                kind: "budget".into(),
                campaign: Some(c.id),
                text: format!(
                    "reagent: campaign {} ({}) has used {:.0}% of its budget ({:.3} of {} CPU-hours spent or reserved, {:.3} of {} GPU-hours)",
                    c.id,
                    c.spec.name,
                    used * 100.0,
                    l.spent_cpu + l.reserved_cpu,
                    b.cpu_hours,
                    l.spent_gpu + l.reserved_gpu,
                    b.gpu_hours
                ),
                data: serde_json::json!({"threshold": t, "used": used}),
                created_ms: now,
                attempts: 0,
                next_ms: now,
                done: BTreeSet::new(),
            };
            if spool(ws_dir, &m)? {
                count += 1;
            }
        }
    }
    Ok(count)
}

/// Whether messages wait in the outbox.
pub fn pending(ws_dir: &Path) -> bool {
    std::fs::read_dir(folder(ws_dir, "outbox"))
        .map(|mut d| d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))))
        .unwrap_or(false)
}

/// Starts `reagent __notify` detached when messages wait and no delivery
/// process holds the lock.
pub fn start_delivery(ws_dir: &Path) -> anyhow::Result<()> {
    if !pending(ws_dir) {
        return Ok(());
    }
    let lock = ws_dir.join("notify").join("deliver.lock");
    match crate::jobs::local::try_lock(&lock, libc::LOCK_EX)? {
        // Free: let go, and let the new process take it.
        Some(file) => drop(file),
        None => return Ok(()),
    }
    let exe = std::env::current_exe().context("finding the reagent executable")?;
    crate::jobs::local::spawn_detached(
        &exe,
        &[std::ffi::OsStr::new("__notify"), ws_dir.as_os_str()],
    )?;
    Ok(())
}

/// Text for a Slack-style receiver: `&`, `<`, `>` are its markup.
fn slack_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn body(m: &Message, ws_dir: &Path) -> serde_json::Value {
    serde_json::json!({
        "text": slack_text(&m.text),
        "reagent": {
            "event": m.kind,
            "name": m.name,
            "campaign": m.campaign,
            "text": m.text,
            "data": m.data,
            "workspace": ws_dir,
        }
    })
}

fn post(url: &str, json: &serde_json::Value) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    match agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(json.to_string().as_bytes())
    {
        Ok(r) if r.status().is_success() => Ok(format!("HTTP {}", r.status().as_u16())),
        Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
        Err(e) => Err(e.to_string()),
    }
}

fn run_command(argv: &[String], json: &serde_json::Value, kind: &str) -> Result<String, String> {
    let mut child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env("REAGENT_NOTIFY_EVENT", kind)
        .env_remove("REAGENT_SUPERVISOR_PROCESS")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", argv[0]))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(json.to_string().as_bytes());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait() {
            Ok(Some(s)) if s.success() => return Ok("exit 0".into()),
            Ok(Some(s)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                let err: String = err.chars().take(300).collect();
                return Err(format!("{s}: {}", err.trim()));
            }
            Ok(None) if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("timed out after 30 s".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn record(ws_dir: &Path, m: &Message, channel: &str, result: &Result<String, String>) {
    let line = serde_json::json!({
        "at": crate::time::utc(crate::store::now_ms()),
        "message": m.name,
        "event": m.kind,
        "campaign": m.campaign,
        "channel": channel,
        "attempt": m.attempts,
        "ok": result.is_ok(),
        "detail": match result { Ok(s) | Err(s) => s },
    });
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ws_dir.join("notify").join("deliveries.jsonl"))
    {
        let _ = writeln!(f, "{line}");
    }
}

/// One attempt at every channel not yet done; returns whether all are.
fn attempt(ws_dir: &Path, cfg: &Notify, m: &mut Message) -> bool {
    m.attempts += 1;
    let json = body(m, ws_dir);
    if let Some(url) = cfg
        .webhook
        .as_deref()
        .filter(|_| !m.done.contains("webhook"))
    {
        let r = post(url, &json);
        record(ws_dir, m, "webhook", &r);
        if r.is_ok() {
            m.done.insert("webhook".into());
        }
    }
    if let Some(argv) = cfg.command.as_ref().filter(|_| !m.done.contains("command")) {
        let r = run_command(argv, &json, &m.kind);
        record(ws_dir, m, "command", &r);
        if r.is_ok() {
            m.done.insert("command".into());
        }
    }
    let took = |configured: bool, channel: &str| !configured || m.done.contains(channel);
    took(cfg.webhook.is_some(), "webhook") && took(cfg.command.is_some(), "command")
}

/// `reagent __notify DIR`: delivers the outbox, waiting for retries, and
/// exits when it is empty. One at a time (`notify/deliver.lock`).
pub fn deliver(ws_dir: &Path) -> anyhow::Result<()> {
    let lock = ws_dir.join("notify").join("deliver.lock");
    let Some(_held) = crate::jobs::local::try_lock(&lock, libc::LOCK_EX)? else {
        return Ok(());
    };
    loop {
        // Read the config each round: a fixed URL applies to retries.
        let Some(cfg) = load(ws_dir)? else {
            return Ok(());
        };
        let mut next_due: Option<u64> = None;
        let mut entries: Vec<PathBuf> = std::fs::read_dir(folder(ws_dir, "outbox"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.retain(|p| p.extension().is_some_and(|x| x == "json"));
        if entries.is_empty() {
            return Ok(());
        }
        // In the order they were spooled (names sort `e10` before `e4`).
        let mut messages: Vec<(PathBuf, Message)> = entries
            .into_iter()
            .filter_map(|path| {
                let m = serde_json::from_slice::<Message>(&std::fs::read(&path).ok()?).ok()?;
                Some((path, m))
            })
            .collect();
        messages.sort_by(|a, b| (a.1.created_ms, &a.1.name).cmp(&(b.1.created_ms, &b.1.name)));
        for (path, mut m) in messages {
            let now = crate::store::now_ms();
            if m.next_ms > now {
                next_due = Some(next_due.map_or(m.next_ms, |d| d.min(m.next_ms)));
                continue;
            }
            let file = path.file_name().unwrap_or_default().to_owned();
            if attempt(ws_dir, &cfg, &mut m) {
                move_to(ws_dir, "sent", &file, &m)?;
                std::fs::remove_file(&path).ok();
            } else if m.attempts >= MAX_ATTEMPTS {
                move_to(ws_dir, "failed", &file, &m)?;
                std::fs::remove_file(&path).ok();
            } else {
                let backoff = (FIRST_BACKOFF_MS << (m.attempts - 1).min(20)).min(MAX_BACKOFF_MS);
                m.next_ms = crate::store::now_ms() + backoff;
                crate::files::write_atomic(&path, &serde_json::to_vec_pretty(&m)?)?;
                next_due = Some(next_due.map_or(m.next_ms, |d| d.min(m.next_ms)));
            }
        }
        if let Some(due) = next_due {
            let wait = due.saturating_sub(crate::store::now_ms());
            std::thread::sleep(Duration::from_millis(wait.clamp(50, MAX_BACKOFF_MS)));
        }
    }
}

fn move_to(ws_dir: &Path, sub: &str, file: &std::ffi::OsStr, m: &Message) -> anyhow::Result<()> {
    let dir = folder(ws_dir, sub);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::files::write_atomic(&dir.join(file), &serde_json::to_vec_pretty(m)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_parses_with_defaults_and_its_mistakes_are_located() {
        let n = parse("c.toml", "[notify]\nwebhook = \"http://127.0.0.1:9/x\"\n")
            .unwrap()
            .unwrap();
        assert_eq!(n.on.len(), 3);
        assert_eq!(n.budget_thresholds, vec![0.5, 0.9]);
        assert_eq!(parse("c.toml", "[quota]\njobs = 2\n").unwrap(), None);
        let e = parse("c.toml", "[notify]\nwebhook = \"ftp://x\"\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = parse(
            "c.toml",
            "[notify]\ncommand = [\"x\"]\non = [\"approvals\"]\n",
        )
        .unwrap_err();
        assert!(e.message.contains("unknown event \"approvals\""), "{e}");
        assert_eq!(e.line, 3, "{e}");
        let e = parse(
            "c.toml",
            "[notify]\ncommand = [\"x\"]\nbudget_thresholds = [1.5]\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(parse("c.toml", "[notify]\non = [\"end\"]\n").is_err());
    }

    #[test]
    fn slack_markup_in_what_strategies_wrote_is_escaped() {
        assert_eq!(
            slack_text("<!channel> & <b>"),
            "&lt;!channel&gt; &amp; &lt;b&gt;"
        );
    }
}
