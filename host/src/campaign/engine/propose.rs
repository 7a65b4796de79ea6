//! Asking the generator: the context a call gets, the call, its record,
//! and the hypotheses it proposed (checked, parked for a person when they
//! leave the approved space, refused when they would be pasted into code).

use super::*;

impl Engine<'_> {
    /// Counts the call's language-model tokens and tells the operator.
    pub(super) fn note_llm(&mut self, view: &mut View, record: &CallRecord) {
        let used = llm::usage(record);
        if used.calls == 0 {
            return;
        }
        view.row.llm_tokens += used.tokens;
        let budget = view.row.spec.llm.as_ref().map_or(0, |l| l.token_budget);
        let mut text = format!(
            "language model: {} call{}, {} tokens ({} of {budget} used)",
            used.calls,
            if used.calls == 1 { "" } else { "s" },
            used.tokens,
            view.row.llm_tokens
        );
        for e in &used.errors {
            text.push_str(&format!("; unavailable: {e}"));
        }
        if !used.errors.is_empty() {
            text.push_str(" (the generator went on without it)");
        }
        let campaign = view.row.id;
        self.say(Progress::Note { campaign, text });
    }

    /// Records a strategy call (event + full record) and its memory.
    pub(super) fn record_call(
        &self,
        tx: &mut Tx,
        campaign: u64,
        role: &str,
        record: &CallRecord,
    ) -> anyhow::Result<u64> {
        let bytes = serde_json::to_vec(record)?;
        let seq = tx.append(
            Some(campaign),
            EventBody::StrategyCalled {
                role: role.to_string(),
                component_sha256: record.component_sha256.clone(),
                outcome: match &record.outcome {
                    Ok(_) => "ok".into(),
                    Err(e) => e.kind().into(),
                },
                fuel: record.usage.fuel,
                record: true,
                record_sha256: hex::encode(sha2::Sha256::digest(&bytes)),
                llm_tokens: llm::usage(record).tokens,
            },
        )?;
        tx.put_call(seq, record)?;
        Ok(seq)
    }

    pub(super) fn propose(
        &mut self,
        view: &mut View,
        stage: Stage,
        max: u32,
    ) -> anyhow::Result<bool> {
        let id = view.row.id;
        let spec = view.row.spec.clone();
        let generator = match self.strategy(&spec.strategies.generator, &spec) {
            Ok(g) => g,
            Err(e) => {
                self.halt(
                    view,
                    format!(
                        "cannot load the generator {}: {e}",
                        spec.strategies.generator
                    ),
                )?;
                return Ok(true);
            }
        };
        let round = view.row.generator_calls;
        let ctx = view.context(stage, round, view.left(stage));
        let mut data = view.strategy_data();
        if spec.strategies.grants.insights {
            // Other campaigns' records that apply to this one.
            data.insights = crate::insights::served(self.store, &spec, Some(id))?;
        }
        let data = Arc::new(llm::CampaignData::new(data, &spec, view.row.llm_tokens));
        let memory = self.store.memory(id, "generator")?;
        let (record, memory) = self.sandbox.call(
            &generator,
            CallInput::Propose { context: ctx, max },
            data,
            memory,
            &spec.strategies.limits,
        );
        view.row.generator_calls += 1;
        self.note_llm(view, &record);
        let proposed = match &record.outcome {
            Ok(CallOutput::Hypotheses(h)) => Some(h.clone()),
            _ => None,
        };
        let Some(proposed) = proposed else {
            self.generator_failed(view, &record)?;
            return Ok(true);
        };
        // Drop anything already tried (same change set).
        let known: Vec<String> = view
            .hypotheses
            .iter()
            .map(|h| validate::key(&h.hypothesis))
            .collect();
        let fresh: Vec<Hypothesis> = proposed
            .into_iter()
            .filter(|h| !known.contains(&validate::key(h)))
            .collect();

        let Admitted {
            mut rows,
            requests,
            refused,
        } = self.admit(view, stage, fresh)?;
        let mut trials = Vec::new();
        for h in rows.iter().filter(|h| h.status == HypothesisStatus::Active) {
            trials.push(self.new_trial(
                view,
                h.id,
                stage,
                FIRST_SEED,
                1,
                None,
                h.hypothesis.assignments.clone(),
            ));
        }
        if trials.is_empty() {
            // Nothing new to run (all known, or all waiting for a human):
            // don't ask again in this stage.
            view.row.exhausted.insert(stage.name().to_string(), true);
        }
        let count = rows.len();
        let rows_for_tx = rows.clone();
        let trials_for_tx = trials.clone();
        let mut call_seq = None;
        self.commit(view, |tx| {
            let seq = self.record_call(tx, id, "generator", &record)?;
            call_seq = Some(seq);
            tx.put_memory(id, "generator", &memory)?;
            for mut h in rows_for_tx {
                h.call_seq = Some(seq);
                put_new_hypothesis(tx, id, &h)?;
                if let Some((_, why)) = refused.iter().find(|(r, _)| *r == h.id) {
                    tx.append(
                        Some(id),
                        EventBody::HypothesisStatus {
                            id: h.id,
                            status: h.status,
                            reason: why.clone(),
                        },
                    )?;
                }
            }
            for t in &trials_for_tx {
                put_queued(tx, id, t)?;
            }
            let now = (self.clock)();
            for r in requests {
                governance::request(tx, r, now)?;
            }
            Ok(())
        })?;
        for h in &mut rows {
            h.call_seq = call_seq;
        }
        view.hypotheses.extend(rows);
        view.trials.extend(trials);
        self.say(Progress::Proposed {
            campaign: id,
            count,
            stage,
        });
        Ok(true)
    }

    /// A generator call that returned no hypotheses: recorded, one strike,
    /// and the campaign halts at the third.
    fn generator_failed(&mut self, view: &mut View, record: &CallRecord) -> anyhow::Result<()> {
        let id = view.row.id;
        view.row.strikes += 1;
        let err = record
            .outcome
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        self.commit(view, |tx| {
            self.record_call(tx, id, "generator", record)?;
            Ok(())
        })?;
        self.say(Progress::Note {
            campaign: id,
            text: format!(
                "generator call failed ({} of {MAX_STRIKES} strikes): {err}",
                view.row.strikes
            ),
        });
        if view.row.strikes >= MAX_STRIKES {
            self.halt(
                view,
                format!("the generator failed {MAX_STRIKES} times; last error: {err}"),
            )?;
        }
        Ok(())
    }

    /// Numbers the fresh hypotheses and decides each one's fate: active
    /// (inside the approved space), refused (a value that would be pasted
    /// into code), waiting for a person (outside the space, while there is
    /// room for requests), or excluded.
    fn admit(
        &mut self,
        view: &mut View,
        stage: Stage,
        fresh: Vec<Hypothesis>,
    ) -> anyhow::Result<Admitted> {
        let id = view.row.id;
        let spec = view.row.spec.clone();
        let mut rows = Vec::new();
        // Values outside the approved space wait for a human; the rest of
        // the batch goes ahead.
        let mut room =
            guardrails::MAX_PENDING_OUT_OF_SPACE.saturating_sub(self.pending_out_of_space(id)?);
        let mut requests = Vec::new();
        let in_code = spec.knobs_in_code();
        let mut refused: Vec<(u64, String)> = Vec::new();
        for h in fresh {
            let hid = view.row.next_hypothesis.max(1);
            view.row.next_hypothesis = hid + 1;
            let outside = validate::outside_space_all(&spec.knobs, &h);
            let status = if outside.is_empty() {
                HypothesisStatus::Active
            } else if let Some(why) = code_injection(&in_code, &h) {
                // No approval can make this safe to paste into code: it is
                // refused, not put to a person.
                refused.push((hid, why));
                HypothesisStatus::Excluded
            } else if room > 0 {
                room -= 1;
                let changes: serde_json::Map<String, serde_json::Value> = h
                    .assignments
                    .iter()
                    .map(|a| (a.knob.clone(), crate::strategy::value_json(&a.value)))
                    .collect();
                let payload = self.trial_payload(
                    view,
                    serde_json::json!({
                        "hypothesis": hid,
                        "title": h.title,
                        "changes": changes,
                        "outside": outside,
                    }),
                );
                requests.push(self.new_request(
                    view,
                    governance::ApprovalKind::OutOfSpace,
                    format!("hypothesis {hid} \"{}\": {}", h.title, outside.join("; ")),
                    payload,
                    Some(hid),
                ));
                HypothesisStatus::AwaitingApproval
            } else {
                HypothesisStatus::Excluded
            };
            rows.push(HypothesisRow {
                id: hid,
                stage,
                hypothesis: h,
                origin: Origin::Generator,
                status,
                call_seq: None,
            });
        }
        Ok(Admitted {
            rows,
            requests,
            refused,
        })
    }
}

