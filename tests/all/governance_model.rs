//! Model-based property test of invariant 1: no sequence of approvals,
//! rejections, expiries, crashes, job outcomes (retries, escalations) and
//! budget-increase decisions launches a job without an approved plan or
//! beyond the approved budget.
//!
//! Each case drives the real engine, store and sandbox (built-in
//! strategies) against an in-memory backend, with random operations from a
//! seeded generator, and keeps a model of what the approvals should be. After
//! every operation it checks the invariants against the store, the backend
//! and the model. A failure prints the seed and the operations so far.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reagent::campaign::engine::Engine;
use reagent::governance::policy::Policy;
use reagent::governance::{self, ApprovalKind, ApprovalState, Decision, Identity};
use reagent::jobs::{Backend, JobHandle, JobOutcome, JobSpec, JobState};
use reagent::records::campaign::{EventBody, TrialStatus};
use reagent::store::Store;

/// Jobs in memory: submitted ones run until the test finishes them.
#[derive(Default)]
struct FakeBackend {
    jobs: Mutex<BTreeMap<String, JobState>>,
    /// Every submission that started a job, in order.
    started: Mutex<Vec<String>>,
}

impl Backend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn submit(&self, spec: &JobSpec) -> anyhow::Result<JobHandle> {
        let mut jobs = self.jobs.lock().unwrap();
        if !jobs.contains_key(&spec.key) {
            jobs.insert(spec.key.clone(), JobState::Running);
            self.started.lock().unwrap().push(spec.key.clone());
        }
        Ok(handle(&spec.key))
    }
    fn find(&self, key: &str) -> anyhow::Result<Option<JobHandle>> {
        Ok(self.jobs.lock().unwrap().get(key).map(|_| handle(key)))
    }
    fn status(&self, h: &JobHandle) -> anyhow::Result<JobState> {
        Ok(self
            .jobs
            .lock()
            .unwrap()
            .get(&h.key)
            .cloned()
            .unwrap_or(JobState::Lost("unknown to the fake backend".into())))
    }
    fn cancel(&self, h: &JobHandle) -> anyhow::Result<()> {
        let outcome = JobOutcome {
            signal: Some(15),
            ..JobOutcome::default()
        };
        self.jobs
            .lock()
            .unwrap()
            .insert(h.key.clone(), JobState::Finished(outcome));
        Ok(())
    }
    fn logs(&self, _: &JobHandle, _: usize) -> anyhow::Result<String> {
        Ok(String::new())
    }
}

fn handle(key: &str) -> JobHandle {
    JobHandle {
        key: key.into(),
        id: key.into(),
    }
}

/// What the model expects of each approval request.
#[derive(Default)]
struct Model {
    /// Request id → (kind, expected state, expires_ms).
    requests: BTreeMap<u64, (ApprovalKind, ApprovalState, u64)>,
    /// Approved budget: the plan's, plus approved increases.
    cpu_hours: f64,
    max_trials: u32,
}

impl Model {
    fn plan(&self) -> ApprovalState {
        self.requests
            .values()
            .find(|r| r.0 == ApprovalKind::Plan)
            .map_or(ApprovalState::Pending, |r| r.1)
    }
}

#[derive(Default)]
struct Coverage {
    launched_cases: u32,
    decided: BTreeMap<(&'static str, &'static str), u32>,
    crashes: u32,
    refused_self: u32,
}

const EXPIRY_MS: u64 = 3_600_000;

fn campaign_text() -> String {
    let toml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/jobs/toy.toml"),
    )
    .unwrap();
    // ~7 trials of budget, 10 trials allowed: exploration spends what
    // confirmation would need, so the agent asks for more.
    toml.replace("cpu_hours = 1.0", "cpu_hours = 0.04")
        .replace("max_trials = 24", "max_trials = 10")
        + "\n[policy]\nask_for_budget = true\napproval_expiry = \"1h\"\n"
}

