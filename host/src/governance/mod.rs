//! Governance: what the agent may do without asking, what needs a human,
//! and how each answer is recorded.
//!
//! Anything outside the approved plan becomes an [`ApprovalRow`]: the plan
//! itself, a budget increase, knob values outside the approved space, an
//! escalated failure. A request carries its payload and the payload's
//! sha256; a decision (approve, reject, expire) is bound to that hash and
//! appended to the audit log in the same transaction as the row. The
//! engine acts on decided requests on its next pass and pauses only the
//! branch a pending request holds back (one hypothesis, or the confirmation).
//!
//! Who decides: [`Identity`]. The CLI acts as the OS user; the agent (the
//! engine and the jobs it launches) can never approve: the identity `agent`
//! is refused outright. `policy.rs` evaluates the workspace's Cedar policy
//! for automatic approval and for which humans may approve what (including
//! whether a human who asked, via `reagent amend`, may also approve).

pub mod amend;
pub mod policy;

pub use crate::records::approval::{
    ApprovalKind, ApprovalRow, ApprovalState, DEFAULT_EXPIRY_MS, payload_hash,
};

use crate::records::campaign::{ApprovalRecord, CampaignRow, CampaignState, EventBody, Stage};
use crate::spec::Campaign;
use crate::store::{Store, Tx};

/// Who is acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A person, by OS user name (later: token identities over HTTP).
    User(String),
    /// The workspace policy, approving automatically.
    Policy,
    /// The agent: the engine, its strategies and the jobs it launched.
    Agent,
}

impl Identity {
    /// The CLI's identity: the OS user — unless this process runs inside a
    /// job the agent launched (its environment says so), which is the agent.
    pub fn current() -> Identity {
        if std::env::var_os("REAGENT_TRIAL").is_some()
            || std::env::var_os("REAGENT_SUPERVISOR_PROCESS").is_some()
        {
            return Identity::Agent;
        }
        Identity::User(os_user())
    }

    pub fn name(&self) -> String {
        match self {
            Identity::User(u) => u.clone(),
            Identity::Policy => "policy".into(),
            Identity::Agent => "agent".into(),
        }
    }
}

/// The OS user running this process: the name of its real uid in the
/// user database, or `uid:N` when it has none.
///
/// Never taken from the environment: `$USER` and `$LOGNAME` are whatever
/// the caller set (a job once approved a plan as someone else with
/// `USER=<name> reagent approve`).
pub fn os_user() -> String {
    // SAFETY: getuid has no preconditions.
    #[allow(unsafe_code)]
    let uid = unsafe { libc::getuid() };
    user_name(uid).unwrap_or_else(|| format!("uid:{uid}"))
}

/// The user database's name for `uid` (getpwuid_r), if it has one.
pub fn user_name(uid: libc::uid_t) -> Option<String> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: passwd is a plain C struct for which all-zero is valid.
        #[allow(unsafe_code)]
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is to a live local or to `buf`, whose length
        // is passed; getpwuid_r writes the entry's strings into `buf` only.
        #[allow(unsafe_code)]
        let r = unsafe {
            libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut found)
        };
        if r == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if r != 0 || found.is_null() || pw.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points to a NUL-terminated string in
        // `buf`, which is still alive.
        #[allow(unsafe_code)]
        let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
        return Some(name.to_string_lossy().into_owned()).filter(|n| !n.is_empty());
    }
}

/// The plan payload of a campaign: its whole spec (by hash), budget,
/// strategies and grants. The engine launches only while the approved
/// plan's hash still matches this.
pub fn plan_payload(row: &CampaignRow) -> serde_json::Value {
    let spec = &row.spec;
    let spec_json = serde_json::to_value(spec).unwrap_or_default();
    serde_json::json!({
        "campaign": row.id,
        "name": spec.name,
        "spec_sha256": payload_hash(&spec_json),
        "budget": {
            "cpu_hours": spec.budget.cpu_hours,
            "gpu_hours": spec.budget.gpu_hours,
            "max_trials": spec.budget.max_trials,
            "max_parallel": spec.budget.max_parallel,
        },
        "strategies": {
            "generator": spec.strategies.generator.to_string(),
            "debugger": spec.strategies.debugger.to_string(),
            "grants": spec.strategies.grants.names(),
        },
    })
}

