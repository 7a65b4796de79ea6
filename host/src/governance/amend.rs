//! `reagent amend`: an operator's change of a running campaign's
//! strategies or budget, as approval requests.

use super::{ApprovalKind, ApprovalRow, Decision, Identity, NewRequest, policy::Policy};
use crate::records::approval::ApprovalState;
use crate::records::campaign::CampaignRow;
use crate::spec::Campaign;
use crate::store::Store;

/// How an operator's budget increase names its origin in its payload.
const AMENDED_FROM: &str = "amended from";

/// The requests that turn `row`'s spec into `new` (read from `label`): a
/// strategy change and a budget increase, each only if it changes
/// something that `earlier` (the campaign's approval requests) does not
/// already ask for or grant. Anything else that differs, a budget that
/// shrinks, or a campaign that has ended is refused, naming what to do
/// instead.
///
/// The file's budget is a total: amending twice with the same file (or
/// again after a crash) asks for nothing more. Before, each amend added the
/// difference from the plan once more.
pub fn requests(
    row: &CampaignRow,
    new: &Campaign,
    label: &str,
    by: &Identity,
    earlier: &[ApprovalRow],
) -> anyhow::Result<Vec<NewRequest>> {
    let id = row.id;
    if !row.state.is_active() {
        anyhow::bail!(
            "campaign {id} is {}; only a running campaign can be amended (plan a new one)",
            row.state.name()
        );
    }
    // Only strategies and the budget may change.
    let mut same = new.clone();
    same.strategies = row.spec.strategies.clone();
    same.budget = row.spec.budget.clone();
    if same != row.spec {
        let old = serde_json::to_value(&row.spec)?;
        let now = serde_json::to_value(&same)?;
        let differs: Vec<String> = old
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| now.get(k.as_str()) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        anyhow::bail!(
            "{label}: only [strategies] and [budget] can change in a running campaign; this file also changes {}: plan a new campaign for that",
            differs.join(", ")
        );
    }
    let b_old = row.budget();
    let b_new = &new.budget;
    if b_new.cpu_hours < row.spec.budget.cpu_hours
        || b_new.gpu_hours < row.spec.budget.gpu_hours
        || b_new.max_trials < row.spec.budget.max_trials
    {
        anyhow::bail!(
            "{label}: the budget can only grow here (to stop early: `reagent pause {id}` or `reagent cancel {id}`)"
        );
    }
    // Both kinds of change are the operator's requests, with the
    // campaign's expiry.
    let operator_request = |kind, summary, payload| NewRequest {
        campaign: id,
        kind,
        requested_by: by.name(),
        summary,
        payload,
        hypothesis: None,
        expires_after_ms: row.spec.policy.approval_expiry.as_millis() as u64,
    };
    let mut requests = Vec::new();
    let live = |r: &&ApprovalRow| {
        r.campaign == id && matches!(r.state, ApprovalState::Pending | ApprovalState::Approved)
    };
    let strategies_asked = earlier.iter().filter(live).any(|r| {
        r.kind == ApprovalKind::StrategyChange
            && !r.applied
            && r.payload == serde_json::json!({ "strategies": &new.strategies })
    });
    if new.strategies != row.spec.strategies && !strategies_asked {
        let s = &new.strategies;
        requests.push(operator_request(
            ApprovalKind::StrategyChange,
            format!(
                "strategies: generator {}, debugger {}, grants [{}] (were {}, {}, [{}])",
                s.generator,
                s.debugger,
                s.grants.names().join(", "),
                row.spec.strategies.generator,
                row.spec.strategies.debugger,
                row.spec.strategies.grants.names().join(", ")
            ),
            serde_json::json!({ "strategies": s }),
        ));
    }
    // The file's budget is the plan's plus the operator's amendments; the
    // agent's approved increases stay on top.
    let (mut amended_cpu, mut amended_gpu, mut amended_trials) = (0.0, 0.0, 0);
    for r in earlier.iter().filter(live).filter(|r| {
        r.kind == ApprovalKind::BudgetIncrease
            && r.payload["reason"]
                .as_str()
                .is_some_and(|why| why.starts_with(AMENDED_FROM))
    }) {
        amended_cpu += r.payload["cpu_hours"].as_f64().unwrap_or(0.0);
        amended_gpu += r.payload["gpu_hours"].as_f64().unwrap_or(0.0);
        amended_trials += r.payload["max_trials"].as_u64().unwrap_or(0) as u32;
    }
    let more_cpu = (b_new.cpu_hours - row.spec.budget.cpu_hours - amended_cpu).max(0.0);
    let more_gpu = (b_new.gpu_hours - row.spec.budget.gpu_hours - amended_gpu).max(0.0);
    let more_trials = b_new
        .max_trials
        .saturating_sub(row.spec.budget.max_trials + amended_trials);
    if more_cpu > 0.0 || more_gpu > 0.0 || more_trials > 0 {
        requests.push(operator_request(
            ApprovalKind::BudgetIncrease,
            format!(
                "+{more_cpu} CPU-h, +{more_gpu} GPU-h, +{more_trials} trials (to {} CPU-h, {} GPU-h, {} trials)",
                b_old.cpu_hours + more_cpu,
                b_old.gpu_hours + more_gpu,
                b_old.max_trials + more_trials
            ),
            serde_json::json!({
                "cpu_hours": more_cpu,
                "gpu_hours": more_gpu,
                "max_trials": more_trials,
                "reason": format!("{AMENDED_FROM} {label}"),
            }),
        ));
    }
    Ok(requests)
}

/// Records `requests` in one transaction and, with `approve_as`, approves
/// each as that person where the policy lets them. Returns the rows as
/// they stand and, if the policy refused an approval, why (the request
/// then waits for another approver).
pub fn raise(
    store: &Store,
    requests: Vec<NewRequest>,
    approve_as: Option<(&Identity, &Policy)>,
) -> anyhow::Result<(Vec<ApprovalRow>, Option<anyhow::Error>)> {
    let mut refused = None;
    let rows = store.write(|tx| {
        let now = crate::time::now_ms();
        let mut out = Vec::new();
        for r in requests {
            let req = super::request(tx, r, now)?;
            let Some((who, policy)) = approve_as else {
                out.push(req);
                continue;
            };
            let decision = Decision {
                id: req.id,
                approve: true,
                by: who,
                note: "approved on the command line (--yes)".into(),
                expect_hash: None,
                now,
            };
            match super::settle_in(tx, decision, policy) {
                Ok(row) => out.push(row),
                Err(e) => {
                    refused = Some(e);
                    out.push(req);
                }
            }
        }
        Ok(out)
    })?;
    Ok((rows, refused))
}
