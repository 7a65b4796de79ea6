//! A well-behaved debugger: echoes what it was told.
use reagent_sdk::{
    Action, Context, Debugger, Diagnosis, FailureClass, FailureReport, history, log,
};

struct Echo;

impl Debugger for Echo {
    fn diagnose(ctx: &Context, failure: &FailureReport) -> Diagnosis {
        log::warn(&format!("trial {} failed", failure.trial));
        Diagnosis {
            class: FailureClass::Infrastructure,
            action: Action::Retry,
            rationale: format!(
                "campaign {} trials={} tail={}",
                ctx.campaign,
                history::trial_count(),
                failure.log_tail.len()
            ),
        }
    }
}

reagent_sdk::export_debugger!(Echo);
