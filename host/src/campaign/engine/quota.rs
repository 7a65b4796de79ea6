//! The workspace quota inside a driver pass (see `crate::quota`): while a
//! quota is set, `launch` starts nothing on its own; once every campaign
//! has been advanced, `share_slots` hands the free slots out one at a time
//! by weighted fair share, within each campaign's own `max_parallel` and
//! budget and the quota's hours.

use std::collections::HashSet;

use super::*;
use crate::quota::{Claimant, Quota, Usage, next_claimant};

/// The quota as one pass applies it.
pub(crate) struct QuotaGate {
    quota: Quota,
    /// Campaign → jobs it may have in flight during the launch under way.
    /// A campaign not listed launches nothing: its launches wait for
    /// `share_slots`.
    caps: HashMap<u64, usize>,
    /// Hours the quota's windows hold, counted at the start of
    /// `share_slots` and raised by each launch's reservation.
    usage: Usage,
}

/// The last refusal by the quota's hours told to the terminal (a waiting
/// driver passes every few seconds; the same words once are enough).
static TOLD: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

impl Engine<'_> {
    /// Applies the workspace quota (`None`: no quota, launches as before).
    pub fn with_quota(mut self, quota: Option<Quota>) -> Self {
        self.quota = quota.map(|quota| QuotaGate {
            quota,
            caps: HashMap::new(),
            usage: Usage::default(),
        });
        self
    }

    /// The most jobs this campaign may have in flight right now.
    pub(super) fn slot_cap(&self, view: &View) -> usize {
        let own = view.row.spec.budget.max_parallel as usize;
        match &self.quota {
            None => own,
            Some(g) => own.min(g.caps.get(&view.row.id).copied().unwrap_or(0)),
        }
    }

    /// Why the quota's hours keep this campaign's next trial waiting.
    pub(super) fn quota_refusal(&mut self, view: &View) -> Option<String> {
        let g = self.quota.as_ref()?;
        let spec = &view.row.spec;
        let why =
            g.quota
                .hours_refusal(&g.usage, spec.cpu_reservation(), spec.gpu_reservation())?;
        let mut told = TOLD.lock().unwrap_or_else(|p| p.into_inner());
        let cap = why.split(" is used").next().unwrap_or("").to_string();
        if told.as_deref() != Some(cap.as_str()) {
            *told = Some(cap);
            drop(told);
            self.say(Progress::Note {
                campaign: view.row.id,
                text: format!(
                    "waiting: {why}; trials launch again as the window moves on (see `reagent quota`)"
                ),
            });
        }
        Some(why)
    }

    /// Counts a launch's reservation against the quota's hours.
    pub(super) fn quota_reserve(&mut self, cpu: f64, gpu: f64) {
        if let Some(g) = &mut self.quota {
            let now = now_ms();
            g.usage.add(now, now, cpu, gpu);
        }
    }

    /// Hands free slots to the active campaigns with queued trials, one at a
    /// time to the one furthest below its weighted share. Returns the
    /// campaigns that launched or dropped something, with their jobs in
    /// flight after.
    pub fn share_slots(&mut self) -> anyhow::Result<Vec<(u64, usize)>> {
        let Some(g) = &self.quota else {
            return Ok(Vec::new());
        };
        let (quota, caps_hours) = (g.quota.clone(), g.quota.caps_hours());
        let now = now_ms();
        let mut usage = Usage::default();
        let mut claimants = Vec::new();
        for c in self.store.campaigns()? {
            if c.state.is_active() {
                let view = self.view(c.id)?;
                usage.count(now, &view.trials);
                claimants.push(Claimant {
                    campaign: c.id,
                    weight: quota.weight(&c.spec.name),
                    running: view.in_flight(),
                    launched: view.row.ledger.launched,
                    wants: wants_a_slot(&view),
                });
                let head = self.store.head()?.0;
                self.views.insert(c.id, (head, view));
            } else if caps_hours
                && c.finished_ms
                    .is_some_and(|f| now.saturating_sub(f) < crate::quota::WEEK_MS)
            {
                usage.count(now, &self.store.trials(c.id)?);
            }
        }
        if let Some(g) = &mut self.quota {
            g.usage = usage;
        }
        let slots = quota.jobs.map_or(usize::MAX, |j| j as usize);
        let mut blocked = HashSet::new();
        let mut moved = Vec::new();
        loop {
            let running: usize = claimants.iter().map(|c| c.running).sum();
            if running >= slots {
                break;
            }
            let open: Vec<Claimant> = claimants
                .iter()
                .map(|c| Claimant {
                    wants: c.wants && !blocked.contains(&c.campaign),
                    ..c.clone()
                })
                .collect();
            let id = if quota.jobs.is_some() {
                next_claimant(slots, &open)
            } else {
                open.iter().find(|c| c.wants).map(|c| c.campaign)
            };
            let Some(id) = id else {
                break;
            };
            let c = claimants.iter_mut().find(|c| c.campaign == id).unwrap();
            // One slot at a time under a cap on jobs; all it may take without.
            let cap = if quota.jobs.is_some() {
                c.running + 1
            } else {
                usize::MAX
            };
            let ((running, launched, wants), changed) = self.launch_within(id, cap)?;
            c.running = running;
            c.launched = launched;
            c.wants = wants;
            if changed {
                moved.retain(|(m, _)| *m != id);
                moved.push((id, running));
            }
            // Nothing launched or dropped: it waits (budget settling, the
            // quota's hours, a halt); the others may still use the slot.
            // (A dropped trial changed something: it may launch the next.)
            if !changed || quota.jobs.is_none() {
                blocked.insert(id);
            }
        }
        Ok(moved)
    }

    /// Runs `launch` for campaign `id` allowed `cap` jobs in flight. Returns
    /// (in flight, launched so far, still wants a slot) and whether
    /// anything changed.
    fn launch_within(&mut self, id: u64, cap: usize) -> anyhow::Result<((usize, u32, bool), bool)> {
        let before = self.store.head()?.0;
        let mut view = self.view(id)?;
        if let Some(g) = &mut self.quota {
            g.caps.insert(id, cap);
        }
        let result = self.launch(&mut view).and_then(|c| {
            self.close_pass(&mut view, c)?;
            Ok(c)
        });
        if let Some(g) = &mut self.quota {
            g.caps.remove(&id);
        }
        let changed = result?;
        let out = (
            view.in_flight(),
            view.row.ledger.launched,
            wants_a_slot(&view),
        );
        self.keep_views(id, view, before)?;
        Ok((out, changed))
    }
}

/// Whether a campaign has a trial it could launch now, given a slot.
fn wants_a_slot(view: &View) -> bool {
    view.row.state.is_active()
        && !view.row.paused
        && view.in_flight() < view.row.spec.budget.max_parallel as usize
        && view.trials.iter().any(|t| t.status == TrialStatus::Queued)
}
