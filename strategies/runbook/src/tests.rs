use reagent_sdk::testing::{MockHost, install, take};
use reagent_sdk::{
    Action, Assignment, Context, Debugger, Diagnosis, Direction, FailureClass, FailureReport,
    FloatRange, IntRange, KnobKind, KnobSpec, Level, Objective, Phase, Value,
};

use crate::Runbook;

fn knob(name: &str, kind: KnobKind, baseline: Value) -> KnobSpec {
    KnobSpec {
        name: name.into(),
        kind,
        baseline,
    }
}

fn context(knobs: Vec<KnobSpec>) -> Context {
    Context {
        campaign: "test".into(),
        tags: vec![],
        objective: Objective {
            metric: "val_acc".into(),
            direction: Direction::Maximize,
        },
        knobs,
        phase: Phase::Validate,
        baseline: None,
        noise: None,
        seed: 1,
        round: 0,
        trials_done: 0,
        trials_left: 10,
    }
}

/// A typical training script's knobs.
fn knobs() -> Vec<KnobSpec> {
    vec![
        knob(
            "lr",
            KnobKind::LogFloat(FloatRange {
                low: 1e-5,
                high: 1.0,
            }),
            Value::Float(0.03),
        ),
        knob(
            "batch_size",
            KnobKind::Int(IntRange { low: 8, high: 512 }),
            Value::Int(128),
        ),
        knob(
            "hidden_dim",
            KnobKind::Int(IntRange {
                low: 32,
                high: 4096,
            }),
            Value::Int(1024),
        ),
        knob(
            "embed_dim",
            KnobKind::Int(IntRange {
                low: 16,
                high: 1024,
            }),
            Value::Int(256),
        ),
        knob(
            "epochs",
            KnobKind::Int(IntRange { low: 1, high: 100 }),
            Value::Int(20),
        ),
        knob(
            "warmup_steps",
            KnobKind::Int(IntRange { low: 0, high: 5000 }),
            Value::Int(1000),
        ),
        knob("batch_norm", KnobKind::Flag, Value::Flag(true)),
    ]
}

fn report(exit_code: Option<i32>, signal: Option<i32>, log: &str) -> FailureReport {
    FailureReport {
        trial: 17,
        hypothesis: 4,
        assignments: vec![],
        exit_code,
        signal,
        timed_out: false,
        stopped_early: false,
        log_tail: log.into(),
        attempt: 1,
        max_attempts: 3,
        last_metrics: vec![],
    }
}

fn diagnose(ctx: &Context, failure: &FailureReport) -> Diagnosis {
    install(MockHost::default());
    let diagnosis = Runbook::diagnose(ctx, failure);
    let host = take();
    let infos: Vec<&String> = host
        .logs
        .iter()
        .filter(|(l, _)| *l == Level::Info)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(infos.len(), 1, "one info line per call: {:?}", host.logs);
    assert!(infos[0].starts_with("trial 17"), "{}", infos[0]);
    assert!(!diagnosis.rationale.is_empty());
    diagnosis
}

fn set(name: &str, value: Value) -> Assignment {
    Assignment {
        knob: name.into(),
        value,
    }
}

fn retry_value(d: &Diagnosis, name: &str) -> Value {
    match &d.action {
        Action::RetryWith(list) => list
            .iter()
            .find(|a| a.knob == name)
            .unwrap_or_else(|| panic!("{name} not in {list:?}"))
            .value
            .clone(),
        other => panic!("expected retry-with, got {other:?}: {}", d.rationale),
    }
}

const CUDA_OOM: &str = "\
epoch 1 step 200 loss 2.31
Traceback (most recent call last):
  File \"train.py\", line 88, in <module>
    loss.backward()
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity; 13.2 GiB already allocated)";

#[test]
fn cuda_oom_halves_the_batch_and_keeps_it_an_int() {
    let ctx = context(knobs());
    let d = diagnose(&ctx, &report(Some(1), None, CUDA_OOM));
    assert_eq!(d.class, FailureClass::OutOfMemory);
    assert_eq!(retry_value(&d, "batch_size"), Value::Int(64));
    assert!(
        d.rationale
            .contains("CUDA out of memory. Tried to allocate"),
        "{}",
        d.rationale
    );
    assert!(
        d.rationale.contains("batch_size 128 → 64"),
        "{}",
        d.rationale
    );
}

