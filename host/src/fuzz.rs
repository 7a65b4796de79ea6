//! Fuzz targets: one function per reader of text a person or a strategy
//! hands the host. Each takes arbitrary bytes and panics only when the host
//! breaks a promise: a reader that panics, an error that does not say where
//! (`file:line:column`, `line N`, `hypothesis N`), or an answer accepted
//! that breaks the rules it was checked against.
//!
//! Two drivers call these: `fuzz/` (cargo-fuzz, coverage-guided, nightly;
//! `scripts/fuzz.sh`) grows the corpora in `fuzz/corpus/<target>/`, and
//! `tests/all/fuzz.rs` (stable) replays every corpus file and mutates them
//! for a bounded time in each test run. Neither is part of the `reagent`
//! binary; this module sits above `cli` and nothing imports it.

use std::path::Path;
use std::sync::Arc;

use arbitrary::Unstructured;

use crate::governance::policy::Policy;
use crate::jobs::metrics::{self, JsonlReader, Metrics};
use crate::records::insight;
use crate::strategy::data::{StaticData, StrategyData};
use crate::strategy::validate;
use crate::strategy::{
    Action, Assignment, Context, Diagnosis, Direction, FailureClass, FloatRange, Hypothesis,
    IntRange, KnobKind, KnobSpec, Objective, Phase, Value,
};

/// A fuzz target: bytes in, a panic when a promise is broken.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus folder under `fuzz/corpus/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("campaign_file", campaign_file),
    ("metrics_jsonl", metrics_jsonl),
    ("metrics_regex", metrics_regex),
    ("insights_import", insights_import),
    ("policy", policy),
    ("strategy_output", strategy_output),
    ("try_input", try_input),
];

/// Asserts that `message` begins `origin:line:column:` with the line and
/// column inside `text`, and says something after it.
fn assert_located(message: &str, origin: &str, text: &str) {
    let rest = message
        .strip_prefix(origin)
        .and_then(|r| r.strip_prefix(':'))
        .unwrap_or_else(|| panic!("error does not start with `{origin}:`: {message:?}"));
    let mut parts = rest.splitn(3, ':');
    let number = |p: Option<&str>, what: &str| -> usize {
        p.and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("error has no {what} after `{origin}:`: {message:?}"))
    };
    let line = number(parts.next(), "line");
    let column = number(parts.next(), "column");
    let lines = text.split('\n').count();
    assert!(
        (1..=lines).contains(&line),
        "line {line} is outside the text's {lines} lines: {message:?}"
    );
    assert!(
        (1..=text.len() + 1).contains(&column),
        "column {column} is outside the text: {message:?}"
    );
    let said = parts.next().unwrap_or("");
    assert!(
        !said.trim().is_empty(),
        "error says nothing after its location: {message:?}"
    );
}

/// The campaign file: TOML parsed with spans, then resolved.
pub fn campaign_file(data: &[u8]) {
    // The file is read as UTF-8 (`spec::load`); other bytes never get here.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::spec::parse("fuzz.toml", text, Path::new("/fuzz")) {
        Ok(campaign) => {
            let _ = campaign.knobs_in_code();
            assert!(campaign.cpu_reservation() >= 0.0);
            for knob in &campaign.knobs {
                validate::kind(knob, &knob.baseline)
                    .unwrap_or_else(|e| panic!("a resolved baseline fails its own kind: {e}"));
            }
        }
        Err(e) => assert_located(&e.to_string(), "fuzz.toml", text),
    }
}

/// The JSON-lines metrics reader, whole and fed in pieces: the same points
/// and the same errors, each naming its line.
pub fn metrics_jsonl(data: &[u8]) {
    let whole = metrics::parse_jsonl(data);
    let piece = data.first().map_or(1, |b| usize::from(*b % 17) + 1);
    let mut reader = JsonlReader::new();
    let mut fed = Metrics::default();
    for chunk in data.chunks(piece) {
        reader.feed(chunk).into_iter().for_each(|p| fed.push(p));
    }
    reader.finish().into_iter().for_each(|p| fed.push(p));
    fed.errors = reader.errors();
    // Debug text compares NaN with NaN, which `==` would not.
    assert_eq!(
        format!("{whole:?}"),
        format!("{fed:?}"),
        "fed in {piece}-byte pieces, the reader read something else"
    );
    for e in &whole.errors {
        assert!(
            e.starts_with("line ") || e.starts_with("… and "),
            "a metrics error without its line: {e:?}"
        );
    }
    for (name, curve) in &whole.curves {
        assert!(!curve.is_empty(), "an empty curve for `{name}`");
        assert!(whole.finals.contains_key(name), "a curve without a final");
    }
}

