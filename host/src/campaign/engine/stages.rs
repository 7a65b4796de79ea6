//! One step of the stage machine, and how a campaign ends.

use super::*;

impl Engine<'_> {
    /// One step of the stage machine; true if anything changed.
    pub(super) fn step(&mut self, view: &mut View) -> anyhow::Result<bool> {
        let a = allotment(&view.row.spec);
        match view.row.stage {
            Stage::Plan => {
                view.row.started_ms.get_or_insert(now_ms());
                for r in 0..a.baseline {
                    self.queue_trial(view, 0, Stage::Validate, FIRST_SEED + r as u64, 1, None)?;
                }
                self.stage_to(
                    view,
                    Stage::Validate,
                    format!(
                        "measuring the baseline ({} seeds) and single changes",
                        a.baseline
                    ),
                )?;
                Ok(true)
            }
            stage @ (Stage::Validate | Stage::Combine | Stage::Exploit) => {
                self.explore(view, stage)
            }
            Stage::Confirm => self.confirm(view),
            Stage::Done => Ok(false),
        }
    }

    /// Validate, combine or exploit: launch what is queued, ask the
    /// generator for more when the stage can use it, move on when it is
    /// done.
    fn explore(&mut self, view: &mut View, stage: Stage) -> anyhow::Result<bool> {
        if self.launch(view)? {
            return Ok(true);
        }
        if stage == Stage::Validate && self.baseline_gate(view)? {
            return Ok(true);
        }
        let queued = view.count(stage, |s| s == TrialStatus::Queued);
        let in_flight = view.count(stage, TrialStatus::in_flight);
        let exhausted = view
            .row
            .exhausted
            .get(stage.name())
            .copied()
            .unwrap_or(false);
        let hold = if stage < Stage::Confirm {
            self.confirm_hold(view)
        } else {
            0
        };
        let can_spend = self.affordable(view, hold) && !self.past_deadline(view);
        let left = view.left(stage);
        // Ask for more when nothing of this stage waits for a slot.
        // Validate and combine ask once everything in flight is
        // back; exploit asks when a slot is free, for a batch (see
        // `exploit_batch`; the rest wait in the queue, so the
        // generator is called about once per batch, not per trial).
        let slots = view.row.spec.budget.max_parallel as usize;
        let ready = match stage {
            Stage::Exploit => view.in_flight() < slots,
            _ => in_flight == 0,
        };
        let baseline_ready = stage != Stage::Combine || view.baseline().is_some();
        if queued == 0 && left > 0 && !exhausted && can_spend && ready && baseline_ready {
            let max = match stage {
                Stage::Exploit => left.min(exploit_batch(slots, view.trials.len())),
                _ => left,
            };
            return self.propose(view, stage, max);
        }
        if queued == 0 && in_flight == 0 {
            let next = match stage {
                Stage::Validate => Stage::Combine,
                Stage::Combine => Stage::Exploit,
                _ => Stage::Confirm,
            };
            let why = if !can_spend {
                "the exploration budget is spent".to_string()
            } else if exhausted {
                format!("the generator has nothing more for {}", stage.name())
            } else {
                format!("{} is done", stage.name())
            };
            if stage == Stage::Validate {
                let judging = view.judging();
                let promising = view
                    .hypotheses
                    .iter()
                    .filter(|h| view.judge_with(&judging, h).2)
                    .count();
                let note = format!("{why}; {promising} promising change(s)");
                self.stage_to(view, next, note)?;
            } else {
                self.stage_to(view, next, why)?;
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Confirm: choose the winner (once nothing that could still beat it
    /// is pending), run it and the baseline with fresh seeds, finish.
    fn confirm(&mut self, view: &mut View) -> anyhow::Result<bool> {
        let id = view.row.id;
        let a = allotment(&view.row.spec);
        if self.launch(view)? {
            return Ok(true);
        }
        let confirm_trials = view
            .trials
            .iter()
            .filter(|t| t.stage == Stage::Confirm)
            .count();
        if confirm_trials == 0 {
            // A branch waiting for a human may hold the winner:
            // wait for its answer (or expiry) and its trials.
            if view.in_flight() > 0
                || view.trials.iter().any(|t| t.status == TrialStatus::Queued)
                || self.branches_waiting(id)?
            {
                return Ok(false);
            }
            if a.race > 0 && !view.row.raced && self.race(view, a.race)? {
                return Ok(true);
            }
            let Some((winner, s, effect)) = view.best() else {
                self.finish_campaign(view, "nothing beat the baseline".into())?;
                return Ok(true);
            };
            view.row.winner = Some(winner);
            let reps = view.row.spec.budget.confirm_replicates;
            if a.confirm == 0 || !self.affordable(view, 2 * reps - 1) {
                let mut note = format!(
                    "best: hypothesis {winner} (mean {:.6}, +{effect:.6} vs baseline); no budget left to confirm it with fresh seeds",
                    s.mean
                );
                if a.confirm > 0 && view.row.spec.policy.ask_for_budget {
                    match self.budget_request(id)? {
                        None => return self.ask_for_budget(view, winner, 2 * reps),
                        Some(r) if r.state == governance::ApprovalState::Pending => {
                            return Ok(false);
                        }
                        Some(r) => {
                            note = format!(
                                "{note} (budget-increase request {} was {})",
                                r.id,
                                r.state.name()
                            );
                        }
                    }
                }
                self.finish_campaign(view, note)?;
                return Ok(true);
            }
            for r in 0..reps {
                self.queue_trial(
                    view,
                    winner,
                    Stage::Confirm,
                    CONFIRM_SEED + r as u64,
                    1,
                    None,
                )?;
                self.queue_trial(view, 0, Stage::Confirm, CONFIRM_SEED + r as u64, 1, None)?;
            }
            self.say(Progress::Note {
                campaign: id,
                text: format!("confirming hypothesis {winner} against the baseline with {reps} fresh seeds each"),
            });
            return Ok(true);
        }
        let open = view.count(Stage::Confirm, |s| {
            s == TrialStatus::Queued || s.in_flight()
        });
        if open == 0 {
            self.finish_campaign(view, "confirmation done".into())?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Races the best few candidates before the winner is chosen: each of
    /// the `n` best by mean (those `best` could pick) that has a single
    /// exploration run gets one more, on its next seed (common random
    /// numbers with the baseline's replicates). Marks the campaign raced
    /// either way; true if trials were queued.
    fn race(&mut self, view: &mut View, n: u32) -> anyhow::Result<bool> {
        view.row.raced = true;
        let direction = view.row.spec.objective.direction;
        let mut ranked = view.candidates();
        ranked.sort_by(|a, b| {
            crate::campaign::stats::improvement(direction, a.1, b.1)
                .total_cmp(&0.0)
                .then(a.0.cmp(&b.0))
        });
        let chosen: Vec<(u64, usize)> = ranked
            .iter()
            .take(n as usize)
            .map(|&(h, _)| (h, view.values(h, false).len()))
            .filter(|&(_, runs)| runs == 1)
            .collect();
        if chosen.is_empty() {
            return Ok(false);
        }
        for &(h, runs) in &chosen {
            self.queue_trial(view, h, Stage::Exploit, FIRST_SEED + runs as u64, 1, None)?;
        }
        let list: Vec<String> = chosen.iter().map(|(h, _)| h.to_string()).collect();
        self.say(Progress::Note {
            campaign: view.row.id,
            text: format!(
                "racing the best candidates before choosing: one more run each for hypotheses {}",
                list.join(", ")
            ),
        });
        Ok(true)
    }

    /// Marks a queued trial as never to run.
    pub(super) fn drop_trial(
        &mut self,
        view: &mut View,
        tid: u64,
        reason: &str,
    ) -> anyhow::Result<()> {
        let id = view.row.id;
        let t = view.trials.iter_mut().find(|t| t.id == tid).unwrap();
        t.status = TrialStatus::Dropped;
        let row = t.clone();
        self.commit(view, |tx| {
            tx.put_trial(id, &row)?;
            tx.append(
                Some(id),
                EventBody::TrialDropped {
                    id: tid,
                    reason: reason.into(),
                },
            )?;
            Ok(())
        })
    }

    pub(super) fn finish_campaign(&mut self, view: &mut View, note: String) -> anyhow::Result<()> {
        // Queued trials will never run.
        let dropped: Vec<u64> = view
            .trials
            .iter()
            .filter(|t| t.status == TrialStatus::Queued)
            .map(|t| t.id)
            .collect();
        let id = view.row.id;
        for tid in dropped {
            self.drop_trial(view, tid, "the campaign finished")?;
        }
        view.row.stage = Stage::Done;
        view.row.note = Some(note.clone());
        let from = view.row.state;
        view.row.state = CampaignState::Finished;
        // After the state: the headline says how the campaign ended.
        let summary = crate::campaign::report::headline(view);
        let now = now_ms();
        view.row.finished_ms = Some(now);
        let insights = crate::campaign::learned::derive(view, now);
        let s = summary.clone();
        self.commit(view, |tx| {
            tx.append(
                Some(id),
                EventBody::StageStarted {
                    stage: Stage::Done,
                    reason: note,
                },
            )?;
            tx.append(
                Some(id),
                EventBody::StateChanged {
                    from,
                    to: CampaignState::Finished,
                    reason: "all stages done".into(),
                },
            )?;
            tx.append(
                Some(id),
                EventBody::CampaignFinished {
                    state: CampaignState::Finished,
                    summary: s,
                },
            )?;
            self.close_requests(tx, id, "the campaign finished")?;
            crate::insights::record(tx, id, &view.row.spec.name, &insights)?;
            Ok(())
        })?;
        self.say(Progress::Done {
            campaign: id,
            state: CampaignState::Finished,
            summary,
        });
        Ok(())
    }

    pub(super) fn halt(&mut self, view: &mut View, reason: String) -> anyhow::Result<()> {
        view.row.note = Some(reason.clone());
        self.set_state(view, CampaignState::Halted, &reason)?;
        self.say(Progress::Done {
            campaign: view.row.id,
            state: CampaignState::Halted,
            summary: reason,
        });
        Ok(())
    }
}

/// Trials of history per hypothesis of an exploit batch beyond
/// `max_parallel`.
const HISTORY_PER_BATCH_ITEM: usize = 50;
/// The largest exploit batch.
const MAX_EXPLOIT_BATCH: usize = 256;

/// How many hypotheses exploit is asked for at once: `max_parallel`, or
/// one per 50 trials of history when that is more (at most 256). A
/// generator call reads the whole history, so asking once per slot made
/// each trial's cost grow with the history (64 ms of host CPU per trial at
/// 2,000 sequential trials); a batch that grows with it keeps the cost per
/// trial about flat. Below 100 trials nothing changes: one new result
/// still moves the model there, and sequential search keeps its feedback.
pub(crate) fn exploit_batch(slots: usize, trials: usize) -> u32 {
    let grown = (trials / HISTORY_PER_BATCH_ITEM).min(MAX_EXPLOIT_BATCH);
    slots.max(grown).max(1) as u32
}

#[cfg(test)]
mod tests {
    use super::exploit_batch;

    #[test]
    fn the_exploit_batch_grows_with_the_history_not_below_max_parallel() {
        assert_eq!(exploit_batch(1, 60), 1);
        assert_eq!(exploit_batch(4, 60), 4);
        assert_eq!(exploit_batch(1, 99), 1);
        assert_eq!(exploit_batch(1, 2_000), 40);
        assert_eq!(exploit_batch(1, 1_000_000), 256);
        assert_eq!(exploit_batch(300, 1_000_000), 300);
        assert_eq!(exploit_batch(0, 0), 1);
    }
}
