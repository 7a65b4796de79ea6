//! `runbook`: Reagent's default failure debugger.
//!
//! It classifies a failed trial ([`classify`]) and answers with what an
//! on-call engineer's runbook would say:
//!
//! | class            | action                                                    |
//! |------------------|-----------------------------------------------------------|
//! | out of memory    | retry with half the batch size (else half the largest size-like knob), else exclude |
//! | divergence       | retry with the learning rate divided by 3, else exclude   |
//! | time limit       | retry with half the epochs/iterations/steps, else exclude |
//! | infrastructure   | retry                                                     |
//! | killed           | retry once, then escalate                                 |
//! | program error    | retry with the change the trainer's message names (`set depth >= 1`), else exclude (it would fail the same way again) |
//! | missing metrics  | as program error, else escalate (the job's metric reporting is broken) |
//! | unknown          | as program error, else retry, then escalate               |
//!
//! A second retry for memory, divergence or time takes the step twice over
//! (a quarter of the batch, the learning rate divided by 9): the first fix
//! was not enough. A named change is taken only when it names one of the
//! campaign's knobs and a value inside its range ([`remedy::named_fix`]).
//! Once `attempt` reaches `max_attempts` it never retries: failures caused
//! by the configuration are excluded, the others escalated.

use reagent_sdk::{Action, Assignment, Context, Debugger, Diagnosis, FailureClass, FailureReport};

mod classify;
mod remedy;

#[cfg(test)]
mod tests;

use classify::{Finding, classify};
use remedy::Fix;

pub struct Runbook;

impl Debugger for Runbook {
    fn diagnose(ctx: &Context, failure: &FailureReport) -> Diagnosis {
        let finding = classify(failure, &ctx.objective.metric);
        let (action, outcome) = decide(ctx, failure, &finding);
        reagent_sdk::log::info(&format!(
            "trial {} (attempt {} of {}): {} → {}",
            failure.trial,
            failure.attempt,
            failure.max_attempts,
            class_name(finding.class),
            action_summary(&action),
        ));
        Diagnosis {
            class: finding.class,
            action,
            rationale: format!(
                "{} ({}; attempt {} of {}). {}",
                headline(finding.class),
                finding.evidence,
                failure.attempt,
                failure.max_attempts,
                outcome
            ),
        }
    }
}

reagent_sdk::export_debugger!(Runbook);

/// The action for a finding, and a sentence saying what is done.
fn decide(ctx: &Context, failure: &FailureReport, finding: &Finding) -> (Action, String) {
    let exhausted = failure.attempt >= failure.max_attempts;
    let retry = |why: &str| {
        (
            Action::Retry,
            format!("Retrying the same configuration: {why}."),
        )
    };
    let escalate = |why: &str| (Action::Escalate, format!("Escalating to a human: {why}."));
    let exclude = |why: &str| {
        (
            Action::Exclude,
            format!("Excluding this hypothesis: {why}."),
        )
    };
    let no_retries_left = "no retries left";

    // The trainer said what to change, and it is inside the space.
    if !exhausted
        && matches!(
            finding.class,
            FailureClass::ProgramError | FailureClass::Unknown | FailureClass::MissingMetrics
        )
        && let Some((fix, line)) = remedy::named_fix(ctx, failure)
    {
        return (
            Action::RetryWith(retry_assignments(failure, &fix)),
            format!(
                "Retrying with {}, the change the trainer's message names: {}.",
                fix.describe(),
                classify::quote(&line)
            ),
        );
    }

    match finding.class {
        FailureClass::OutOfMemory | FailureClass::Divergence | FailureClass::TimeLimit => {
            if exhausted {
                return exclude(no_retries_left);
            }
            let (fix, what, missing) = match finding.class {
                FailureClass::OutOfMemory => (
                    remedy::shrink_memory(ctx, failure),
                    "to use less memory",
                    "no batch- or size-like knob left to shrink",
                ),
                FailureClass::Divergence => (
                    remedy::lower_learning_rate(ctx, failure),
                    if failure.attempt > 1 {
                        "the learning rate divided by 9: dividing by 3 was not enough"
                    } else {
                        "the learning rate divided by 3"
                    },
                    "no learning-rate knob, or it is already at its lower bound",
                ),
                _ => (
                    remedy::shorten(ctx, failure),
                    "to fit the time limit",
                    "no epochs, iterations or steps knob left to shorten",
                ),
            };
            match fix {
                Some(fix) => (
                    Action::RetryWith(retry_assignments(failure, &fix)),
                    format!("Retrying with {} ({what}).", fix.describe()),
                ),
                None => exclude(missing),
            }
        }
        FailureClass::Infrastructure if exhausted => escalate("the infrastructure kept failing"),
        FailureClass::Infrastructure => {
            retry("an infrastructure fault is not the configuration's doing")
        }
        FailureClass::Killed if exhausted || failure.attempt > 1 => {
            escalate("the job was killed again and nothing says why")
        }
        FailureClass::Killed => retry("a single kill is often an operator or scheduler action"),
        FailureClass::ProgramError => exclude("the program would fail the same way again"),
        FailureClass::MissingMetrics => {
            escalate("the job ran to completion but its metric reporting is broken")
        }
        FailureClass::Unknown if exhausted => {
            escalate("the cause is unknown and retries are used up")
        }
        FailureClass::Unknown => retry("the cause is unknown, so one more try may tell"),
    }
}

/// The failed trial's assignments with the fix applied, so the retry is a
/// complete configuration whether the host merges or replaces.
fn retry_assignments(failure: &FailureReport, fix: &Fix) -> Vec<Assignment> {
    let mut out: Vec<Assignment> = failure
        .assignments
        .iter()
        .filter(|a| a.knob != fix.knob)
        .cloned()
        .collect();
    out.push(Assignment {
        knob: fix.knob.clone(),
        value: fix.to.clone(),
    });
    out
}

fn headline(class: FailureClass) -> &'static str {
    match class {
        FailureClass::OutOfMemory => "Out of memory",
        FailureClass::Divergence => "Training diverged",
        FailureClass::TimeLimit => "Hit the time limit",
        FailureClass::Killed => "Killed by a signal",
        FailureClass::Infrastructure => "Infrastructure failure",
        FailureClass::ProgramError => "Program error",
        FailureClass::MissingMetrics => "Missing metrics",
        FailureClass::Unknown => "Unknown failure",
    }
}

fn class_name(class: FailureClass) -> &'static str {
    match class {
        FailureClass::OutOfMemory => "out-of-memory",
        FailureClass::Divergence => "divergence",
        FailureClass::TimeLimit => "time-limit",
        FailureClass::Killed => "killed",
        FailureClass::Infrastructure => "infrastructure",
        FailureClass::ProgramError => "program-error",
        FailureClass::MissingMetrics => "missing-metrics",
        FailureClass::Unknown => "unknown",
    }
}

fn action_summary(action: &Action) -> String {
    match action {
        Action::Retry => "retry".to_string(),
        Action::RetryWith(assignments) => format!(
            "retry-with {}",
            assignments
                .iter()
                .map(|a| format!("{}={}", a.knob, a.value.render()))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Action::Exclude => "exclude".to_string(),
        Action::Escalate => "escalate".to_string(),
    }
}