/// The regex metrics reader: the first line is the pattern, the rest
/// stdout and stderr split at the first NUL byte.
pub fn metrics_regex(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (pattern, rest) = text.split_once('\n').unwrap_or((&text, ""));
    // A campaign's regex is a line of its file, compiled at plan time; a
    // long one only slows the fuzzer.
    if pattern.len() > 200 {
        return;
    }
    let (stdout, stderr) = rest.split_once('\0').unwrap_or((rest, ""));
    let m = metrics::parse_regex(pattern, &[stdout, stderr]);
    for e in &m.errors {
        assert!(
            e.starts_with("metrics regex") || e.starts_with("… and "),
            "a regex metrics error that does not name the regex: {e:?}"
        );
    }
    for (name, curve) in &m.curves {
        assert!(
            curve.windows(2).all(|w| w[0].0 <= w[1].0),
            "`{name}`'s steps go backwards"
        );
    }
}

/// The insights file: each bad line named; each record read writes back
/// and reads again as itself.
pub fn insights_import(data: &[u8]) {
    match insight::parse_jsonl("fuzz.jsonl", data) {
        Ok(records) => {
            for r in &records {
                r.validate()
                    .unwrap_or_else(|e| panic!("a record read fails validation: {e}"));
            }
            let written = insight::to_jsonl(&records).expect("records read write back");
            let again = insight::parse_jsonl("again.jsonl", &written)
                .unwrap_or_else(|e| panic!("records written do not read back: {e}"));
            assert_eq!(
                serde_json::to_string(&records).ok(),
                serde_json::to_string(&again).ok(),
                "a record changed on its way out and back"
            );
        }
        Err(errors) => {
            let lines = data.split(|&b| b == b'\n').count();
            assert!(!errors.errors.is_empty(), "an error with no line named");
            for e in &errors.errors {
                assert!(
                    (1..=lines).contains(&e.line),
                    "line {} is outside the file's {lines} lines: {e}",
                    e.line
                );
                assert!(e.to_string().starts_with("fuzz.jsonl:"), "{e}");
            }
        }
    }
}

/// The approval policy (Cedar): every problem located in the file.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Policy::parse(text, "fuzz.cedar") {
        Ok(p) => assert_eq!(p.source(), text),
        Err(crate::governance::policy::PolicyError::Invalid { problems }) => {
            assert!(
                !problems.is_empty(),
                "an invalid policy with no problem named"
            );
            for problem in &problems {
                assert_located(problem, "fuzz.cedar", text);
            }
        }
        Err(e) => panic!("parsing text gave a read error: {e}"),
    }
}

/// A strategy's answer, built from the bytes with `arbitrary`: a campaign's
/// knobs, then hypotheses and a diagnosis against them. An error names the
/// hypothesis; an accepted answer keeps every rule.
pub fn strategy_output(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok((ctx, max, proposed, diagnosis)) = answer(&mut u) else {
        return;
    };
    let history = StaticData {
        out_of_space_requests: u.arbitrary().unwrap_or(false),
        ..StaticData::default()
    };
    let _ = validate::output_bytes(&crate::strategy::CallOutput::Hypotheses(proposed.clone()));
    match validate::hypotheses(&ctx, max, &proposed, &history) {
        Err(e) => assert!(
            e.starts_with("hypothesis ") || e.starts_with("returned "),
            "a validation error that does not say which hypothesis: {e:?}"
        ),
        Ok(()) => accepted_keep_the_rules(&ctx, max, &proposed, &history),
    }
    match validate::diagnosis(&ctx, &diagnosis) {
        Err(e) => assert!(
            e.starts_with("retry-with") || e.starts_with("rationale "),
            "a diagnosis error that does not say where: {e:?}"
        ),
        Ok(()) => {
            if let Action::RetryWith(changes) = &diagnosis.action {
                for a in changes {
                    let spec = ctx.knobs.iter().find(|k| k.name == a.knob);
                    let spec = spec.expect("an accepted retry names known knobs");
                    assert!(validate::value(spec, &a.value).is_ok());
                }
            }
        }
    }
}

fn accepted_keep_the_rules(ctx: &Context, max: u32, proposed: &[Hypothesis], data: &StaticData) {
    assert!(proposed.len() <= max as usize);
    let mut keys = std::collections::HashSet::new();
    for h in proposed {
        assert!(!h.title.trim().is_empty(), "an accepted empty title");
        assert!(keys.insert(validate::key(h)), "an accepted duplicate");
        assert!(h.parents.is_empty(), "an accepted parent nobody proposed");
        for a in &h.assignments {
            let spec = ctx.knobs.iter().find(|k| k.name == a.knob);
            let spec = spec.unwrap_or_else(|| panic!("an accepted unknown knob {:?}", a.knob));
            let check = if data.out_of_space_is_a_request() {
                validate::kind(spec, &a.value)
            } else {
                validate::value(spec, &a.value)
            };
            check.unwrap_or_else(|e| panic!("an accepted value breaks its knob: {e}"));
        }
    }
}

type Answer = (Context, u32, Vec<Hypothesis>, Diagnosis);