/// Registers a campaign awaiting approval of its plan, and raises the
/// plan's approval request, in the caller's transaction.
pub fn register(
    tx: &mut Tx,
    spec: &Campaign,
    file: &str,
    planned_by: &str,
    now: u64,
) -> anyhow::Result<(CampaignRow, ApprovalRow)> {
    let id = tx.next_campaign_id()?;
    let row = CampaignRow {
        id,
        spec: spec.clone(),
        file: file.to_string(),
        state: CampaignState::AwaitingApproval,
        stage: Stage::Plan,
        created_ms: now,
        planned_by: planned_by.to_string(),
        approved: None,
        budget_increases: Vec::new(),
        started_ms: None,
        finished_ms: None,
        ledger: Default::default(),
        next_hypothesis: 1,
        next_trial: 1,
        generator_calls: 0,
        debugger_calls: 0,
        strikes: 0,
        exhausted: Default::default(),
        paused: false,
        note: None,
        winner: None,
        llm_tokens: 0,
        raced: false,
        // No trials yet: the tally is exact from the start.
        tally: Some(Default::default()),
    };
    tx.append(
        Some(id),
        EventBody::CampaignRegistered {
            name: spec.name.clone(),
            file: file.to_string(),
            spec: Box::new(spec.clone()),
        },
    )?;
    tx.append(
        Some(id),
        EventBody::StateChanged {
            from: CampaignState::Draft,
            to: CampaignState::AwaitingApproval,
            reason: "plan written".into(),
        },
    )?;
    tx.put_campaign(&row)?;
    let b = &spec.budget;
    let request = request(
        tx,
        NewRequest {
            campaign: id,
            kind: ApprovalKind::Plan,
            requested_by: "agent".into(),
            summary: format!(
                "plan of \"{}\": {} CPU-h, {} GPU-h, {} trials",
                spec.name, b.cpu_hours, b.gpu_hours, b.max_trials
            ),
            payload: plan_payload(&row),
            hypothesis: None,
            expires_after_ms: spec.policy.approval_expiry.as_millis() as u64,
        },
        now,
    )?;
    Ok((row, request))
}

/// A request to raise.
pub struct NewRequest {
    pub campaign: u64,
    pub kind: ApprovalKind,
    pub requested_by: String,
    pub summary: String,
    pub payload: serde_json::Value,
    pub hypothesis: Option<u64>,
    pub expires_after_ms: u64,
}

/// Raises a request inside the caller's transaction; returns its row.
pub fn request(tx: &mut Tx, new: NewRequest, now: u64) -> anyhow::Result<ApprovalRow> {
    let id = tx.next_approval_id()?;
    let row = ApprovalRow {
        id,
        campaign: new.campaign,
        kind: new.kind,
        state: ApprovalState::Pending,
        created_ms: now,
        expires_ms: now.saturating_add(new.expires_after_ms),
        requested_by: new.requested_by,
        summary: new.summary,
        payload_hash: payload_hash(&new.payload),
        payload: new.payload,
        decided_by: None,
        decided_ms: None,
        note: None,
        applied: false,
        hypothesis: new.hypothesis,
    };
    tx.put_approval(&row)?;
    tx.append(
        Some(row.campaign),
        EventBody::ApprovalRequested {
            id,
            kind: row.kind,
            requested_by: row.requested_by.clone(),
            summary: row.summary.clone(),
            payload_hash: row.payload_hash.clone(),
            expires_ms: row.expires_ms,
        },
    )?;
    Ok(row)
}

/// Why a decision was refused. Nothing changes when one is returned.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecideError {
    #[error("no approval request {0} in this workspace (list them with `reagent approvals`)")]
    Unknown(u64),
    #[error("approval request {id} was already {state} by {by}; a decision is final")]
    AlreadyDecided {
        id: u64,
        state: &'static str,
        by: String,
    },
    #[error(
        "approval request {id} expired at {at} (UTC) and was denied; for a plan, register the campaign again with `reagent plan`"
    )]
    Expired { id: u64, at: String },
    #[error(
        "the agent cannot decide its own requests: this process runs inside a job reagent launched ({0}); approve from an operator's shell"
    )]
    SelfApproval(String),
    #[error(
        "request {id}'s payload does not hash to what was requested (recorded {recorded}, now {now}); the database was altered — run `reagent audit verify`"
    )]
    PayloadAltered {
        id: u64,
        recorded: String,
        now: String,
    },
    #[error(
        "request {id}'s payload hash is {actual}, not the {expected} you reviewed; look again with `reagent approvals --json`"
    )]
    NotWhatWasReviewed {
        id: u64,
        expected: String,
        actual: String,
    },
    #[error("the workspace policy does not let {who} approve request {id}: {why}")]
    PolicyDenied { id: u64, who: String, why: String },
    #[error("a reason is required to reject a request (--reason TEXT)")]
    NoReason,
}