#[test]
fn oom_uses_the_failed_trials_value_and_keeps_its_other_changes() {
    let ctx = context(knobs());
    let mut failure = report(Some(1), None, CUDA_OOM);
    failure.assignments = vec![
        set("batch_size", Value::Int(33)),
        set("lr", Value::Float(0.1)),
    ];
    let d = diagnose(&ctx, &failure);
    assert_eq!(retry_value(&d, "batch_size"), Value::Int(16));
    assert_eq!(retry_value(&d, "lr"), Value::Float(0.1));
}

#[test]
fn python_memory_error_in_a_traceback_is_oom_not_a_program_error() {
    let ctx = context(knobs());
    let log = "Traceback (most recent call last):\n  File \"prep.py\", line 3, in <module>\n    x = np.zeros((10**6, 10**6))\nMemoryError: Unable to allocate 7.28 TiB";
    let d = diagnose(&ctx, &report(Some(1), None, log));
    assert_eq!(d.class, FailureClass::OutOfMemory);
    assert!(
        d.rationale.contains("MemoryError: Unable to allocate"),
        "{}",
        d.rationale
    );
}

#[test]
fn oom_at_the_smallest_batch_shrinks_the_largest_size_knob_instead() {
    let ctx = context(knobs());
    let mut failure = report(None, None, "RuntimeError: CUDA error: out of memory");
    failure.assignments = vec![set("batch_size", Value::Int(8))];
    let d = diagnose(&ctx, &failure);
    assert_eq!(retry_value(&d, "hidden_dim"), Value::Int(512));
    assert_eq!(retry_value(&d, "batch_size"), Value::Int(8));

    // Nothing left to shrink: exclude.
    let tiny = vec![
        knob(
            "batch",
            KnobKind::Int(IntRange { low: 4, high: 64 }),
            Value::Int(4),
        ),
        knob(
            "width",
            KnobKind::Int(IntRange { low: 16, high: 64 }),
            Value::Int(16),
        ),
    ];
    let d = diagnose(&context(tiny), &report(None, None, "std::bad_alloc"));
    assert_eq!(d.class, FailureClass::OutOfMemory);
    assert_eq!(d.action, Action::Exclude);

    // No knob of the kind at all: exclude too.
    let d = diagnose(&context(vec![]), &report(None, None, "oom"));
    assert_eq!(d.action, Action::Exclude);
}

#[test]
fn oom_halving_clamps_to_the_range_and_handles_float_and_choice_knobs() {
    let ctx = context(vec![knob(
        "batch_size",
        KnobKind::Int(IntRange { low: 48, high: 512 }),
        Value::Int(64),
    )]);
    let d = diagnose(
        &ctx,
        &report(
            Some(137),
            None,
            "Killed process 4242 (python) total-vm: 9GB",
        ),
    );
    assert_eq!(retry_value(&d, "batch_size"), Value::Int(48));

    let ctx = context(vec![knob(
        "batch_size",
        KnobKind::Categorical(vec!["16".into(), "32".into(), "64".into()]),
        Value::Choice("64".into()),
    )]);
    let d = diagnose(
        &ctx,
        &report(
            None,
            None,
            "ResourceExhaustedError: OOM when allocating tensor",
        ),
    );
    assert_eq!(retry_value(&d, "batch_size"), Value::Choice("32".into()));

    let ctx = context(vec![knob(
        "hidden_units",
        KnobKind::Float(FloatRange {
            low: 10.0,
            high: 100.0,
        }),
        Value::Float(15.0),
    )]);
    let d = diagnose(&ctx, &report(None, None, "cannot allocate memory"));
    assert_eq!(retry_value(&d, "hidden_units"), Value::Float(10.0));
}

#[test]
fn sigkill_with_a_memory_hint_is_oom_and_without_one_is_killed() {
    let ctx = context(knobs());
    let d = diagnose(
        &ctx,
        &report(None, Some(9), "worker rss 31.9GB exceeds memory limit"),
    );
    assert_eq!(d.class, FailureClass::OutOfMemory);
    assert!(matches!(d.action, Action::RetryWith(_)));

    let d = diagnose(
        &ctx,
        &report(None, Some(9), "epoch 3 step 100 loss 0.71\nKilled"),
    );
    assert_eq!(d.class, FailureClass::Killed);
    assert_eq!(d.action, Action::Retry);
    assert!(d.rationale.contains("signal 9, SIGKILL"), "{}", d.rationale);

    let mut again = report(Some(143), None, "");
    again.attempt = 2;
    let d = diagnose(&ctx, &again);
    assert_eq!(d.class, FailureClass::Killed);
    assert_eq!(d.action, Action::Escalate);
}

