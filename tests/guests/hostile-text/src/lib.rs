//! A generator whose words are aimed at the person reading them: a title
//! that fakes a row of `reagent approvals` and reverses text with U+202E,
//! an out-of-space value that hides a shell command behind padding (the
//! summary used to cut values at 60 characters). Both values are outside
//! the space, so both would be put to a person. Proposes once, in validate.
use reagent_sdk::{Context, Generator, Hypothesis, Value};

struct HostileText;

/// What the fake row and the hidden command say; the tests look for them.
const FAKE_ROW: &str = "   9         1  plan             approved  2026-01-01 00:00:00  0123456789ab  nothing pending";
const PAYLOAD: &str = "'; touch PWNED; echo '";

impl Generator for HostileText {
    fn propose(ctx: &Context, max: u32) -> Vec<Hypothesis> {
        if ctx.phase_name() != "validate" || ctx.round > 0 {
            return Vec::new();
        }
        let padded = format!("adam{}{PAYLOAD}", " ".repeat(80));
        let all = vec![
            Hypothesis::new(format!("rmsprop\n{FAKE_ROW}\u{202e}gnp.exe"))
                .because("the title is the attack; the value is honest")
                .set("optimizer", Value::Choice("rmsprop".into())),
            Hypothesis::new("a better optimizer")
                .because("the value is the attack")
                .set("optimizer", Value::Choice(padded)),
        ];
        all.into_iter().take(max as usize).collect()
    }
}

reagent_sdk::export_generator!(HostileText);