/// A human's decision to record.
pub struct Decision<'a> {
    pub id: u64,
    pub approve: bool,
    pub by: &'a Identity,
    pub note: String,
    /// The payload hash (or a prefix of it) the human reviewed.
    pub expect_hash: Option<String>,
    pub now: u64,
}

/// Checks and records a decision in the caller's transaction. `policy`
/// says whether the identity may approve this request.
pub fn decide(
    tx: &mut Tx,
    d: Decision<'_>,
    policy: &policy::Policy,
    campaign: Option<&CampaignRow>,
) -> anyhow::Result<ApprovalRow> {
    let mut row = tx.approval(d.id)?.ok_or(DecideError::Unknown(d.id))?;
    if let Identity::Agent = d.by {
        let place = std::env::var("REAGENT_TRIAL")
            .map(|t| format!("trial {t}"))
            .unwrap_or_else(|_| "a job supervisor".into());
        return Err(DecideError::SelfApproval(place).into());
    }
    if row.state != ApprovalState::Pending {
        return Err(DecideError::AlreadyDecided {
            id: row.id,
            state: row.state.name(),
            by: row.decided_by.clone().unwrap_or_default(),
        }
        .into());
    }
    if d.now >= row.expires_ms {
        // Record the expiry (it is due), then refuse.
        expire(tx, &mut row, d.now, "nobody decided before it expired")?;
        return Err(DecideError::Expired {
            id: row.id,
            at: utc(row.expires_ms),
        }
        .into());
    }
    if !row.payload_intact() {
        return Err(DecideError::PayloadAltered {
            id: row.id,
            recorded: row.payload_hash.clone(),
            now: payload_hash(&row.payload),
        }
        .into());
    }
    if let Some(expected) = &d.expect_hash
        && (expected.len() < 8 || !row.payload_hash.starts_with(expected.as_str()))
    {
        return Err(DecideError::NotWhatWasReviewed {
            id: row.id,
            expected: expected.clone(),
            actual: row.payload_hash.clone(),
        }
        .into());
    }
    if d.approve {
        // Whether whoever asked may also approve is the policy's call
        // (`principal.name == resource.requested_by`); the agent never may.
        let principal = match d.by {
            Identity::User(u) => policy::Principal::User(u.clone()),
            _ => policy::Principal::Auto,
        };
        let verdict = policy.decide(&principal, &facts(&row, campaign));
        if !verdict.allowed {
            let why = if verdict.reasons.is_empty() {
                "no policy permits it".to_string()
            } else {
                format!("decided by {}", verdict.reasons.join(", "))
            };
            return Err(DecideError::PolicyDenied {
                id: row.id,
                who: d.by.name(),
                why,
            }
            .into());
        }
    } else if d.note.trim().is_empty() {
        return Err(DecideError::NoReason.into());
    }
    row.state = if d.approve {
        ApprovalState::Approved
    } else {
        ApprovalState::Rejected
    };
    row.decided_by = Some(d.by.name());
    row.decided_ms = Some(d.now);
    row.note = Some(d.note.clone());
    tx.put_approval(&row)?;
    tx.append(
        Some(row.campaign),
        EventBody::ApprovalDecided {
            id: row.id,
            state: row.state,
            by: d.by.name(),
            note: d.note,
            payload_hash: row.payload_hash.clone(),
        },
    )?;
    Ok(row)
}

/// A person's decision (`reagent approve`/`reject`, the dashboard): never
/// recorded on top of a broken audit log, then [`settle`]d.
pub fn decide_checked(
    store: &Store,
    d: Decision<'_>,
    policy: &policy::Policy,
) -> anyhow::Result<ApprovalRow> {
    if let Err(b) = store.verify_chain()? {
        anyhow::bail!(
            "the audit log is broken at entry {}: {}; no decision was recorded (see `reagent audit verify`)",
            b.seq,
            b.problem
        );
    }
    settle(store, d, policy)
}

