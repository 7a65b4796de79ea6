//! `reagent audit replay`: every recorded strategy call run again from its
//! transcript, compared with what was recorded.

use super::*;

/// The outcome of replaying one recorded call.
#[derive(Debug, Serialize)]
struct Replayed {
    seq: u64,
    campaign: Option<u64>,
    role: String,
    identical: bool,
    differences: Vec<String>,
    /// Fuel and host calls of the replay (when it ran).
    fuel: Option<u64>,
    host_calls: Option<usize>,
}

/// `audit replay --json`.
#[derive(Serialize)]
struct ReplayJson<'a> {
    replayed: usize,
    identical: usize,
    different: usize,
    /// Strategy calls whose event says no full record was stored.
    not_recorded: &'a [u64],
    calls: &'a [Replayed],
}

/// What replay needs from a `strategy-called` event body.
#[derive(serde::Deserialize)]
struct CalledBody {
    role: String,
    component_sha256: String,
    outcome: String,
    fuel: u64,
    #[serde(default)]
    record: bool,
    #[serde(default)]
    record_sha256: String,
}

/// A loaded component and where it came from, or why it could not be loaded.
type Loaded = Result<(StrategySource, Arc<Strategy>), String>;

/// Loads components once per (campaign, role).
struct Loader<'a> {
    store: &'a Store,
    sandbox: Option<&'static Sandbox>,
    specs: HashMap<u64, Option<Campaign>>,
    loaded: HashMap<(u64, String), Loaded>,
    events: &'a [RawEvent],
}

impl Loader<'_> {
    /// The campaign's spec as registered in the hashed log (falling back
    /// to its row when the registration event cannot be read).
    fn spec(&mut self, campaign: u64) -> Option<Campaign> {
        if let Some(s) = self.specs.get(&campaign) {
            return s.clone();
        }
        #[derive(serde::Deserialize)]
        struct Registered {
            #[serde(rename = "type")]
            kind: String,
            spec: Campaign,
        }
        let from_log = self
            .events
            .iter()
            .filter(|e| e.campaign == Some(campaign))
            .find_map(|e| {
                serde_json::from_str::<Registered>(e.body.get())
                    .ok()
                    .filter(|r| r.kind == "campaign-registered")
            })
            .map(|r| r.spec);
        let spec = from_log.or_else(|| {
            self.store
                .campaign(campaign)
                .ok()
                .flatten()
                .map(|row| row.spec)
        });
        self.specs.insert(campaign, spec.clone());
        spec
    }

    fn strategy(&mut self, campaign: u64, role: &str) -> Loaded {
        let key = (campaign, role.to_string());
        if let Some(s) = self.loaded.get(&key) {
            return s.clone();
        }
        let result = self.load(campaign, role);
        self.loaded.insert(key, result.clone());
        result
    }

    fn load(&mut self, campaign: u64, role: &str) -> Loaded {
        let spec = self
            .spec(campaign)
            .ok_or_else(|| format!("campaign {campaign}'s registration is not in the log"))?;
        let source = match role {
            "generator" => spec.strategies.generator.clone(),
            "debugger" => spec.strategies.debugger.clone(),
            other => return Err(format!("unknown strategy role `{other}`")),
        };
        if self.sandbox.is_none() {
            self.sandbox = Some(
                workspace::new_sandbox().map_err(|e| format!("cannot start the sandbox: {e:#}"))?,
            );
        }
        let sandbox = self.sandbox.as_ref().expect("set above");
        let strategy = sandbox
            .load(&source, &spec.strategies.grants)
            .map_err(|e| format!("cannot load the {role} {source}: {e}"))?;
        Ok((source, Arc::new(strategy)))
    }
}