#[test]
fn no_sequence_of_events_launches_without_an_approved_plan_or_past_the_budget() {
    let cases: u64 = std::env::var("REAGENT_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let text = campaign_text();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/jobs");
    let spec = reagent::spec::parse("toy.toml", &text, &dir).unwrap();
    let mut coverage = Coverage::default();
    for seed in 0..cases {
        run_case(seed, &spec, &mut coverage);
    }
    // The property is only as good as what the cases reached.
    let seen = |kind: &'static str, state: &'static str| {
        coverage.decided.get(&(kind, state)).copied().unwrap_or(0)
    };
    assert!(
        coverage.launched_cases >= cases as u32 / 4,
        "{:?}",
        coverage.decided
    );
    for (kind, state) in [
        ("plan", "approved"),
        ("plan", "rejected"),
        ("plan", "expired"),
        ("escalation", "approved"),
        ("budget-increase", "approved"),
    ] {
        assert!(
            seen(kind, state) > 0,
            "no case reached a {state} {kind} request: {:?}",
            coverage.decided
        );
    }
    assert!(coverage.crashes > 0 && coverage.refused_self > 0);
}

fn run_case(seed: u64, spec: &reagent::spec::Campaign, cov: &mut Coverage) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let mut store = Store::open(&path).unwrap();
    let sandbox = crate::support::sandbox();
    let backend = FakeBackend::default();
    let policy = Policy::default_policy();
    let clock = Cell::new(reagent::store::now_ms());
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut model = Model {
        cpu_hours: spec.budget.cpu_hours,
        max_trials: spec.budget.max_trials,
        ..Model::default()
    };
    let mut log: Vec<String> = Vec::new();

    let (cid, plan) = store
        .write(|tx| governance::register(tx, spec, "toy.toml", "alice", clock.get()))
        .unwrap();
    let cid = cid.id;
    model.requests.insert(
        plan.id,
        (ApprovalKind::Plan, ApprovalState::Pending, plan.expires_ms),
    );

    let alice = Identity::User("alice".into());
    for _step in 0..90 {
        let op = rng.random_range(0..100);
        let what = match op {
            // The engine's pass (what `wake` and `run` do).
            0..=34 => {
                pass(&store, sandbox, &backend, &clock, cid);
                "pass".to_string()
            }
            // A job ends: success, or a failure the debugger handles
            // (crash → exclude, killed → retry, no metrics → escalate).
            35..=59 => {
                let running: Vec<String> = backend
                    .jobs
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(_, s)| matches!(s, JobState::Running))
                    .map(|(k, _)| k.clone())
                    .collect();
                if running.is_empty() {
                    continue;
                }
                let key = running[rng.random_range(0..running.len())].clone();
                let kind = rng.random_range(0..10);
                let outcome = outcome(kind, &mut rng);
                backend
                    .jobs
                    .lock()
                    .unwrap()
                    .insert(key.clone(), JobState::Finished(outcome));
                format!("finish {key} ({kind})")
            }
            // A human decides a pending request.
            60..=74 => {
                let pending: Vec<u64> = model
                    .requests
                    .iter()
                    .filter(|(_, r)| r.1 == ApprovalState::Pending)
                    .map(|(id, _)| *id)
                    .collect();
                if pending.is_empty() {
                    continue;
                }
                let id = pending[rng.random_range(0..pending.len())];
                let approve = rng.random_bool(0.75);
                let (kind, _, expires) = model.requests[&id];
                let result = governance::settle(
                    &store,
                    Decision {
                        id,
                        approve,
                        by: &alice,
                        note: "model says so".into(),
                        expect_hash: None,
                        now: clock.get(),
                    },
                    &policy,
                );
                let expected = if clock.get() >= expires {
                    ApprovalState::Expired
                } else if approve {
                    ApprovalState::Approved
                } else {
                    ApprovalState::Rejected
                };
                assert_eq!(
                    result.is_ok(),
                    expected != ApprovalState::Expired,
                    "seed {seed}: deciding {id} at {}: {result:?}\n{log:#?}",
                    clock.get()
                );
                model.requests.get_mut(&id).unwrap().1 = expected;
                if expected == ApprovalState::Approved && kind == ApprovalKind::BudgetIncrease {
                    let row = store.approval(id).unwrap().unwrap();
                    model.cpu_hours += row.payload["cpu_hours"].as_f64().unwrap();
                    model.max_trials += row.payload["max_trials"].as_u64().unwrap() as u32;
                }
                format!("{} {id} ({})", expected.name(), kind.name())
            }
            // Time passes beyond every deadline; expiries are recorded.
            75..=79 => {
                clock.set(clock.get() + EXPIRY_MS + 1);
                governance::expire_due(&store, clock.get()).unwrap();
                for r in model.requests.values_mut() {
                    if r.1 == ApprovalState::Pending && clock.get() >= r.2 {
                        r.1 = ApprovalState::Expired;
                    }
                }
                "time passes".to_string()
            }
            // The host dies in the middle of a pass: one of its commits
            // fails, and a new process opens the store.
            80..=91 => {
                let k = rng.random_range(1..6);
                store.fail_commit_after(k);
                pass(&store, sandbox, &backend, &clock, cid);
                store.fail_commit_after(0);
                drop(store);
                store = Store::open(&path).unwrap();
                cov.crashes += 1;
                format!("crash at commit {k} of a pass")
            }
            // The agent (a job it launched) tries to approve a request.
            _ => {
                let Some((&id, _)) = model.requests.iter().next_back() else {
                    continue;
                };
                let head = store.head().unwrap();
                let r = governance::settle(
                    &store,
                    Decision {
                        id,
                        approve: true,
                        by: &Identity::Agent,
                        note: String::new(),
                        expect_hash: None,
                        now: clock.get(),
                    },
                    &policy,
                );
                assert!(r.is_err(), "seed {seed}: the agent approved {id}");
                assert_eq!(store.head().unwrap(), head, "a refusal writes nothing");
                cov.refused_self += 1;
                format!("agent tries to approve {id}")
            }
        };
        log.push(what);
        // Requests the engine raised join the model as pending; when the
        // engine's pass expired or applied them, the model follows the rule
        // (expired exactly when due and undecided).
        for a in store.approvals_of(cid).unwrap() {
            let entry = model.requests.entry(a.id).or_insert((
                a.kind,
                ApprovalState::Pending,
                a.expires_ms,
            ));
            if entry.1 == ApprovalState::Pending && a.state == ApprovalState::Expired {
                let due = clock.get() >= a.expires_ms;
                let campaign_ended = store.campaign(cid).unwrap().unwrap().state.is_terminal();
                assert!(
                    due || campaign_ended,
                    "seed {seed}: request {} expired early\n{log:#?}",
                    a.id
                );
                entry.1 = ApprovalState::Expired;
            }
            assert_eq!(
                a.state,
                entry.1,
                "seed {seed}: request {} ({}) is {:?}, the model says {:?}\n{log:#?}",
                a.id,
                a.kind.name(),
                a.state,
                entry.1
            );
        }
        check(seed, &store, &backend, &model, cid, &log);
    }
    if !backend.started.lock().unwrap().is_empty() {
        cov.launched_cases += 1;
    }
    for a in store.approvals_of(cid).unwrap() {
        *cov.decided
            .entry((a.kind.name(), a.state.name()))
            .or_default() += 1;
    }
}