/// Records a decision in one transaction (see [`settle_in`]). A decision
/// refused because the request expired still records the expiry.
pub fn settle(
    store: &Store,
    d: Decision<'_>,
    policy: &policy::Policy,
) -> anyhow::Result<ApprovalRow> {
    let id = d.id;
    let mut refusal = None;
    let row = store.write(|tx| match settle_in(tx, d, policy) {
        Ok(row) => Ok(Some(row)),
        Err(e)
            if matches!(
                e.downcast_ref::<DecideError>(),
                Some(DecideError::Expired { .. })
            ) =>
        {
            refusal = Some(e);
            Ok(None)
        }
        Err(e) => Err(e),
    })?;
    match (row, refusal) {
        (Some(row), _) => Ok(row),
        (None, Some(e)) => Err(e),
        (None, None) => anyhow::bail!("approval request {id} was not decided"),
    }
}

/// Records a decision in the caller's transaction and, for a plan,
/// applies it there too: approved → the campaign runs under this approval;
/// rejected or expired → it is cancelled. Other kinds are applied by the
/// engine on its next pass. On `Err` nothing was written, except that an
/// expired request is marked expired (and its plan's campaign cancelled).
pub fn settle_in(
    tx: &mut Tx,
    d: Decision<'_>,
    policy: &policy::Policy,
) -> anyhow::Result<ApprovalRow> {
    let now = d.now;
    let id = d.id;
    let campaign = match tx.approval(id)? {
        Some(a) => tx.campaign(a.campaign)?,
        None => None,
    };
    let row = match decide(tx, d, policy, campaign.as_ref()) {
        Ok(row) => row,
        Err(e) => {
            if let Some(DecideError::Expired { .. }) = e.downcast_ref::<DecideError>()
                && let Some(a) = tx.approval(id)?
                && a.kind == ApprovalKind::Plan
            {
                end_unapproved_plan(tx, a.campaign, "the plan's approval request expired", now)?;
            }
            return Err(e);
        }
    };
    if row.kind == ApprovalKind::StrategyChange
        && let Some(c) = campaign
    {
        return apply_strategy_change(tx, row, c, now);
    }
    let (ApprovalKind::Plan, Some(mut c)) = (row.kind, campaign) else {
        return Ok(row);
    };
    match row.state {
        ApprovalState::Approved => {
            let from = c.state;
            c.approved = Some(ApprovalRecord {
                by: row.decided_by.clone().unwrap_or_default(),
                at_ms: now,
                note: row.note.clone().unwrap_or_default(),
                request: Some(row.id),
                payload_hash: row.payload_hash.clone(),
            });
            c.state = CampaignState::Running;
            tx.append(
                Some(c.id),
                EventBody::StateChanged {
                    from,
                    to: CampaignState::Running,
                    reason: format!("plan approved (request {})", row.id),
                },
            )?;
            tx.put_campaign(&c)?;
        }
        _ => {
            let why = format!(
                "the plan was rejected by {}: {}",
                row.decided_by.clone().unwrap_or_default(),
                row.note.clone().unwrap_or_default()
            );
            end_unapproved_plan(tx, c.id, &why, now)?;
        }
    }
    let mut applied = row;
    applied.applied = true;
    tx.put_approval(&applied)?;
    Ok(applied)
}

/// Applies a decided strategy change in the caller's transaction: when
/// approved, the campaign's strategies and grants become the payload's, and
/// its plan approval is re-bound to the amended plan (the human approved
/// it); either way the request is marked applied.
fn apply_strategy_change(
    tx: &mut Tx,
    mut row: ApprovalRow,
    mut c: CampaignRow,
    now: u64,
) -> anyhow::Result<ApprovalRow> {
    if row.state == ApprovalState::Approved {
        let strategies: crate::spec::StrategiesConfig =
            serde_json::from_value(row.payload["strategies"].clone())
                .map_err(|e| anyhow::anyhow!("request {}: unreadable strategies: {e}", row.id))?;
        c.spec.strategies = strategies;
        let plan_hash = payload_hash(&plan_payload(&c));
        if let Some(a) = &mut c.approved {
            a.payload_hash = plan_hash;
            a.note = format!("{} (amended by request {} at {now})", a.note, row.id);
        }
        let spec_json = serde_json::to_value(&c.spec)?;
        tx.append(
            Some(c.id),
            EventBody::CampaignAmended {
                request: row.id,
                what: row.summary.clone(),
                spec_sha256: payload_hash(&spec_json),
            },
        )?;
        tx.put_campaign(&c)?;
    }
    row.applied = true;
    tx.put_approval(&row)?;
    Ok(row)
}

