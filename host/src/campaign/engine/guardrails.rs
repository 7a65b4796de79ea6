//! The engine's side of governance: raising approval requests for what lies
//! outside the approved plan, acting on their decisions, and the launch gate.
//! The human side (deciding) is `crate::governance` and `reagent approve`.

use super::*;
use crate::governance::{self, ApprovalKind, ApprovalRow, ApprovalState, NewRequest};
use crate::records::campaign::BudgetIncrease;

/// Out-of-space requests one campaign may have pending at once; further
/// such hypotheses are excluded rather than queued for a human.
pub const MAX_PENDING_OUT_OF_SPACE: usize = 8;

impl Engine<'_> {
    /// Whether the campaign may launch: its plan approved, and the plan
    /// still hashing to what was approved. `Err` says why not.
    pub(super) fn plan_gate(&self, view: &View) -> Result<(), String> {
        let Some(approved) = &view.row.approved else {
            return Err("no approved plan".into());
        };
        // Databases from before approval requests carry no hash.
        if approved.payload_hash.is_empty() && approved.request.is_none() {
            return Ok(());
        }
        let now = governance::payload_hash(&governance::plan_payload(&view.row));
        if now != approved.payload_hash {
            return Err(format!(
                "the plan no longer matches what {} approved (payload sha256 {} now, {} approved); nothing more is launched",
                approved.by,
                &now[..16],
                &approved.payload_hash[..approved.payload_hash.len().min(16)]
            ));
        }
        Ok(())
    }

    /// Expires what is due and acts on decided requests. True if anything
    /// changed.
    pub(super) fn govern(&mut self, view: &mut View) -> anyhow::Result<bool> {
        let id = view.row.id;
        let now = (self.clock)();
        let mut changed = false;
        for mut a in self.store.approvals_of(id)? {
            if a.kind == ApprovalKind::Plan || a.applied {
                continue;
            }
            if a.state == ApprovalState::Pending {
                if now < a.expires_ms {
                    continue;
                }
                self.commit(view, |tx| {
                    governance::expire(tx, &mut a, now, "nobody decided before it expired")
                })?;
            }
            self.apply_decision(view, a)?;
            changed = true;
        }
        Ok(changed)
    }

    fn apply_decision(&mut self, view: &mut View, mut a: ApprovalRow) -> anyhow::Result<()> {
        let id = view.row.id;
        let mut approved = a.state == ApprovalState::Approved;
        let mut what = String::new();
        if approved && !a.payload_intact() {
            // The row changed after the human saw it: do not act on it.
            approved = false;
            what = "not acted on: its payload no longer matches the approved hash".into();
        }
        let mut hypothesis_change: Option<(HypothesisRow, String)> = None;
        let mut trial: Option<TrialRow> = None;
        match a.kind {
            ApprovalKind::Plan | ApprovalKind::StrategyChange => {}
            ApprovalKind::BudgetIncrease => {
                if approved {
                    let inc = BudgetIncrease {
                        request: a.id,
                        cpu_hours: a.payload["cpu_hours"].as_f64().unwrap_or(0.0).max(0.0),
                        gpu_hours: a.payload["gpu_hours"].as_f64().unwrap_or(0.0).max(0.0),
                        max_trials: a.payload["max_trials"].as_u64().unwrap_or(0) as u32,
                    };
                    what = format!(
                        "budget raised by {} CPU-h, {} GPU-h, {} trials",
                        inc.cpu_hours, inc.gpu_hours, inc.max_trials
                    );
                    view.row.budget_increases.push(inc);
                } else if what.is_empty() {
                    what = "budget unchanged".into();
                }
            }
            ApprovalKind::OutOfSpace | ApprovalKind::Escalation => {
                let hid = a.hypothesis.unwrap_or(0);
                let Some(h) = view.hypotheses.iter_mut().find(|h| h.id == hid) else {
                    anyhow::bail!("approval request {} names no hypothesis", a.id);
                };
                let waiting = matches!(
                    h.status,
                    HypothesisStatus::AwaitingApproval | HypothesisStatus::Escalated
                );
                if approved && (waiting || hid == 0) {
                    if hid != 0 {
                        h.status = HypothesisStatus::Active;
                    }
                    let assignments = h.hypothesis.assignments.clone();
                    let stage = h.stage;
                    let row = h.clone();
                    let (seed, attempt, retry_of) = match a.kind {
                        ApprovalKind::Escalation => {
                            let failed = a.payload["trial"].as_u64().unwrap_or(0);
                            let t = view.trials.iter().find(|t| t.id == failed);
                            (
                                t.map_or(FIRST_SEED, |t| t.seed),
                                t.map_or(1, |t| t.attempt + 1),
                                t.map(|t| t.id),
                            )
                        }
                        _ => (FIRST_SEED, 1, None),
                    };
                    let t = self.new_trial(view, hid, stage, seed, attempt, retry_of, assignments);
                    what = format!("trial {} queued", t.id);
                    trial = Some(t);
                    if hid != 0 {
                        hypothesis_change = Some((row, format!("approved (request {})", a.id)));
                    }
                } else if waiting {
                    h.status = HypothesisStatus::Excluded;
                    let why = format!("{} (request {})", a.state.name(), a.id);
                    hypothesis_change = Some((h.clone(), why));
                    if what.is_empty() {
                        what = format!("hypothesis {hid} excluded");
                    }
                }
            }
        }
        a.applied = true;
        let t2 = trial.clone();
        self.commit(view, |tx| {
            tx.put_approval(&a)?;
            if let Some((h, reason)) = &hypothesis_change {
                tx.put_hypothesis(id, h)?;
                tx.append(
                    Some(id),
                    EventBody::HypothesisStatus {
                        id: h.id,
                        status: h.status,
                        reason: reason.clone(),
                    },
                )?;
            }
            if let Some(t) = &t2 {
                put_queued(tx, id, t)?;
            }
            Ok(())
        })?;
        if let Some(t) = trial {
            view.trials.push(t);
        }
        self.say(Progress::Note {
            campaign: id,
            text: format!(
                "request {} ({}) {} by {}: {what}",
                a.id,
                a.kind.name(),
                a.state.name(),
                a.decided_by.as_deref().unwrap_or("?")
            ),
        });
        Ok(())
    }

    /// The request payload for one more trial of `assignments`.
    pub(super) fn trial_payload(&self, view: &View, extra: serde_json::Value) -> serde_json::Value {
        let mut p = serde_json::json!({
            "cpu_hours": view.row.spec.cpu_reservation(),
            "gpu_hours": view.row.spec.gpu_reservation(),
        });
        if let (Some(p), serde_json::Value::Object(extra)) = (p.as_object_mut(), extra) {
            p.extend(extra);
        }
        p
    }

    pub(super) fn new_request(
        &self,
        view: &View,
        kind: ApprovalKind,
        summary: String,
        payload: serde_json::Value,
        hypothesis: Option<u64>,
    ) -> NewRequest {
        NewRequest {
            campaign: view.row.id,
            kind,
            requested_by: "agent".into(),
            summary,
            payload,
            hypothesis,
            expires_after_ms: view.row.spec.policy.approval_expiry.as_millis() as u64,
        }
    }

    /// Pending out-of-space requests of this campaign.
    pub(super) fn pending_out_of_space(&self, id: u64) -> anyhow::Result<usize> {
        Ok(self
            .store
            .approvals_of(id)?
            .iter()
            .filter(|a| a.kind == ApprovalKind::OutOfSpace && a.state == ApprovalState::Pending)
            .count())
    }

    /// The state of this campaign's budget-increase request, if it made one.
    pub(super) fn budget_request(&self, id: u64) -> anyhow::Result<Option<ApprovalRow>> {
        Ok(self
            .store
            .approvals_of(id)?
            .into_iter()
            .rev()
            .find(|a| a.kind == ApprovalKind::BudgetIncrease))
    }

    /// Denies every pending request of a campaign that ended, in `tx`.
    pub(super) fn close_requests(&self, tx: &mut Tx, id: u64, why: &str) -> anyhow::Result<()> {
        let now = (self.clock)();
        for mut a in self.store.approvals_of(id)? {
            if a.state == ApprovalState::Pending {
                governance::expire(tx, &mut a, now, why)?;
                a.applied = true;
                tx.put_approval(&a)?;
            }
        }
        Ok(())
    }
}