#[test]
fn nan_loss_divides_the_learning_rate_by_three() {
    let ctx = context(knobs());
    let log = "step 1200 loss 3.2e4\nstep 1210 loss nan\nValueError: loss is NaN";
    let d = diagnose(&ctx, &report(Some(1), None, log));
    assert_eq!(d.class, FailureClass::Divergence);
    assert_eq!(retry_value(&d, "lr"), Value::Float(0.01));
    assert!(d.rationale.contains("loss is NaN"), "{}", d.rationale);
    assert!(d.rationale.contains("lr 0.03 → 0.01"), "{}", d.rationale);
}

#[test]
fn divergence_from_flags_and_metrics_and_its_bounds() {
    let ctx = context(knobs());
    let mut stopped = report(None, Some(15), "");
    stopped.stopped_early = true;
    let d = diagnose(&ctx, &stopped);
    assert_eq!(d.class, FailureClass::Divergence);

    let mut inf = report(Some(0), None, "done");
    inf.last_metrics = vec![("loss".into(), f64::INFINITY)];
    let d = diagnose(&ctx, &inf);
    assert_eq!(d.class, FailureClass::Divergence);
    assert!(d.rationale.contains("loss = inf"), "{}", d.rationale);

    // The learning rate is at its lower bound: nothing to lower.
    let mut low = report(Some(1), None, "Loss exploded at step 5");
    low.assignments = vec![set("lr", Value::Float(1e-5))];
    let d = diagnose(&ctx, &low);
    assert_eq!(d.class, FailureClass::Divergence);
    assert_eq!(d.action, Action::Exclude);

    // Just above it: clamped to the bound.
    low.assignments = vec![set("learning_rate", Value::Float(2e-5))];
    let ctx2 = context(vec![knob(
        "learning_rate",
        KnobKind::LogFloat(FloatRange {
            low: 1e-5,
            high: 1.0,
        }),
        Value::Float(1e-3),
    )]);
    let d = diagnose(&ctx2, &low);
    assert_eq!(retry_value(&d, "learning_rate"), Value::Float(1e-5));

    // No learning-rate knob: exclude.
    let d = diagnose(&context(vec![]), &report(Some(1), None, "loss: nan"));
    assert_eq!(d.action, Action::Exclude);
}

#[test]
fn time_limit_halves_epochs_not_warmup() {
    let ctx = context(knobs());
    let mut failure = report(None, Some(9), "");
    failure.timed_out = true;
    failure.assignments = vec![set("epochs", Value::Int(30))];
    let d = diagnose(&ctx, &failure);
    assert_eq!(d.class, FailureClass::TimeLimit);
    assert_eq!(retry_value(&d, "epochs"), Value::Int(15));

    let log =
        "slurmstepd: error: *** JOB 123 CANCELLED AT 2024-01-01T00:00:00 DUE TO TIME LIMIT ***";
    let d = diagnose(&ctx, &report(None, Some(15), log));
    assert_eq!(d.class, FailureClass::TimeLimit);

    let no_epochs = vec![knob(
        "warmup_steps",
        KnobKind::Int(IntRange { low: 0, high: 10 }),
        Value::Int(4),
    )];
    let d = diagnose(&context(no_epochs), &failure);
    assert_eq!(d.action, Action::Exclude);
}

#[test]
fn nccl_timeout_is_infrastructure_and_retried() {
    let ctx = context(knobs());
    let log = "[E ProcessGroupNCCL.cpp:475] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1, OpType=ALLREDUCE) ran for 1800000 milliseconds before timing out.\nRuntimeError: NCCL communicator was aborted";
    let d = diagnose(&ctx, &report(Some(1), None, log));
    assert_eq!(d.class, FailureClass::Infrastructure);
    assert_eq!(d.action, Action::Retry);
    assert!(
        d.rationale.contains("NCCL communicator was aborted"),
        "{}",
        d.rationale
    );

    for line in [
        "OSError: [Errno 28] No space left on device",
        "ConnectionResetError: [Errno 104] Connection reset by peer",
        "slurmstepd: error: *** JOB 9 ON node12 CANCELLED DUE TO PREEMPTION ***",
        "torch.distributed.DistNetworkError: rendezvous failed",
    ] {
        let d = diagnose(&ctx, &report(Some(1), None, line));
        assert_eq!(d.class, FailureClass::Infrastructure, "{line}");
    }
}