fn pass(
    store: &Store,
    sandbox: &reagent::sandbox::Sandbox,
    backend: &FakeBackend,
    clock: &Cell<u64>,
    cid: u64,
) {
    let mut engine = Engine::new(store, sandbox, backend, None, |_| {}).with_clock(|| clock.get());
    if store.campaign(cid).unwrap().unwrap().state.is_active() {
        // An injected crash surfaces as an error: the process is gone.
        let _ = engine.advance(cid);
    }
}

fn outcome(kind: u32, rng: &mut SmallRng) -> JobOutcome {
    let secs = rng.random_range(1.0..20.0);
    let mut o = JobOutcome {
        exit_code: Some(0),
        wall_secs: secs,
        cpu_secs: secs,
        ..JobOutcome::default()
    };
    match kind {
        0 => {
            o.exit_code = Some(1);
            o.log_tail =
                "Traceback (most recent call last):\nValueError: shapes (3,) and (4,) not aligned"
                    .into();
        }
        1 => {
            o.exit_code = None;
            o.signal = Some(9);
        }
        // Ran to the end without reporting the metric: escalated.
        2 | 3 => {}
        _ => {
            let loss = 0.5 + rng.random_range(-0.05..0.05);
            o.metrics.insert("valid_loss".into(), loss);
            o.metrics.insert("valid_loss_stderr".into(), 0.0005);
            o.metrics.insert("test_loss".into(), loss + 0.002);
        }
    }
    o
}