pub(super) fn replay(
    ws: &Workspace,
    seq: Option<u64>,
    campaign: Option<u64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = open(ws)?;
    let events = store.events_raw(1)?;
    let calls: Vec<&RawEvent> = match (seq, campaign) {
        (Some(seq), _) => {
            let Some(e) = events.iter().find(|e| e.seq == seq) else {
                bail!(
                    "no event {seq} in the log (it ends at {}); list events with `reagent audit show`",
                    events.last().map_or(0, |e| e.seq)
                );
            };
            let kind = e.kind().unwrap_or_else(|| "?".into());
            if kind != "strategy-called" && kind != "trial-stopped" {
                bail!(
                    "event {seq} is a {kind} event, not a strategy call or an early stop; list the calls with `reagent audit show`"
                );
            }
            vec![e]
        }
        (None, Some(id)) => {
            require_campaign(&store, ws, id, &events)?;
            events
                .iter()
                .filter(|e| {
                    e.campaign == Some(id)
                        && matches!(
                            e.kind().as_deref(),
                            Some("strategy-called" | "trial-stopped")
                        )
                })
                .collect()
        }
        (None, None) => bail!("give an event SEQ or --campaign ID"),
    };
    let scope = match (seq, campaign) {
        (Some(s), _) => format!("event {s}"),
        (None, Some(c)) => format!("campaign {c}"),
        (None, None) => String::new(),
    };
    if calls.is_empty() {
        if json {
            let v = ReplayJson {
                replayed: 0,
                identical: 0,
                different: 0,
                not_recorded: &[],
                calls: &[],
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            println!("{scope} made no strategy calls; nothing to replay");
        }
        return Ok(ExitCode::SUCCESS);
    }

    let mut loader = Loader {
        store: &store,
        sandbox: None,
        specs: HashMap::new(),
        loaded: HashMap::new(),
        events: &events,
    };
    let mut results = Vec::new();
    let mut not_recorded = Vec::new();
    for e in calls {
        if e.kind().as_deref() == Some("trial-stopped") {
            let r = replay_stop(&store, &mut loader, e);
            if !json {
                print_replayed(&r);
            }
            results.push(r);
            continue;
        }
        let body: CalledBody = match serde_json::from_str(e.body.get()) {
            Ok(b) => b,
            Err(err) => {
                let r = Replayed {
                    seq: e.seq,
                    campaign: e.campaign,
                    role: "?".into(),
                    identical: false,
                    differences: vec![format!("the event's body is not a strategy call: {err}")],
                    fuel: None,
                    host_calls: None,
                };
                if !json {
                    print_replayed(&r);
                }
                results.push(r);
                continue;
            }
        };
        if !body.record {
            not_recorded.push(e.seq);
            continue;
        }
        let r = replay_one(&store, &mut loader, e, &body);
        if !json {
            print_replayed(&r);
        }
        results.push(r);
    }

    let identical = results.iter().filter(|r| r.identical).count();
    let different = results.len() - identical;
    if json {
        let v = ReplayJson {
            replayed: results.len(),
            identical,
            different,
            not_recorded: &not_recorded,
            calls: &results,
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        if !not_recorded.is_empty() {
            println!(
                "{} strategy call(s) were not recorded in full and cannot be replayed: {}",
                not_recorded.len(),
                not_recorded
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        println!(
            "replayed {} decision{}: {identical} identical, {different} different",
            results.len(),
            if results.len() == 1 { "" } else { "s" }
        );
    }
    Ok(if results.is_empty() || different > 0 {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// What replay needs from a `trial-stopped` event body.
#[derive(serde::Deserialize)]
struct StoppedBody {
    id: u64,
    metric: String,
    step: u32,
    value: f64,
    references: Vec<(u64, f64)>,
    median: f64,
}

/// An early stop decided again: the campaign's `[stopping]` rule applied
/// to the recorded inputs must stop, and each reference must be what that
/// trial's stored curve says at the step.
fn replay_stop(store: &Store, loader: &mut Loader<'_>, e: &RawEvent) -> Replayed {
    let mut r = Replayed {
        seq: e.seq,
        campaign: e.campaign,
        role: "stopping".into(),
        identical: false,
        differences: Vec::new(),
        fuel: None,
        host_calls: None,
    };
    let body: StoppedBody = match serde_json::from_str(e.body.get()) {
        Ok(b) => b,
        Err(err) => {
            r.differences
                .push(format!("the event's body is not an early stop: {err}"));
            return r;
        }
    };
    let Some(campaign) = e.campaign else {
        r.differences.push("the event names no campaign".into());
        return r;
    };
    let Some(spec) = loader.spec(campaign) else {
        r.differences
            .push(format!("campaign {campaign}'s plan cannot be read"));
        return r;
    };
    let Some(rule) = spec.stopping.as_ref() else {
        r.differences
            .push("the campaign's plan has no [stopping] rule".into());
        return r;
    };
    if rule.metric != body.metric {
        r.differences.push(format!(
            "the rule watches {} but the stop names {}",
            rule.metric, body.metric
        ));
    }
    for &(tid, value) in &body.references {
        let stored = store
            .curves(campaign, tid)
            .ok()
            .and_then(|mut c| c.remove(&body.metric))
            .and_then(|c| crate::campaign::stopping::at_step(&c, body.step));
        if stored != Some(value) {
            r.differences.push(format!(
                "reference trial {tid} at step {}: recorded {value}, its stored curve says {}",
                body.step,
                stored.map_or("nothing".into(), |v| v.to_string())
            ));
        }
    }
    let verdict = crate::campaign::stopping::Verdict {
        step: body.step,
        value: body.value,
        references: body.references,
        median: body.median,
    };
    if !crate::campaign::stopping::stops(rule, spec.objective.direction, &verdict) {
        r.differences.push(format!(
            "the rule does not stop trial {} on these inputs (best {} at step {} vs median {} of {} references)",
            body.id,
            verdict.value,
            verdict.step,
            verdict.median,
            verdict.references.len()
        ));
    }
    r.identical = r.differences.is_empty();
    r
}

fn print_replayed(r: &Replayed) {
    let who = format!(
        "seq {:>5}  {:<4} {:<9}",
        r.seq,
        r.campaign.map_or("-".into(), |c| format!("c{c}")),
        r.role
    );
    if r.identical && r.fuel.is_none() {
        println!("{who} identical (the stopping rule stops it on the recorded inputs)");
    } else if r.identical {
        println!(
            "{who} identical (fuel {}, {} host calls)",
            r.fuel.unwrap_or(0),
            r.host_calls.unwrap_or(0)
        );
    } else {
        println!("{who} DIFFERENT");
        for d in &r.differences {
            println!("      - {d}");
        }
    }
}

fn replay_one(store: &Store, loader: &mut Loader<'_>, e: &RawEvent, body: &CalledBody) -> Replayed {
    let mut r = Replayed {
        seq: e.seq,
        campaign: e.campaign,
        role: body.role.clone(),
        identical: false,
        differences: Vec::new(),
        fuel: None,
        host_calls: None,
    };
    let record = match store.call(e.seq) {
        Ok(Some(record)) => record,
        Ok(None) => {
            r.differences.push(
                "the event says its call record was stored, but the database has none (removed)"
                    .into(),
            );
            return r;
        }
        Err(err) => {
            r.differences
                .push(format!("the stored call record is unreadable: {err:#}"));
            return r;
        }
    };
    // The event (in the chain) carries the record's hash.
    if !body.record_sha256.is_empty() {
        use sha2::Digest as _;
        let stored = store
            .call_bytes(e.seq)
            .ok()
            .flatten()
            .map(|b| hex::encode(sha2::Sha256::digest(&b)))
            .unwrap_or_default();
        if stored != body.record_sha256 {
            r.differences.push(format!(
                "the stored call record was altered: its sha256 is {stored}, its hashed event says {}",
                body.record_sha256
            ));
            return r;
        }
    }
    // Older events carry no record hash: check what they do carry.
    let recorded_outcome = match &record.outcome {
        Ok(_) => "ok",
        Err(err) => err.kind(),
    };
    for (what, event, stored) in [
        (
            "component",
            body.component_sha256.clone(),
            record.component_sha256.clone(),
        ),
        (
            "outcome",
            body.outcome.clone(),
            recorded_outcome.to_string(),
        ),
        ("fuel", body.fuel.to_string(), record.usage.fuel.to_string()),
    ] {
        if event != stored {
            r.differences.push(format!(
                "the stored record does not match its hashed event: {what} is {stored} in the record, {event} in the event"
            ));
        }
    }
    let Some(campaign) = e.campaign else {
        r.differences
            .push("the event names no campaign, so its strategy is unknown".into());
        return r;
    };
    let (source, strategy) = match loader.strategy(campaign, &body.role) {
        Ok(s) => s,
        Err(err) => {
            r.differences.push(err);
            return r;
        }
    };
    if strategy.info.sha256 != body.component_sha256 {
        r.differences.push(format!(
            "component changed since the decision: recorded {}, now {} ({source})",
            body.component_sha256, strategy.info.sha256
        ));
        return r;
    }
    let sandbox = loader.sandbox.as_ref().expect("loaded a strategy");
    let report = sandbox.replay(&strategy, &record);
    r.fuel = Some(report.replayed.usage.fuel);
    r.host_calls = Some(report.replayed.host_calls.len());
    r.differences.extend(report.differences);
    r.identical = r.differences.is_empty();
    r
}