#[test]
fn traceback_is_a_program_error_and_excluded() {
    let ctx = context(knobs());
    let log = "Traceback (most recent call last):\n  File \"train.py\", line 12, in <module>\n    model = build(cfg)\nKeyError: 'num_heads'";
    let d = diagnose(&ctx, &report(Some(1), None, log));
    assert_eq!(d.class, FailureClass::ProgramError);
    assert_eq!(d.action, Action::Exclude);
    assert!(
        d.rationale.contains("KeyError: 'num_heads'"),
        "{}",
        d.rationale
    );

    let d = diagnose(
        &ctx,
        &report(Some(101), None, "thread 'main' panicked at src/main.rs:3:5"),
    );
    assert_eq!(d.class, FailureClass::ProgramError);
    let d = diagnose(&ctx, &report(None, Some(11), ""));
    assert_eq!(d.class, FailureClass::ProgramError);
    let d = diagnose(&ctx, &report(Some(2), None, "usage: train.py [-h]"));
    assert_eq!(d.class, FailureClass::ProgramError);
}

#[test]
fn clean_exit_without_the_metric_is_escalated() {
    let ctx = context(knobs());
    let mut failure = report(Some(0), None, "training finished");
    failure.last_metrics = vec![("loss".into(), 0.12)];
    let d = diagnose(&ctx, &failure);
    assert_eq!(d.class, FailureClass::MissingMetrics);
    assert_eq!(d.action, Action::Escalate);
    assert!(
        d.rationale.contains("val_acc") && d.rationale.contains("only loss"),
        "{}",
        d.rationale
    );
}

#[test]
fn unknown_failures_retry_until_attempts_run_out() {
    let ctx = context(knobs());
    let d = diagnose(&ctx, &report(Some(3), None, "something odd happened"));
    assert_eq!(d.class, FailureClass::Unknown);
    assert_eq!(d.action, Action::Retry);

    let mut last = report(Some(3), None, "");
    last.attempt = 3;
    let d = diagnose(&ctx, &last);
    assert_eq!(d.action, Action::Escalate);
}

#[test]
fn at_max_attempts_nothing_is_retried() {
    let ctx = context(knobs());
    let cases: Vec<(FailureReport, FailureClass, Action)> = vec![
        (
            report(Some(1), None, CUDA_OOM),
            FailureClass::OutOfMemory,
            Action::Exclude,
        ),
        (
            report(Some(1), None, "loss=nan"),
            FailureClass::Divergence,
            Action::Exclude,
        ),
        (
            FailureReport {
                timed_out: true,
                ..report(None, Some(9), "")
            },
            FailureClass::TimeLimit,
            Action::Exclude,
        ),
        (
            report(Some(1), None, "NCCL error: unhandled system error"),
            FailureClass::Infrastructure,
            Action::Escalate,
        ),
        (
            report(None, Some(9), ""),
            FailureClass::Killed,
            Action::Escalate,
        ),
        (
            report(Some(1), None, "error: bad config"),
            FailureClass::ProgramError,
            Action::Exclude,
        ),
        (
            report(Some(0), None, ""),
            FailureClass::MissingMetrics,
            Action::Escalate,
        ),
        (
            report(Some(5), None, ""),
            FailureClass::Unknown,
            Action::Escalate,
        ),
    ];
    for (mut failure, class, action) in cases {
        failure.attempt = 3;
        failure.max_attempts = 3;
        let d = diagnose(&ctx, &failure);
        assert_eq!((d.class, &d.action), (class, &action), "{}", d.rationale);
        assert!(d.rationale.contains("attempt 3 of 3"), "{}", d.rationale);
    }
}

#[test]
fn precedence_time_limit_then_oom_then_divergence_then_infra() {
    let ctx = context(knobs());
    let everything = "NCCL error\nloss is nan\nCUDA out of memory";
    let mut failure = report(Some(1), None, everything);
    failure.timed_out = true;
    assert_eq!(diagnose(&ctx, &failure).class, FailureClass::TimeLimit);
    failure.timed_out = false;
    assert_eq!(diagnose(&ctx, &failure).class, FailureClass::OutOfMemory);
    failure.log_tail = "NCCL error\nloss is nan\nTraceback (most recent call last):".into();
    assert_eq!(diagnose(&ctx, &failure).class, FailureClass::Divergence);
    failure.log_tail = "Traceback (most recent call last):\nConnectionRefusedError: [Errno 111] Connection refused".into();
    assert_eq!(diagnose(&ctx, &failure).class, FailureClass::Infrastructure);
    failure.log_tail = "RuntimeError: shape mismatch".into();
    failure.signal = Some(9);
    assert_eq!(diagnose(&ctx, &failure).class, FailureClass::Killed);
}