fn answer(u: &mut Unstructured) -> arbitrary::Result<Answer> {
    let knobs: Vec<KnobSpec> = (0..u.int_in_range(1..=5)?)
        .map(|i| knob(u, i))
        .collect::<arbitrary::Result<_>>()?;
    let ctx = Context {
        campaign: "fuzz".into(),
        tags: Vec::new(),
        objective: Objective {
            metric: "loss".into(),
            direction: Direction::Minimize,
        },
        knobs,
        phase: Phase::Validate,
        baseline: None,
        noise: None,
        seed: 1,
        round: 0,
        trials_done: 0,
        trials_left: 10,
    };
    let max = u.int_in_range(0..=6)?;
    let proposed = (0..u.int_in_range(0..=7)?)
        .map(|_| hypothesis(u, &ctx.knobs))
        .collect::<arbitrary::Result<_>>()?;
    let action = match u.int_in_range(0..=3)? {
        0 => Action::Retry,
        1 => Action::RetryWith(assignments(u, &ctx.knobs)?),
        2 => Action::Exclude,
        _ => Action::Escalate,
    };
    let diagnosis = Diagnosis {
        class: FailureClass::Unknown,
        action,
        rationale: text(u)?,
    };
    Ok((ctx, max, proposed, diagnosis))
}

fn knob(u: &mut Unstructured, i: usize) -> arbitrary::Result<KnobSpec> {
    let (low, high) = (number(u)?, number(u)?);
    let (kind, baseline) = match u.int_in_range(0..=4)? {
        0 => (KnobKind::Float(FloatRange { low, high }), Value::Float(low)),
        1 => (
            KnobKind::LogFloat(FloatRange { low, high }),
            Value::Float(high),
        ),
        2 => {
            let (a, b): (i64, i64) = (u.arbitrary()?, u.arbitrary()?);
            let range = IntRange {
                low: a.min(b),
                high: a.max(b),
            };
            (KnobKind::Int(range), Value::Int(a.min(b)))
        }
        3 => {
            let choices: Vec<String> = vec![text(u)?, text(u)?];
            let first = choices[0].clone();
            (KnobKind::Categorical(choices), Value::Choice(first))
        }
        _ => (KnobKind::Flag, Value::Flag(u.arbitrary()?)),
    };
    Ok(KnobSpec {
        name: format!("k{i}"),
        kind,
        baseline,
    })
}

fn hypothesis(u: &mut Unstructured, knobs: &[KnobSpec]) -> arbitrary::Result<Hypothesis> {
    Ok(Hypothesis {
        title: text(u)?,
        rationale: text(u)?,
        category: text(u)?,
        assignments: assignments(u, knobs)?,
        parents: if u.ratio(1, 8)? {
            vec![u.arbitrary()?]
        } else {
            Vec::new()
        },
    })
}

fn assignments(u: &mut Unstructured, knobs: &[KnobSpec]) -> arbitrary::Result<Vec<Assignment>> {
    (0..u.int_in_range(0..=4)?)
        .map(|_| {
            let knob = if u.ratio(1, 10)? {
                text(u)?
            } else {
                u.choose(knobs)?.name.clone()
            };
            Ok(Assignment {
                knob,
                value: value(u)?,
            })
        })
        .collect()
}

fn value(u: &mut Unstructured) -> arbitrary::Result<Value> {
    Ok(match u.int_in_range(0..=3)? {
        0 => Value::Float(number(u)?),
        1 => Value::Int(u.arbitrary()?),
        2 => Value::Choice(text(u)?),
        _ => Value::Flag(u.arbitrary()?),
    })
}

/// A float, often one of the awkward ones.
fn number(u: &mut Unstructured) -> arbitrary::Result<f64> {
    const AWKWARD: [f64; 8] = [
        0.0,
        -0.0,
        1.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE,
        f64::MAX,
    ];
    if u.ratio(1, 3)? {
        Ok(*u.choose(&AWKWARD)?)
    } else {
        u.arbitrary()
    }
}

/// A string, sometimes long, sometimes with control characters.
fn text(u: &mut Unstructured) -> arbitrary::Result<String> {
    let s: String = u.arbitrary()?;
    Ok(if u.ratio(1, 16)? { s.repeat(700) } else { s })
}

/// `strategy try --input`: an error names `file:line:column`; an input
/// read serves its history pages without panicking on any cursor.
pub fn try_input(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::cli::strategy::parse_input("fuzz.json", text) {
        Ok(input) => {
            let history: Arc<dyn StrategyData> = Arc::new(input.history);
            let n = history.trial_count();
            for cursor in [0, 1, n.saturating_sub(1), n, n.saturating_add(1), u64::MAX] {
                // The host clamps a guest's limit to at least 1 (`page_limit`).
                for limit in [1, 2, u32::MAX] {
                    let page = history.trials(cursor, limit);
                    assert!(page.items.len() as u64 <= n);
                    assert!(page.next.is_none_or(|c| c > cursor && c <= n));
                    let _ = history.hypotheses(cursor, limit);
                }
            }
        }
        Err(e) => {
            // The first line is the located one; a hint follows.
            let message = e.to_string();
            let first = message.lines().next().unwrap_or("");
            assert_located(first, "fuzz.json", text);
        }
    }
}
