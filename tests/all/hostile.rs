//! One hostile guest per attack. Each test asserts the typed outcome and
//! that what the guest used stayed within the configured limit.

use reagent::sandbox::test_guests as g;
use reagent::sandbox::{Limits, LoadError};
use reagent::strategy::record::CallError;
use reagent::strategy::{Grants, Phase};

use crate::support::{context, guest, kind, propose, sandbox};

#[test]
fn infinite_loop_runs_out_of_fuel_and_uses_exactly_its_budget() {
    let limits = Limits {
        fuel: 20_000_000,
        ..Limits::default()
    };
    let r = propose(
        &guest(g::INFINITE_LOOP),
        context("t", Phase::Validate, 1),
        4,
        &limits,
    );
    assert_eq!(r.outcome, Err(CallError::OutOfFuel { limit: 20_000_000 }));
    assert_eq!(r.usage.fuel, 20_000_000);
}

#[test]
fn infinite_loop_with_unbounded_fuel_hits_the_wall_clock_deadline() {
    let limits = Limits {
        fuel: u64::MAX / 2,
        deadline_ms: 150,
        ..Limits::default()
    };
    let r = propose(
        &guest(g::INFINITE_LOOP),
        context("t", Phase::Validate, 1),
        4,
        &limits,
    );
    assert_eq!(r.outcome, Err(CallError::Deadline { limit_ms: 150 }));
    // A sanity bound only (not a timing test): the call was interrupted
    // rather than running on.
    assert!(r.usage.wall_us < 30_000_000, "wall {} µs", r.usage.wall_us);
}

#[test]
fn memory_bomb_stops_at_the_memory_cap() {
    let limits = Limits {
        memory_bytes: 24 << 20,
        ..Limits::default()
    };
    let r = propose(
        &guest(g::MEMORY_BOMB),
        context("t", Phase::Validate, 1),
        4,
        &limits,
    );
    match &r.outcome {
        Err(CallError::MemoryLimit { limit, requested }) => {
            assert_eq!(*limit, 24 << 20);
            assert!(*requested > 24 << 20);
        }
        other => panic!("expected a memory limit, got {other:?}"),
    }
    assert!(
        r.usage.peak_memory_bytes <= 24 << 20,
        "peak {}",
        r.usage.peak_memory_bytes
    );
    assert!(r.usage.peak_memory_bytes > 8 << 20, "the bomb did allocate");
}

#[test]
fn deep_recursion_is_a_stack_overflow() {
    let r = propose(
        &guest(g::DEEP_RECURSION),
        context("t", Phase::Validate, 1),
        4,
        &Limits::default(),
    );
    assert_eq!(r.outcome, Err(CallError::StackOverflow));
}

#[test]
fn huge_output_is_rejected_by_size() {
    let r = propose(
        &guest(g::HUGE_OUTPUT),
        context("t", Phase::Validate, 1),
        4,
        &Limits::default(),
    );
    match &r.outcome {
        Err(CallError::OutputTooLarge { size, limit }) => {
            assert_eq!(*limit, Limits::default().max_output_bytes);
            assert!(*size > 16 << 20);
        }
        other => panic!("expected output-too-large, got {other:?}"),
    }
    assert_eq!(
        r.output_sha256, None,
        "an oversized output is not hashed or kept"
    );
}

#[test]
fn log_spam_is_capped_and_counted_without_failing_the_call() {
    let limits = Limits::default();
    let r = propose(
        &guest(g::LOG_SPAM),
        context("t", Phase::Validate, 1),
        4,
        &limits,
    );
    assert_eq!(kind(&r), "ok");
    assert_eq!(r.log.lines.len(), limits.max_log_lines as usize);
    assert_eq!(r.log.dropped_lines, 20_000 - limits.max_log_lines as u64);
    let kept: usize = r.log.lines.iter().map(|l| l.message.len()).sum();
    assert!(kept as u64 <= limits.max_log_bytes);
    assert_eq!(r.log.stdout.len() as u64, limits.max_stdio_bytes);
    assert_eq!(
        r.log.dropped_stdio_bytes,
        4096 * 1025 - limits.max_stdio_bytes
    );
}

