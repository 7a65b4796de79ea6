//! Early stopping (`[stopping]`): the median stopping rule, as a pure
//! function of curves, so the engine's decision and its replay from the
//! audit log are the same computation.
//!
//! A running trial that has reported step `s >= min_steps` is stopped when
//! the best value it reported so far is worse, in the objective's
//! direction, than the median of the completed trials' reports at `s`
//! (each one's last report at or before `s`; a trial that reported
//! nothing by `s` does not count), once at least `min_trials` completed
//! trials count. Comparing the trial's *best so far* with the others'
//! value *at that step* leans towards letting it run.

use crate::campaign::stats;
use crate::spec::StoppingSpec;
use crate::strategy::Direction;

/// Why a trial is stopped: the inputs and the outcome of the rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub step: u32,
    /// The trial's best value so far.
    pub value: f64,
    /// Each completed trial's report at `step`: (trial id, value).
    pub references: Vec<(u64, f64)>,
    pub median: f64,
}

/// The last finite value reported at or before `step`.
pub fn at_step(curve: &[(u32, f64)], step: u32) -> Option<f64> {
    let mut best: Option<(u32, f64)> = None;
    for &(s, v) in curve {
        if s <= step && v.is_finite() && best.is_none_or(|(bs, _)| s >= bs) {
            best = Some((s, v));
        }
    }
    best.map(|b| b.1)
}

fn better(direction: Direction, a: f64, b: f64) -> bool {
    stats::improvement(direction, b, a) > 0.0
}

/// The median of `xs` (not empty).
fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Whether to stop a running trial whose `metric` curve so far is
/// `curve`, given the completed trials' curves of that metric.
pub fn judge(
    spec: &StoppingSpec,
    direction: Direction,
    curve: &[(u32, f64)],
    completed: &[(u64, Vec<(u32, f64)>)],
) -> Option<Verdict> {
    let step = curve
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(s, _)| *s)
        .max()?;
    if step < spec.min_steps {
        return None;
    }
    let value = curve
        .iter()
        .filter(|(s, v)| *s <= step && v.is_finite())
        .map(|(_, v)| *v)
        .reduce(|a, b| if better(direction, b, a) { b } else { a })?;
    let references: Vec<(u64, f64)> = completed
        .iter()
        .filter_map(|(id, c)| Some((*id, at_step(c, step)?)))
        .collect();
    let verdict = Verdict {
        step,
        value,
        median: if references.is_empty() {
            f64::NAN
        } else {
            median(&references.iter().map(|r| r.1).collect::<Vec<_>>())
        },
        references,
    };
    stops(spec, direction, &verdict).then_some(verdict)
}

/// Whether a verdict's recorded inputs call for a stop under `spec`: the
/// check `audit replay` makes of every recorded stop.
pub fn stops(spec: &StoppingSpec, direction: Direction, v: &Verdict) -> bool {
    v.step >= spec.min_steps
        && v.references.len() >= spec.min_trials as usize
        && v.value.is_finite()
        && median(&v.references.iter().map(|r| r.1).collect::<Vec<_>>()) == v.median
        && better(direction, v.median, v.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min_steps: u32, min_trials: u32) -> StoppingSpec {
        StoppingSpec {
            metric: "loss".into(),
            min_steps,
            min_trials,
        }
    }

    /// Loss curves falling from `start` to `end` over steps 1..=10.
    fn falling(start: f64, end: f64) -> Vec<(u32, f64)> {
        (1..=10)
            .map(|s| (s, start + (end - start) * f64::from(s - 1) / 9.0))
            .collect()
    }

    fn completed() -> Vec<(u64, Vec<(u32, f64)>)> {
        vec![
            (1, falling(1.0, 0.5)),
            (2, falling(1.0, 0.45)),
            (3, falling(1.1, 0.6)),
        ]
    }

    #[test]
    fn a_clearly_losing_curve_is_stopped_at_matched_steps() {
        // Halfway (step 5) the others are near 0.8; this one is at 1.6.
        let losing: Vec<(u32, f64)> = falling(2.0, 1.2)[..5].to_vec();
        let v = judge(&spec(3, 3), Direction::Minimize, &losing, &completed()).unwrap();
        assert_eq!(v.step, 5);
        assert!((v.value - 1.644).abs() < 1e-3, "{v:?}");
        assert_eq!(v.references.len(), 3);
        assert!((v.median - 0.777_777).abs() < 1e-3, "{v:?}");
        assert!(stops(&spec(3, 3), Direction::Minimize, &v));
        // The same curve when larger is better is winning.
        assert!(judge(&spec(3, 3), Direction::Maximize, &losing, &completed()).is_none());
    }

    #[test]
    fn a_late_riser_under_min_steps_runs_on_and_a_good_curve_is_never_stopped() {
        // Bad at first, best at the end (a metric that improves late).
        let late = [(1, 3.0), (2, 2.5), (3, 2.0)];
        assert!(judge(&spec(4, 3), Direction::Minimize, &late, &completed()).is_none());
        // Past min_steps it would be stopped: the test above is not vacuous.
        assert!(judge(&spec(3, 3), Direction::Minimize, &late, &completed()).is_some());
        // Ahead of the median: runs on.
        let good = falling(0.9, 0.4)[..6].to_vec();
        assert!(judge(&spec(1, 3), Direction::Minimize, &good, &completed()).is_none());
    }

    #[test]
    fn too_few_references_or_nothing_reported_stops_nothing() {
        let losing = falling(2.0, 1.2)[..5].to_vec();
        assert!(judge(&spec(1, 4), Direction::Minimize, &losing, &completed()).is_none());
        assert!(judge(&spec(1, 1), Direction::Minimize, &[], &completed()).is_none());
        // References that reported nothing by the step do not count.
        let late_refs = vec![(1, vec![(7, 0.5)]), (2, vec![(8, 0.5)])];
        assert!(judge(&spec(1, 1), Direction::Minimize, &losing, &late_refs).is_none());
    }

    #[test]
    fn a_verdict_with_altered_inputs_does_not_replay() {
        let losing = falling(2.0, 1.2)[..5].to_vec();
        let v = judge(&spec(3, 3), Direction::Minimize, &losing, &completed()).unwrap();
        let mut forged = v.clone();
        forged.references[0].1 = 5.0;
        assert!(!stops(&spec(3, 3), Direction::Minimize, &forged));
        let mut early = v;
        early.step = 2;
        assert!(!stops(&spec(3, 3), Direction::Minimize, &early));
    }
}
