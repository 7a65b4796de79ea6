//! The baseline gate: a campaign whose baseline cannot produce the
//! objective halts before it explores, and says why in words an operator
//! can act on.
//!
//! Every effect Reagent reports is measured against the baseline, so a
//! campaign without one cannot produce anything but failures. Without the
//! gate a metric-name typo ran every exploration trial, raised an
//! escalation per failure and then waited for their answers.

use super::*;

impl Engine<'_> {
    /// Halts the campaign when every baseline run of validate has ended and
    /// none reported the objective (retries still queued or running keep
    /// it open). True if it halted.
    pub(super) fn baseline_gate(&mut self, view: &mut View) -> anyhow::Result<bool> {
        let Some(cause) = baseline_cause(view) else {
            return Ok(false);
        };
        let folder = view
            .trials
            .iter()
            .find(|t| t.hypothesis == 0 && t.stage == Stage::Validate)
            .and_then(|t| self.backend.folder(&t.key));
        let mut reason = format!(
            "the baseline never produced `{}`, so no change can be measured against it: {cause}. \
             Nothing more was launched. Fix the campaign file and plan it again \
             (`reagent plan FILE --smoke` runs one baseline trial first)",
            view.row.spec.objective.metric
        );
        if let Some(dir) = folder {
            reason.push_str(&format!("; the first run's logs are in {}", dir.display()));
        }
        // Queued single changes (none in the normal order: validate asks
        // for them only after the baseline is back) will never run.
        let queued: Vec<u64> = view
            .trials
            .iter()
            .filter(|t| t.status == TrialStatus::Queued)
            .map(|t| t.id)
            .collect();
        for tid in queued {
            self.drop_trial(view, tid, "the baseline produced no objective")?;
        }
        self.halt(view, reason)?;
        Ok(true)
    }
}

/// Why no baseline run of validate reported the objective, or None when
/// one did or some may still (queued, launching or running).
pub(super) fn baseline_cause(view: &View) -> Option<String> {
    let runs: Vec<&TrialRow> = view
        .trials
        .iter()
        .filter(|t| t.hypothesis == 0 && t.stage == Stage::Validate)
        .collect();
    if runs.is_empty()
        || runs.iter().any(|t| {
            t.objective.is_some() || matches!(t.status, TrialStatus::Queued) || t.status.in_flight()
        })
    {
        return None;
    }
    let spec = &view.row.spec;
    // The most common cause among the runs, with how many share it.
    let mut causes: Vec<(String, usize)> = Vec::new();
    for t in &runs {
        let c = run_cause(spec, t);
        match causes.iter_mut().find(|(s, _)| *s == c) {
            Some((_, n)) => *n += 1,
            None => causes.push((c, 1)),
        }
    }
    causes.sort_by_key(|c| std::cmp::Reverse(c.1));
    let (cause, n) = &causes[0];
    let of = runs.len();
    Some(if *n == of {
        format!("all {of} run(s) {cause}")
    } else {
        format!("{n} of {of} run(s) {cause}")
    })
}

/// One failed baseline run's cause, as a verb phrase ("exited with code 2:
/// …").
fn run_cause(spec: &Campaign, t: &TrialRow) -> String {
    match &t.outcome {
        Some(o) => outcome_cause(spec, o),
        None => format!("ended {} without an outcome", t.status.name()),
    }
}

/// Why a finished job gave no objective (or failed), as a verb phrase
/// that follows "the run(s)": the time or memory limit, the metrics it
/// did report and the closest name, or its exit with the last stderr line.
pub fn outcome_cause(spec: &Campaign, o: &JobOutcome) -> String {
    let metric = &spec.objective.metric;
    if o.timed_out {
        return format!(
            "hit the time limit ({}s, `[job] time_limit`)",
            spec.job.time_limit.as_secs()
        );
    }
    if o.memory_exceeded {
        return "passed the memory limit (`[job.resources] memory_mb`)".into();
    }
    if let Some(reason) = &o.stopped_early {
        return format!("were stopped: {reason}");
    }
    match (o.exit_code, o.signal) {
        (Some(0), _) => {
            let mut s = format!("exited 0 but never reported `{metric}`");
            let mut seen: Vec<&str> = o.metrics.keys().map(String::as_str).collect();
            seen.sort_unstable();
            if seen.is_empty() {
                s.push_str(&format!(
                    " (the job reported no metric at all; it must write `{metric}` as `[job] metrics` says)"
                ));
            } else {
                s.push_str(&format!("; the job did report {}", backticked(&seen)));
                if let Some(near) = closest(metric, &seen) {
                    s.push_str(&format!(" — did you mean `{near}`? (`[objective] metric`)"));
                }
            }
            if let Some(e) = o.metrics_errors.first() {
                s.push_str(&format!("; reading metrics: {e}"));
            }
            s
        }
        (Some(code), _) => with_last_error(format!("exited with code {code}"), &o.log_tail),
        (None, Some(sig)) => with_last_error(format!("were killed by signal {sig}"), &o.log_tail),
        (None, None) => {
            let why = o
                .log_tail
                .lines()
                .rev()
                .find(|l| l.starts_with("reagent:"))
                .unwrap_or("the job was lost");
            format!("failed ({why})")
        }
    }
}

/// `what`, then the last line the job wrote to stderr (the one that
/// usually says why), if any.
fn with_last_error(what: String, log_tail: &str) -> String {
    let stderr = log_tail
        .split_once("stderr:\n")
        .map_or("", |(_, rest)| rest);
    let last = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("[reagent supervisor]"));
    match last {
        Some(line) => format!("{what}; stderr ends with \"{}\"", first_chars(line, 300)),
        None => format!("{what} and wrote nothing to stderr"),
    }
}

fn first_chars(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn backticked(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The reported name closest to `wanted`, when it is close enough to be a
/// typo (a few edits, or one contains the other).
pub(crate) fn closest<'a>(wanted: &str, names: &[&'a str]) -> Option<&'a str> {
    names
        .iter()
        .map(|n| (strsim::damerau_levenshtein(wanted, n), *n))
        .filter(|(d, n)| *d <= 3.max(wanted.len() / 4) || n.contains(wanted) || wanted.contains(n))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_finds_the_reported_name_and_an_unrelated_one_does_not() {
        let names = ["test_loss", "train_loss", "valid_loss"];
        assert_eq!(closest("val_loss", &names), Some("valid_loss"));
        assert_eq!(closest("valid_los", &names), Some("valid_loss"));
        assert_eq!(closest("accuracy", &names), None);
    }

    #[test]
    fn the_last_stderr_line_is_quoted_and_supervisor_notes_are_not() {
        let tail = "stdout:\nstarting\nstderr:\npython3: can't open file '/w/trian.py': [Errno 2] No such file or directory\n[reagent supervisor] exit 2\n";
        let s = with_last_error("exited with code 2".into(), tail);
        assert!(s.contains("can't open file '/w/trian.py'"), "{s}");
        let s = with_last_error("exited with code 2".into(), "stdout:\nhello\n");
        assert!(s.ends_with("wrote nothing to stderr"), "{s}");
    }
}