/// Marks a pending request expired (denied) in the caller's transaction.
pub fn expire(tx: &mut Tx, row: &mut ApprovalRow, now: u64, why: &str) -> anyhow::Result<()> {
    row.state = ApprovalState::Expired;
    row.decided_by = Some("expiry".into());
    row.decided_ms = Some(now);
    row.note = Some(why.into());
    tx.put_approval(row)?;
    tx.append(
        Some(row.campaign),
        EventBody::ApprovalDecided {
            id: row.id,
            state: ApprovalState::Expired,
            by: "expiry".into(),
            note: why.into(),
            payload_hash: row.payload_hash.clone(),
        },
    )?;
    Ok(())
}

/// Expires every pending request whose time is up, and ends campaigns
/// whose plan request expired. Returns the requests it expired.
pub fn expire_due(store: &Store, now: u64) -> anyhow::Result<Vec<ApprovalRow>> {
    let due: Vec<ApprovalRow> = store
        .approvals()?
        .into_iter()
        .filter(|a| a.state == ApprovalState::Pending && now >= a.expires_ms)
        .collect();
    if due.is_empty() {
        return Ok(due);
    }
    store.write(|tx| {
        let mut out = Vec::new();
        for mut a in due {
            expire(tx, &mut a, now, "nobody decided before it expired")?;
            if a.kind == ApprovalKind::Plan {
                end_unapproved_plan(tx, a.campaign, "the plan's approval request expired", now)?;
            }
            out.push(a);
        }
        Ok(out)
    })
}

/// Cancels a campaign whose plan was rejected or expired.
pub fn end_unapproved_plan(tx: &mut Tx, campaign: u64, why: &str, now: u64) -> anyhow::Result<()> {
    let Some(mut row) = tx.campaign(campaign)? else {
        return Ok(());
    };
    if row.state != CampaignState::AwaitingApproval {
        return Ok(());
    }
    let from = row.state;
    row.state = CampaignState::Cancelled;
    row.finished_ms = Some(now);
    row.note = Some(why.into());
    tx.append(
        Some(campaign),
        EventBody::StateChanged {
            from,
            to: CampaignState::Cancelled,
            reason: why.into(),
        },
    )?;
    tx.put_campaign(&row)
}

/// The facts the policy sees about a request.
pub fn facts(row: &ApprovalRow, campaign: Option<&CampaignRow>) -> policy::RequestFacts {
    let minutes = |hours: f64| (hours * 60.0).ceil().max(0.0) as i64;
    let p = &row.payload;
    let num = |path: &[&str]| {
        let mut v = p;
        for k in path {
            v = &v[*k];
        }
        v.as_f64().unwrap_or(0.0)
    };
    let (cpu, gpu, trials) = match row.kind {
        ApprovalKind::Plan => (
            num(&["budget", "cpu_hours"]),
            num(&["budget", "gpu_hours"]),
            num(&["budget", "max_trials"]),
        ),
        ApprovalKind::BudgetIncrease => (
            num(&["cpu_hours"]),
            num(&["gpu_hours"]),
            num(&["max_trials"]),
        ),
        // One more trial's reservation.
        _ => (num(&["cpu_hours"]), num(&["gpu_hours"]), 1.0),
    };
    let (name, planned_by, tags, strategies, grants) = match campaign {
        Some(c) => (
            c.spec.name.clone(),
            c.planned_by.clone(),
            c.spec.tags.clone(),
            vec![
                c.spec.strategies.generator.to_string(),
                c.spec.strategies.debugger.to_string(),
            ],
            c.spec
                .strategies
                .grants
                .names()
                .into_iter()
                .map(String::from)
                .collect(),
        ),
        None => Default::default(),
    };
    policy::RequestFacts {
        id: row.id,
        kind: row.kind.name().into(),
        campaign: row.campaign,
        campaign_name: name,
        cpu_minutes: minutes(cpu),
        gpu_minutes: minutes(gpu),
        max_trials: trials as i64,
        requested_by: row.requested_by.clone(),
        planned_by,
        tags,
        strategies,
        grants,
    }
}