impl Engine<'_> {
    /// Raises a budget-increase request for `runs` confirmation trials of
    /// `winner` and the baseline: what they would reserve beyond what is left.
    pub(super) fn ask_for_budget(
        &mut self,
        view: &mut View,
        winner: u64,
        runs: u32,
    ) -> anyhow::Result<bool> {
        let id = view.row.id;
        let spec = &view.row.spec;
        let (cpu_left, gpu_left) = self.cpu_left(view);
        let budget = view.row.budget();
        let round = |x: f64| (x.max(0.0) * 1e6).ceil() / 1e6;
        let cpu = if budget.cpu_hours > 0.0 {
            round(spec.cpu_reservation() * runs as f64 - cpu_left)
        } else {
            0.0
        };
        let gpu = round(spec.gpu_reservation() * runs as f64 - gpu_left);
        let trials = (view.row.ledger.launched + runs).saturating_sub(budget.max_trials);
        let payload = serde_json::json!({
            "cpu_hours": cpu,
            "gpu_hours": gpu,
            "max_trials": trials,
            "winner": winner,
            "reason": format!("confirm hypothesis {winner} against the baseline with {runs} fresh-seed runs"),
        });
        let request = self.new_request(
            view,
            ApprovalKind::BudgetIncrease,
            format!(
                "+{cpu} CPU-h, +{gpu} GPU-h, +{trials} trials to confirm hypothesis {winner} ({runs} runs)"
            ),
            payload,
            None,
        );
        let now = (self.clock)();
        let mut rid = 0;
        self.commit(view, |tx| {
            rid = governance::request(tx, request, now)?.id;
            Ok(())
        })?;
        self.say(Progress::Note {
            campaign: id,
            text: format!(
                "the budget cannot cover confirming hypothesis {winner}: asked for more (request {rid}; `reagent approve {rid}`)"
            ),
        });
        Ok(true)
    }
}

impl Engine<'_> {
    /// Whether an out-of-space or escalation request of this campaign
    /// still waits for a human (its branch may yet produce trials).
    pub(super) fn branches_waiting(&self, id: u64) -> anyhow::Result<bool> {
        Ok(self.store.approvals_of(id)?.iter().any(|a| {
            matches!(a.kind, ApprovalKind::OutOfSpace | ApprovalKind::Escalation)
                && (a.state == ApprovalState::Pending
                    || (a.state == ApprovalState::Approved && !a.applied))
        }))
    }
}