#[test]
fn host_call_flood_stops_at_the_host_call_limit() {
    let limits = Limits {
        max_host_calls: 5_000,
        ..Limits::default()
    };
    let r = propose(
        &guest(g::HOSTCALL_FLOOD),
        context("flood", Phase::Validate, 1),
        4,
        &limits,
    );
    assert_eq!(r.outcome, Err(CallError::HostCallLimit { limit: 5_000 }));
    assert_eq!(r.usage.host_calls, 5_001);
    assert_eq!(
        r.host_calls.len(),
        5_000,
        "only answered calls are recorded"
    );
}

#[test]
fn an_oversized_host_call_argument_is_refused() {
    let r = propose(
        &guest(g::HOSTCALL_FLOOD),
        context("payload", Phase::Validate, 1),
        4,
        &Limits::default(),
    );
    match &r.outcome {
        Err(CallError::PayloadTooLarge {
            function,
            size,
            limit,
        }) => {
            assert_eq!(function, "log.log");
            assert_eq!(*size, 8 << 20);
            assert_eq!(*limit, 1 << 20);
        }
        other => panic!("expected payload-too-large, got {other:?}"),
    }
    assert!(r.log.lines.is_empty());
}

#[test]
fn a_panic_mid_call_is_a_trap_with_its_log_and_message_kept() {
    let r = propose(
        &guest(g::PANIC_MID_CALL),
        context("t", Phase::Validate, 1),
        4,
        &Limits::default(),
    );
    match &r.outcome {
        Err(CallError::Trap { message, backtrace }) => {
            assert!(message.contains("unreachable"), "{message}");
            assert!(
                backtrace.contains("propose"),
                "backtrace names the guest frame: {backtrace}"
            );
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(r.log.lines[0].message, "about to fail");
    assert!(
        r.log.stderr.contains("strategy bug: index 5 out of range"),
        "{}",
        r.log.stderr
    );
}

#[test]
fn the_host_survives_every_attack_and_still_serves_a_good_strategy() {
    // Run the attacks back to back on the shared engine, then a normal call.
    let limits = Limits {
        fuel: 10_000_000,
        memory_bytes: 16 << 20,
        ..Limits::default()
    };
    for attack in [
        g::INFINITE_LOOP,
        g::MEMORY_BOMB,
        g::DEEP_RECURSION,
        g::PANIC_MID_CALL,
    ] {
        let r = propose(&guest(attack), context("t", Phase::Validate, 1), 4, &limits);
        assert!(r.outcome.is_err(), "{attack} should fail");
    }
    let r = propose(
        &guest(g::ECHO_GENERATOR),
        context("t", Phase::Validate, 1),
        4,
        &Limits::default(),
    );
    assert_eq!(kind(&r), "ok", "{:?}", r.outcome);
}

fn invalid(mode: &str) -> CallError {
    let r = propose(
        &guest(g::INVALID_HYPOTHESES),
        context(mode, Phase::Validate, 1),
        4,
        &Limits::default(),
    );
    r.outcome.expect_err(mode)
}

fn reason(e: CallError) -> String {
    match e {
        CallError::InvalidOutput { reason } => reason,
        other => panic!("expected invalid output, got {other:?}"),
    }
}

#[test]
fn invalid_hypotheses_are_rejected_with_the_reason() {
    assert!(reason(invalid("unknown-knob")).contains("unknown knob `no_such_knob`"));
    assert!(reason(invalid("wrong-type")).contains("knob `lr` is a log-float but got a choice"));
    assert!(reason(invalid("out-of-range")).contains("outside [0.0001, 1]"));
    assert!(reason(invalid("nan")).contains("not a finite number"));
    assert!(reason(invalid("empty")).contains("changes no knob"));
    assert!(reason(invalid("bad-parent")).contains("parent 999999 is not a known hypothesis"));
    assert!(reason(invalid("too-many")).contains("returned 5 hypotheses; at most 4"));
}

#[test]
fn a_million_hypotheses_cannot_get_through() {
    let limits = Limits::default();
    let r = propose(
        &guest(g::INVALID_HYPOTHESES),
        context("million", Phase::Validate, 1),
        4,
        &limits,
    );
    match &r.outcome {
        Err(CallError::MemoryLimit { .. } | CallError::OutputTooLarge { .. }) => {}
        Err(CallError::InvalidOutput { reason }) => {
            assert!(reason.contains("at most 4"), "{reason}")
        }
        other => panic!("expected a limit or rejection, got {other:?}"),
    }
    assert!(r.usage.peak_memory_bytes <= limits.memory_bytes);
}

fn refused(path: &str) -> Vec<String> {
    match sandbox().load(&guest(path), &Grants::default()) {
        Err(LoadError::Refused { refusals, .. }) => {
            refusals.into_iter().map(|r| r.import).collect()
        }
        other => panic!("expected {path} to be refused, got {other:?}"),
    }
}

// `wasi:filesystem` and `wasi:sockets` are linked with nothing behind them
// (Python components import them; see capabilities/wasi.rs): a guest that
// imports them loads, and its attempt finds nothing.

#[test]
fn a_filesystem_import_loads_inert_and_reading_a_host_file_gets_nothing() {
    // The guest proposes one hypothesis titled with /etc/passwd's contents
    // (empty when the read fails): the host refuses the empty title.
    let r = propose(
        &guest(g::IMPORTS_FILESYSTEM),
        context("t", Phase::Validate, 1),
        4,
        &Limits::default(),
    );
    match &r.outcome {
        Err(CallError::InvalidOutput { reason }) => {
            assert!(reason.contains("the title is empty"), "{reason}")
        }
        other => panic!("expected the empty title to be refused, got {other:?}"),
    }
}

#[test]
fn a_sockets_import_loads_inert_and_connecting_fails() {
    let r = propose(
        &guest(g::IMPORTS_SOCKETS),
        context("t", Phase::Validate, 1),
        4,
        &Limits::default(),
    );
    let log = format!("{r:?}");
    assert!(
        log.contains("connected: false"),
        "the guest must report a failed connect: {log}"
    );
    assert!(!log.contains("connected: true"));
}

#[test]
fn an_unknown_interface_is_refused_at_load_naming_it() {
    assert_eq!(
        refused(g::IMPORTS_UNKNOWN),
        vec!["evil:exfil/send@1.0.0".to_string()]
    );
}

#[test]
fn an_ungranted_capability_loads_and_answers_nothing() {
    // Before: a component importing an ungranted `memory` or `insights` was
    // refused at load, so builtin:three-phase could not run in a campaign
    // with `insights = false`. Now it loads and nothing ungranted is
    // reached: insights answer an empty page although the data holds one,
    // `memory.get` answers nothing although the store holds a value, and
    // `memory.set` an error (on which the echo guest panics: a typed trap).
    let grants = Grants {
        memory: false,
        insights: false,
        ..Grants::default()
    };
    let strategy = sandbox()
        .load(&guest(g::ECHO_GENERATOR), &grants)
        .expect("an ungranted optional import still loads");
    let mut memory = reagent::strategy::data::MemoryStore::default();
    memory.entries.insert("calls".into(), vec![7]);
    let data = crate::recording::data(2);
    assert!(!data.insights.is_empty());
    let (r, kept) = sandbox().call(
        &strategy,
        reagent::strategy::CallInput::Propose {
            context: context("t", Phase::Validate, 1),
            max: 4,
        },
        std::sync::Arc::new(data),
        memory.clone(),
        &Limits::default(),
    );
    let answer = |f: &str| {
        r.host_calls
            .iter()
            .find(|c| c.function == f)
            .unwrap_or_else(|| panic!("no {f} in {:?}", r.host_calls))
            .response
            .clone()
    };
    assert_eq!(answer("insights.find")["items"], serde_json::json!([]));
    assert_eq!(answer("memory.get"), serde_json::Value::Null);
    let set = answer("memory.set").to_string();
    assert!(set.contains("did not grant `memory`"), "{set}");
    assert!(r.outcome.is_err(), "the guest's expect() trapped");
    assert_eq!(kept, memory, "nothing was written");
}

#[test]
fn too_few_instances_is_a_typed_instance_limit() {
    let limits = Limits {
        max_instances: 1,
        ..Limits::default()
    };
    let r = propose(
        &guest(g::ECHO_GENERATOR),
        context("t", Phase::Validate, 1),
        4,
        &limits,
    );
    assert_eq!(kind(&r), "instance-limit", "{:?}", r.outcome);
}