/// Stores a new hypothesis with its event.
/// Why a hypothesis may not run, if one of its values would be pasted into
/// shell or interpreter code (`in_code`: [`Campaign::knobs_in_code`]) and
/// is not inert there.
pub(super) fn code_injection(in_code: &[String], h: &Hypothesis) -> Option<String> {
    h.assignments.iter().find_map(|a| match &a.value {
        Value::Choice(v) if in_code.contains(&a.knob) && !spec::inert_in_code(v) => {
            Some(format!(
                "refused: the value of `{}` ({} bytes, sha256 {}) would be pasted into shell or interpreter code in the job command, and it holds characters beyond letters, digits and ._+-=,:/@%",
                a.knob,
                v.len(),
                &governance::payload_hash(&serde_json::Value::String(v.clone()))[..16]
            ))
        }
        _ => None,
    })
}

pub(super) fn put_new_hypothesis(
    tx: &mut Tx,
    campaign: u64,
    h: &HypothesisRow,
) -> anyhow::Result<()> {
    tx.append(
        Some(campaign),
        EventBody::HypothesisAdded {
            id: h.id,
            stage: h.stage,
            origin: h.origin,
            title: h.hypothesis.title.clone(),
            assignments: h.hypothesis.assignments.clone(),
            parents: h.hypothesis.parents.clone(),
        },
    )?;
    tx.put_hypothesis(campaign, h)
}

/// What [`Engine::admit`] made of a generator's fresh hypotheses.
struct Admitted {
    rows: Vec<HypothesisRow>,
    /// Out-of-space approval requests, one per hypothesis that waits.
    requests: Vec<governance::NewRequest>,
    /// (hypothesis, why) for values refused outright.
    refused: Vec<(u64, String)>,
}
