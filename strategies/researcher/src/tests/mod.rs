//! Native tests against `MockHost` (fixtures from `tactics::fixtures`).

use reagent_sdk::llm::Completion;
use reagent_sdk::testing::{MockHost, install, take};
use reagent_sdk::{Assignment, Context, FailureClass, Generator, Hypothesis, Insight, Level};
pub use tactics::fixtures::*;

use crate::Researcher;

mod evidence;
mod general;
mod model;

/// Runs one `propose` call against `host`; returns the answer and the host.
pub fn call(host: MockHost, ctx: &Context, max: u32) -> (Vec<Hypothesis>, MockHost) {
    install(host);
    let out = Researcher::propose(ctx, max);
    (out, take())
}

/// Three-phase's answer to the same call.
/// Three-phase's answer; in validate, its single changes (the researcher
/// explores with single steps and leaves the design to three-phase).
pub fn three_phase(host: MockHost, ctx: &Context, max: u32) -> Vec<Hypothesis> {
    install(host);
    let out = if ctx.phase == reagent_sdk::Phase::Validate {
        tactics::validate::single_changes(ctx, max)
    } else {
        tactics::ThreePhase::propose(ctx, max)
    };
    take();
    out
}

/// A record from campaign `campaign` on metric `acc`: `effect` with the
/// 95% interval [low, high] over 6 trials.
pub fn record(
    campaign: &str,
    tags: &[&str],
    assignments: Vec<Assignment>,
    effect: f64,
    (low, high): (f64, f64),
) -> Insight {
    Insight {
        assignments,
        campaign: campaign.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        metric: "acc".into(),
        effect,
        ci95_low: low,
        ci95_high: high,
        trials: 6,
        cost_cpu_hours: 2.5,
        failure: None,
    }
}

/// A record of a change that failed.
pub fn failed(campaign: &str, assignments: Vec<Assignment>, class: FailureClass) -> Insight {
    Insight {
        failure: Some(class),
        ..record(campaign, &[], assignments, 0.0, (0.0, 0.0))
    }
}

/// A host whose language model answers `content` once.
pub fn answering(content: &str) -> MockHost {
    MockHost {
        llm_replies: [Ok(Completion {
            content: content.to_string(),
            prompt_tokens: 900,
            completion_tokens: 300,
        })]
        .into(),
        ..Default::default()
    }
}

pub fn lines(host: &MockHost, level: Level) -> Vec<&str> {
    host.logs
        .iter()
        .filter(|(l, _)| *l == level)
        .map(|(_, line)| line.as_str())
        .collect()
}

pub fn info(host: &MockHost) -> &str {
    lines(host, Level::Info)[0]
}

/// The contract (`assert_contract`) plus the host's text checks: sizes
/// and no control characters but newline and tab.
pub fn assert_valid(ctx: &Context, host: &MockHost, out: &[Hypothesis], max: u32) {
    assert_contract(ctx, host, out, max);
    for h in out {
        assert!(!h.title.trim().is_empty());
        assert!(h.title.len() <= 1024, "title of {} bytes", h.title.len());
        assert!(h.category.len() <= 128 && !h.category.is_empty());
        assert!(h.rationale.len() <= 64 * 1024);
        for text in [&h.title, &h.category, &h.rationale] {
            assert!(
                !text
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t'),
                "control characters in {text:?}"
            );
        }
    }
}

/// Each hypothesis' changes as `knob=value` strings, for comparisons.
pub fn changes(out: &[Hypothesis]) -> Vec<String> {
    out.iter().map(Hypothesis::key).collect()
}