#[test]
fn evidence_is_trimmed_to_about_200_characters() {
    let ctx = context(knobs());
    let log = format!(
        "    RuntimeError: CUDA out of memory. {}    ",
        "x".repeat(400)
    );
    let d = diagnose(&ctx, &report(Some(1), None, &log));
    let quoted = d.rationale.split('"').nth(1).unwrap();
    assert!(quoted.starts_with("RuntimeError"));
    assert!(quoted.chars().count() <= 200, "{}", quoted.chars().count());
}

#[test]
fn a_fix_the_trainers_message_names_is_retried_when_inside_the_space() {
    let mut knobs = knobs();
    knobs.push(knob(
        "layers",
        KnobKind::Int(IntRange { low: 0, high: 8 }),
        Value::Int(0),
    ));
    knobs.push(knob(
        "dropout",
        KnobKind::Float(FloatRange {
            low: 0.0,
            high: 0.5,
        }),
        Value::Float(0.0),
    ));
    let ctx = context(knobs);
    let mut failure = report(
        Some(1),
        None,
        "Traceback (most recent call last):\n  File \"train.py\", line 12\nValueError: dropout has no effect unless layers >= 1; set layers >= 1",
    );
    failure.assignments = vec![Assignment {
        knob: "dropout".into(),
        value: Value::Float(0.3),
    }];
    let d = diagnose(&ctx, &failure);
    assert_eq!(d.class, FailureClass::ProgramError);
    // The later mention names the fix (layers, not dropout); the retry
    // keeps the rest of the configuration.
    assert_eq!(retry_value(&d, "layers"), Value::Int(1));
    assert_eq!(retry_value(&d, "dropout"), Value::Float(0.3));
    assert!(d.rationale.contains("layers 0 → 1"), "{}", d.rationale);
    assert!(d.rationale.contains("set layers >= 1"), "{}", d.rationale);

    // Other phrasings.
    for (log, knob, value) in [
        (
            "error: batch_size must be at most 256",
            "batch_size",
            Value::Int(256),
        ),
        (
            "AssertionError: epochs should be > 40",
            "epochs",
            Value::Int(41),
        ),
        (
            "error: requires batch_norm = false",
            "batch_norm",
            Value::Flag(false),
        ),
        ("ValueError: set `lr` to 0.001", "lr", Value::Float(0.001)),
    ] {
        let d = diagnose(&ctx, &report(Some(1), None, log));
        assert_eq!(retry_value(&d, knob), value, "{log}: {}", d.rationale);
    }

    // Outside the space, an unknown knob, no advice, or no retries left:
    // excluded as before.
    for log in [
        "error: batch_size must be at least 1024",
        "error: set num_leaves <= 64",
        "error: batch_size=64 failed to parse the file",
    ] {
        let d = diagnose(&ctx, &report(Some(1), None, log));
        assert_eq!(d.action, Action::Exclude, "{log}: {}", d.rationale);
    }
    let mut last = report(Some(1), None, "error: set epochs >= 40");
    last.attempt = 3;
    assert_eq!(diagnose(&ctx, &last).action, Action::Exclude);
}

#[test]
fn a_second_retry_takes_a_bigger_step() {
    let ctx = context(knobs());
    let log = "step 10 loss nan\nValueError: loss is NaN";
    let mut again = report(Some(1), None, log);
    again.attempt = 2;
    again.assignments = vec![Assignment {
        knob: "lr".into(),
        value: Value::Float(0.09),
    }];
    let d = diagnose(&ctx, &again);
    assert_eq!(retry_value(&d, "lr"), Value::Float(0.01));
    assert!(d.rationale.contains("divided by 9"), "{}", d.rationale);

    let mut oom = report(Some(1), None, CUDA_OOM);
    oom.attempt = 2;
    let d = diagnose(&ctx, &oom);
    assert_eq!(retry_value(&d, "batch_size"), Value::Int(32));
}