/// JSON for one request: the fields `reagent approvals --json` promises.
pub fn approval_json(a: &ApprovalRow) -> serde_json::Value {
    serde_json::json!({
        "id": a.id,
        "campaign": a.campaign,
        "kind": a.kind.name(),
        "state": a.state.name(),
        "created": crate::time::iso_utc(a.created_ms),
        "created_ms": a.created_ms,
        "expires": crate::time::iso_utc(a.expires_ms),
        "expires_ms": a.expires_ms,
        "requested_by": a.requested_by,
        "summary": a.summary,
        "payload": a.payload,
        "payload_hash": a.payload_hash,
        "hypothesis": a.hypothesis,
        "decided_by": a.decided_by,
        "decided": a.decided_ms.map(crate::time::iso_utc),
        "note": a.note,
        "applied": a.applied,
    })
}

/// Approves campaign `campaign`'s pending plan request as `who` (the
/// operator's `--yes`). The policy decides whether they may.
pub fn approve_plan(
    store: &Store,
    policy: &policy::Policy,
    campaign: u64,
    who: &Identity,
    note: &str,
) -> anyhow::Result<ApprovalRow> {
    let request = store
        .approvals_of(campaign)?
        .into_iter()
        .rev()
        .find(|a| a.kind == ApprovalKind::Plan)
        .ok_or_else(|| anyhow::anyhow!("campaign {campaign} has no plan approval request"))?;
    settle(
        store,
        Decision {
            id: request.id,
            approve: true,
            by: who,
            note: note.into(),
            expect_hash: None,
            now: crate::time::now_ms(),
        },
        policy,
    )
}

/// Auto-approval: whether the policy approves `row` without a human.
pub fn auto_approves(
    policy: &policy::Policy,
    row: &ApprovalRow,
    campaign: &crate::records::campaign::CampaignRow,
) -> Option<String> {
    let verdict = policy.decide(&policy::Principal::Auto, &facts(row, Some(campaign)));
    verdict.allowed.then(|| {
        if verdict.reasons.is_empty() {
            "auto-approved by policy".to_string()
        } else {
            format!("auto-approved by policy ({})", verdict.reasons.join(", "))
        }
    })
}

/// A campaign registered by `reagent plan`, and its plan request as it
/// stands after the policy (and the operator's `--yes`) had their say.
#[derive(Debug)]
pub struct Registered {
    pub row: CampaignRow,
    pub request: ApprovalRow,
    /// Why the operator's `--yes` was refused by the policy, if it was.
    pub refused: Option<anyhow::Error>,
}

/// Registers `spec` (read from `label`) with its plan request, and in the
/// same transaction approves it when the policy auto-approves it, or, with
/// `yes`, as `by` where the policy lets them.
pub fn register_plan(
    store: &Store,
    spec: &Campaign,
    label: &str,
    by: &Identity,
    policy: &policy::Policy,
    yes: bool,
) -> anyhow::Result<Registered> {
    let mut refused = None;
    let (id, request_id) = store.write(|tx| {
        let now = crate::time::now_ms();
        let (row, request) = register(tx, spec, label, &by.name(), now)?;
        let decision = |by, note: String| Decision {
            id: request.id,
            approve: true,
            by,
            note,
            expect_hash: None,
            now,
        };
        if let Some(note) = auto_approves(policy, &request, &row) {
            settle_in(tx, decision(&Identity::Policy, note), policy)?;
        } else if yes
            && let Err(e) = settle_in(
                tx,
                decision(by, "approved on the command line (--yes)".into()),
                policy,
            )
        {
            refused = Some(e);
        }
        Ok((row.id, request.id))
    })?;
    let row = store
        .campaign(id)?
        .ok_or_else(|| anyhow::anyhow!("campaign {id} vanished after registration"))?;
    let request = store
        .approval(request_id)?
        .ok_or_else(|| anyhow::anyhow!("approval request {request_id} vanished"))?;
    Ok(Registered {
        row,
        request,
        refused,
    })
}

pub use crate::time::utc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_hash_ignores_key_order_and_sees_every_value() {
        let a = serde_json::json!({"b": 1, "a": {"y": [1, 2], "x": "s"}});
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a": {"x": "s", "y": [1, 2]}, "b": 1}"#).unwrap();
        assert_eq!(payload_hash(&a), payload_hash(&b));
        let c = serde_json::json!({"b": 1, "a": {"y": [2, 1], "x": "s"}});
        assert_ne!(payload_hash(&a), payload_hash(&c));
    }
}
