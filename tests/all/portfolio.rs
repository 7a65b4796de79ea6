//! One workspace, many campaigns, one quota (issue 19): eight campaigns
//! of the toy job under `[quota] jobs = 4`, one of them weighing 5. Checked
//! from the jobs' own start and end times: never more than 4 at once, the
//! heavy campaign held its weighted share within one slot while everyone
//! competed, and every campaign ended with a proposal. Then the same under
//! SIGKILLs of the driver at random instants: nothing lost, no job run
//! twice, the quota never exceeded.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::campaign::{Project, text};
use reagent::records::campaign::TrialStatus;
use reagent::store::Store;

const CAMPAIGNS: usize = 8;
const JOBS: usize = 4;
const TRIALS: u32 = 10;
/// The heavy campaign (`toy1`) and its weight; the others weigh 1.
const HEAVY: f64 = 5.0;

/// Eight campaign files (`toy1.toml` … `toy8.toml`), each allowed 4 jobs
/// at once on its own, planned and approved, under the quota.
fn portfolio(sleep: &str) -> Project {
    let p = Project::new(|t| t);
    let base = std::fs::read_to_string(p.path("toy.toml")).unwrap();
    for i in 1..=CAMPAIGNS {
        let t = base
            .replace("name = \"toy\"", &format!("name = \"toy{i}\""))
            .replace("max_trials = 24", &format!("max_trials = {TRIALS}"))
            .replace("max_parallel = 2", "max_parallel = 4")
            .replace("confirm_replicates = 2", "confirm_replicates = 1")
            .replace(
                "resources = { cpus = 1 }",
                &format!(
                    "resources = {{ cpus = 1 }}\nenv = {{ TOY_RUNS = \"runs.log\", TOY_SPANS = \"spans.log\", TOY_SLEEP = \"{sleep}\" }}"
                ),
            );
        std::fs::write(p.path(&format!("toy{i}.toml")), t).unwrap();
    }
    // Jobs may append to these, not create them.
    std::fs::write(p.path("runs.log"), "").unwrap();
    std::fs::write(p.path("spans.log"), "").unwrap();
    std::fs::write(
        p.path(".reagent/config.toml"),
        format!("[quota]\njobs = {JOBS}\n\n[quota.weights]\ntoy1 = {HEAVY}\n"),
    )
    .unwrap();
    for i in 1..=CAMPAIGNS {
        let o = p.reagent(&["plan", &format!("toy{i}.toml"), "--yes"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    p
}

/// Drives every campaign to its end (a driver serves them all; each `run`
/// returns when its own campaign ends).
fn finish_all(p: &Project) {
    for i in 1..=CAMPAIGNS {
        let o = p.reagent(&["run", &i.to_string()]);
        assert!(o.status.code().is_some(), "run {i}: {}", text(&o));
        let s = p.wait_finished(&i.to_string(), Duration::from_secs(120));
        assert_eq!(s["state"], "finished", "campaign {i}: {s}");
    }
}

/// (campaign name, start ns, end ns) of every job, from `spans.log`.
fn spans(p: &Project) -> Vec<(String, u128, u128)> {
    let log = std::fs::read_to_string(p.path("spans.log")).unwrap();
    let mut open: BTreeMap<String, (String, u128)> = BTreeMap::new();
    let mut done = Vec::new();
    for line in log.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (kind, at, campaign, dir) = (f[0], f[1].parse::<u128>().unwrap(), f[2], f[3]);
        match kind {
            "start" => {
                assert!(
                    open.insert(dir.to_string(), (campaign.to_string(), at))
                        .is_none(),
                    "{dir} started twice"
                );
            }
            _ => {
                let (c, start) = open.remove(dir).expect("an end without a start");
                done.push((c, start, at));
            }
        }
    }
    assert!(open.is_empty(), "jobs that never ended: {open:?}");
    done
}

/// The most jobs that ran at once.
fn most_at_once(spans: &[(String, u128, u128)]) -> usize {
    let mut edges: Vec<(u128, i32)> = spans
        .iter()
        .flat_map(|(_, s, e)| [(*s, 1), (*e, -1)])
        .collect();
    // Ends before starts at the same instant.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// The average number of `campaign`'s jobs running over [from, to].
fn average_running(spans: &[(String, u128, u128)], campaign: &str, from: u128, to: u128) -> f64 {
    let busy: u128 = spans
        .iter()
        .filter(|(c, ..)| c == campaign)
        .map(|(_, s, e)| (*e).min(to).saturating_sub((*s).max(from)))
        .sum();
    busy as f64 / (to - from) as f64
}

/// The chain is intact; each campaign's ledger is exact; every job ran once.
fn check_books(p: &Project, label: &str) {
    // A job's supervisor may still be running its `reagent wake` briefly.
    let start = std::time::Instant::now();
    let store = loop {
        match Store::open(&p.path(".reagent/reagent.redb")) {
            Ok(s) => break s,
            Err(e) if start.elapsed() > Duration::from_secs(30) => panic!("{label}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let events = store.events(0).unwrap();
    assert_eq!(
        store.verify_chain().unwrap(),
        Ok(events.len() as u64),
        "{label}"
    );
    for c in store.campaigns().unwrap() {
        let trials = store.trials(c.id).unwrap();
        assert!(c.ledger.reserved_cpu.abs() < 1e-9, "{label}: {}", c.id);
        let spent: f64 = trials.iter().map(|t| t.spent_cpu).sum();
        assert!(
            (c.ledger.spent_cpu - spent).abs() < 1e-9,
            "{label}: {}",
            c.id
        );
        let launched = trials
            .iter()
            .filter(|t| !matches!(t.status, TrialStatus::Queued | TrialStatus::Dropped))
            .count();
        assert_eq!(c.ledger.launched as usize, launched, "{label}: {}", c.id);
        assert!(launched <= TRIALS as usize, "{label}: {}", c.id);
        assert!(
            c.winner.is_some(),
            "{label}: campaign {} has no proposal",
            c.id
        );
    }
    let runs = std::fs::read_to_string(p.path("runs.log")).unwrap();
    let mut seen = BTreeMap::new();
    for dir in runs.lines() {
        *seen.entry(dir).or_insert(0) += 1;
    }
    assert!(
        seen.values().all(|&n| n == 1),
        "{label}: a job ran twice: {seen:?}"
    );
}

#[test]
fn eight_campaigns_share_four_slots_by_weight() {
    let p = portfolio("0.4");
    // The portfolio view shows the quota and each campaign's share.
    let o = p.reagent(&["status"]);
    let out = text(&o);
    assert!(out.contains("workspace quota: 4 jobs at once"), "{out}");
    assert!(out.contains("quota: weight 5"), "{out}");
    let q = p.json(&["quota", "--json"]);
    assert_eq!(q["quota"]["jobs"], 4, "{q}");
    assert_eq!(q["standing"]["campaigns"].as_array().unwrap().len(), 8);

    finish_all(&p);
    let spans = spans(&p);
    let most = most_at_once(&spans);
    assert!(
        most <= JOBS,
        "{most} jobs ran at once under a quota of {JOBS}"
    );
    assert_eq!(most, JOBS, "the quota's slots were never all used");
    // While every campaign competed (from the last campaign's first start
    // to the first campaign's last end), the heavy one ran its weighted
    // share of the slots, within one slot.
    let mut first = BTreeMap::new();
    let mut last = BTreeMap::new();
    for (c, s, e) in &spans {
        let f = first.entry(c.clone()).or_insert(*s);
        *f = (*f).min(*s);
        let l = last.entry(c.clone()).or_insert(*e);
        *l = (*l).max(*e);
    }
    assert_eq!(first.len(), CAMPAIGNS);
    let from = *first.values().max().unwrap();
    let to = *last.values().min().unwrap();
    assert!(to > from, "the campaigns never competed");
    let share = JOBS as f64 * HEAVY / (HEAVY + (CAMPAIGNS - 1) as f64);
    let heavy = average_running(&spans, "toy1", from, to);
    let light: Vec<f64> = (2..=CAMPAIGNS)
        .map(|i| average_running(&spans, &format!("toy{i}"), from, to))
        .collect();
    eprintln!(
        "portfolio: {} jobs, at most {most} at once; over {:.1} s of competition the heavy campaign ran {heavy:.2} jobs on average (share {share:.2}), the others {light:.2?}",
        spans.len(),
        (to - from) as f64 / 1e9
    );
    assert!(
        (heavy - share).abs() <= 1.0,
        "the heavy campaign ran {heavy:.2} jobs on average, its share is {share:.2}"
    );
    check_books(&p, "clean");
}

#[test]
fn killing_the_driver_of_a_portfolio_loses_nothing_and_never_exceeds_the_quota() {
    let p = portfolio("0.6");
    let mut rng = 19u64;
    let mut killed = 0;
    while killed < 15 {
        let mut driver = p
            .command(&["run", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(
            100 + crate::kill_points::next(&mut rng) % 500,
        ));
        if driver.try_wait().unwrap().is_some() {
            break;
        }
        driver.kill().unwrap();
        driver.wait().unwrap();
        killed += 1;
    }
    assert!(
        killed >= 5,
        "only {killed} kills: the portfolio ended too soon"
    );
    finish_all(&p);
    let spans = spans(&p);
    let most = most_at_once(&spans);
    eprintln!(
        "portfolio under {killed} SIGKILLs: {} jobs, at most {most} at once",
        spans.len()
    );
    assert!(
        most <= JOBS,
        "{most} jobs ran at once under a quota of {JOBS}"
    );
    check_books(&p, "killed");
}

#[test]
fn quota_hours_hold_trials_until_the_cap_is_raised() {
    let p = Project::new(|t| {
        t.replace("max_trials = 24", "max_trials = 8")
            .replace("max_parallel = 2", "max_parallel = 4")
            .replace("confirm_replicates = 2", "confirm_replicates = 1")
            .replace(
                "resources = { cpus = 1 }",
                "resources = { cpus = 1 }\nenv = { TOY_SPANS = \"spans.log\", TOY_SLEEP = \"0.3\" }",
            )
    });
    std::fs::write(p.path("spans.log"), "").unwrap();
    let config = p.path(".reagent/config.toml");
    // A mistake in the file: located, and nothing launches.
    std::fs::write(&config, "[quota]\njobs = 0\n").unwrap();
    let o = p.reagent(&["run", "toy.toml", "--yes", "--detach"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("config.toml:2:8"), "{out}");
    assert!(out.contains("nothing launches"), "{out}");
    let o = p.reagent(&["quota"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // A trial reserves 1 CPU × 20 s = 0.0056 CPU-hours: a cap of 0.005 a
    // day holds every trial back, and says so.
    std::fs::write(&config, "[quota]\ncpu_hours_per_day = 0.005\n").unwrap();
    let o = p.reagent(&["run", "1", "--detach"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("waiting: the workspace quota of 0.005 CPU-hours per day is used"),
        "{out}"
    );
    let s = p.json(&["status", "1", "--json"]);
    assert_eq!(s["trials"]["running"], 0, "{s}");
    assert!(s["trials"]["queued"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(std::fs::read_to_string(p.path("spans.log")).unwrap(), "");
    let q = text(&p.reagent(&["quota"]));
    assert!(q.contains("0.000 of 0.005 CPU-h in the last 24 h"), "{q}");
    // Raised to fit two reservations: the campaign runs to its end, never
    // more than two trials at once (its own max_parallel is 4).
    std::fs::write(&config, "[quota]\ncpu_hours_per_day = 0.012\n").unwrap();
    let o = p.reagent(&["run", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = p.wait_finished("1", Duration::from_secs(60));
    assert_eq!(s["state"], "finished", "{s}");
    let spans = spans(&p);
    assert!(spans.len() >= 6, "{spans:?}");
    let most = most_at_once(&spans);
    assert!(
        most <= 2,
        "{most} trials at once under an hours cap that fits 2"
    );
    assert_eq!(most, 2, "the cap's room for two was never used");
}