fn check(seed: u64, store: &Store, backend: &FakeBackend, model: &Model, cid: u64, log: &[String]) {
    let fail = |what: String| panic!("seed {seed}: {what}\noperations:\n{log:#?}");
    let started = backend.started.lock().unwrap().clone();
    let trials = store.trials(cid).unwrap();
    let row = store.campaign(cid).unwrap().unwrap();
    // No job without an approved plan.
    if model.plan() != ApprovalState::Approved {
        if !started.is_empty() {
            fail(format!(
                "jobs started without an approved plan: {started:?}"
            ));
        }
        if trials
            .iter()
            .any(|t| t.status != TrialStatus::Queued && t.status != TrialStatus::Dropped)
        {
            fail("a trial left the queue without an approved plan".into());
        }
    }
    // Every launch is journaled after the plan's approval, and before its
    // job started (each started job has a journaled trial).
    let events = store.events(0).unwrap();
    let approved_at = events.iter().find_map(|e| match &e.body {
        EventBody::ApprovalDecided {
            state: ApprovalState::Approved,
            id,
            ..
        } if model
            .requests
            .get(id)
            .is_some_and(|r| r.0 == ApprovalKind::Plan) =>
        {
            Some(e.seq)
        }
        _ => None,
    });
    for e in &events {
        if let EventBody::TrialLaunching { id, .. } = e.body
            && approved_at.is_none_or(|a| e.seq < a)
        {
            fail(format!(
                "trial {id} was journaled for launch before the plan was approved"
            ));
        }
    }
    let mut keys = started.clone();
    keys.sort();
    keys.dedup();
    if keys.len() != started.len() {
        fail(format!("a job was started twice: {started:?}"));
    }
    for key in &started {
        let Some(t) = trials.iter().find(|t| &t.key == key) else {
            fail(format!("job {key} has no trial in the store"));
            return;
        };
        if t.status == TrialStatus::Queued {
            fail(format!(
                "job {key} started but its trial was never journaled"
            ));
        }
    }
    // The budget the engine works with is never more than was approved
    // (an approved increase counts from its next pass on).
    let budget = row.budget();
    if budget.cpu_hours > model.cpu_hours + 1e-9 || budget.max_trials > model.max_trials {
        fail(format!(
            "the engine's budget ({} CPU-hours, {} trials) exceeds the approved ({}, {})",
            budget.cpu_hours, budget.max_trials, model.cpu_hours, model.max_trials
        ));
    }
    // Never past the approved budget.
    let l = &row.ledger;
    if l.reserved_cpu + l.spent_cpu > model.cpu_hours + 1e-9 {
        fail(format!(
            "reserved {} + spent {} CPU-hours exceed the approved {}",
            l.reserved_cpu, l.spent_cpu, model.cpu_hours
        ));
    }
    if l.launched > model.max_trials {
        fail(format!(
            "{} trials launched; {} approved",
            l.launched, model.max_trials
        ));
    }
    if started.len() as u32 > model.max_trials {
        fail(format!(
            "{} jobs started; {} trials approved",
            started.len(),
            model.max_trials
        ));
    }
    if let Err(b) = store.verify_chain().unwrap() {
        fail(format!("the audit chain broke: {b:?}"));
    }
}
