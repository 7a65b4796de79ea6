//! Classifying a failed trial from its exit status, flags, metrics and log.
//!
//! Log patterns are matched case-insensitively against one line at a time;
//! the evidence quoted is the last matching line, which is usually the one
//! closest to the failure (the exception line after a traceback). When
//! several causes match, the strongest wins, in this order: the host's time
//! limit, out of memory, divergence, infrastructure, a time limit seen in
//! the log, a kill signal, missing metrics (exit 0), program error, unknown.

use reagent_sdk::{FailureClass, FailureReport};

/// A substring to look for in a lowercased log line.
struct Pattern {
    needle: &'static str,
    /// Only match as a whole word (not inside `nanoseconds` or `room`).
    word: bool,
    /// Lines containing any of these do not count as a match.
    unless: &'static [&'static str],
}

const fn text(needle: &'static str) -> Pattern {
    Pattern {
        needle,
        word: false,
        unless: &[],
    }
}

const fn word(needle: &'static str) -> Pattern {
    Pattern {
        needle,
        word: true,
        unless: &[],
    }
}

const OUT_OF_MEMORY: &[Pattern] = &[
    text("out of memory"),
    text("outofmemory"),
    word("oom"),
    text("oom_kill"),
    text("oomkilled"),
    text("cannot allocate memory"),
    text("memoryerror"),
    text("std::bad_alloc"),
    text("killed process"),
    text("resource exhausted"),
    text("resourceexhausted"),
];

/// Weaker signs of memory trouble: enough together with a SIGKILL.
const MEMORY_HINTS: &[Pattern] = &[text("memory"), word("oom"), word("rss"), text("alloc")];

/// Source lines quoted in tracebacks that merely mention infinity.
const INF_IN_CODE: &[&str] = &[
    "float('inf')",
    "float(\"inf\")",
    "math.inf",
    "np.inf",
    "torch.inf",
];

const DIVERGENCE: &[Pattern] = &[
    word("nan"),
    Pattern {
        needle: "inf",
        word: true,
        unless: INF_IN_CODE,
    },
    text("loss exploded"),
    Pattern {
        needle: "diverg",
        word: false,
        unless: &["kl_diverg", "kl diverg", "kl-diverg", "kldiv"],
    },
    Pattern {
        needle: "overflow",
        word: false,
        unless: &["stack overflow", "overflowed its stack", "with overflow"],
    },
    text("non-finite"),
    text("not finite"),
];

const INFRASTRUCTURE: &[Pattern] = &[
    text("nccl"),
    text("connection reset"),
    text("connection refused"),
    text("connection timed out"),
    text("econnreset"),
    text("econnrefused"),
    text("network is unreachable"),
    text("no space left"),
    text("stale file handle"),
    text("input/output error"),
    text("i/o error"),
    text("broken pipe"),
    text("node fail"),
    text("preempt"),
    text("temporarily unavailable"),
    text("transient"),
    text("infra"),
    text("rendezvous"),
    text("ecc error"),
    text("fallen off the bus"),
];

const TIME_LIMIT: &[Pattern] = &[text("time limit"), text("timeout"), text("timed out")];

const PROGRAM_ERROR: &[Pattern] = &[
    text("traceback (most recent call last)"),
    text("error:"),
    text("panicked at"),
    text("segmentation fault"),
    text("core dumped"),
    text("terminate called"),
    // A command or file that is not there (a typo in the script's name).
    text("no such file or directory"),
    text("can't open file"),
    text("cannot open"),
    text("command not found"),
    text("permission denied"),
];

/// What the failure was and the evidence for it, quotable in a rationale.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub class: FailureClass,
    pub evidence: String,
}

impl Finding {
    fn new(class: FailureClass, evidence: impl Into<String>) -> Finding {
        Finding {
            class,
            evidence: evidence.into(),
        }
    }
}

/// Evidence longer than this is cut (in characters).
const EVIDENCE_CHARS: usize = 200;

pub fn classify(failure: &FailureReport, metric: &str) -> Finding {
    let log = failure.log_tail.as_str();
    let sigkill = failure.signal == Some(9) || failure.exit_code == Some(137);

    if failure.timed_out {
        return Finding::new(
            FailureClass::TimeLimit,
            "the host stopped the job at its time limit",
        );
    }
    if let Some(line) = last_match(log, OUT_OF_MEMORY) {
        return Finding::new(FailureClass::OutOfMemory, format!("log: {}", quote(line)));
    }
    if sigkill && let Some(line) = last_match(log, MEMORY_HINTS) {
        return Finding::new(
            FailureClass::OutOfMemory,
            format!(
                "{} with a memory hint in the log: {}",
                exit_status(failure),
                quote(line)
            ),
        );
    }
    if failure.stopped_early {
        let mut evidence =
            "the host stopped the job early on non-finite or exploding metrics".to_string();
        if let Some(line) = last_match(log, DIVERGENCE) {
            evidence.push_str(&format!("; log: {}", quote(line)));
        }
        return Finding::new(FailureClass::Divergence, evidence);
    }
    if let Some((name, value)) = failure.last_metrics.iter().find(|(_, v)| !v.is_finite()) {
        return Finding::new(
            FailureClass::Divergence,
            format!("last reported {name} = {value}"),
        );
    }
    if let Some(line) = last_match(log, DIVERGENCE) {
        return Finding::new(FailureClass::Divergence, format!("log: {}", quote(line)));
    }
    if let Some(line) = last_match(log, INFRASTRUCTURE) {
        return Finding::new(
            FailureClass::Infrastructure,
            format!("log: {}", quote(line)),
        );
    }
    if let Some(line) = last_match(log, TIME_LIMIT) {
        return Finding::new(FailureClass::TimeLimit, format!("log: {}", quote(line)));
    }
    if matches!(failure.signal, Some(9 | 15)) || matches!(failure.exit_code, Some(137 | 143)) {
        return Finding::new(
            FailureClass::Killed,
            format!(
                "{} with no sign of running out of memory",
                exit_status(failure)
            ),
        );
    }
    if failure.exit_code == Some(0) {
        let reported = if failure.last_metrics.is_empty() {
            "no metrics at all".to_string()
        } else {
            let names: Vec<&str> = failure
                .last_metrics
                .iter()
                .map(|(n, _)| n.as_str())
                .collect();
            format!("only {}", names.join(", "))
        };
        return Finding::new(
            FailureClass::MissingMetrics,
            format!("the job exited with code 0 but never reported {metric} ({reported})"),
        );
    }
    if let Some(line) = last_match(log, PROGRAM_ERROR) {
        return Finding::new(FailureClass::ProgramError, format!("log: {}", quote(line)));
    }
    if matches!(failure.signal, Some(6 | 11)) || matches!(failure.exit_code, Some(134 | 139)) {
        return Finding::new(
            FailureClass::ProgramError,
            format!("{} (a crash)", exit_status(failure)),
        );
    }
    if matches!(failure.exit_code, Some(1 | 2)) {
        return Finding::new(
            FailureClass::ProgramError,
            match last_stderr_line(log) {
                Some(line) => format!("{}; stderr ends with {}", exit_status(failure), quote(line)),
                None => format!("{} and nothing else to explain it", exit_status(failure)),
            },
        );
    }
    Finding::new(
        FailureClass::Unknown,
        match last_stderr_line(log) {
            Some(line) => format!(
                "{} and no recognisable pattern in the log; stderr ends with {}",
                exit_status(failure),
                quote(line)
            ),
            None => format!(
                "{} and no recognisable pattern in the log",
                exit_status(failure)
            ),
        },
    )
}

/// The last non-empty line of the log's `stderr:` section (the host's
/// `reagent:` notes and the supervisor's excepted): what a person would
/// read first.
fn last_stderr_line(log: &str) -> Option<&str> {
    let (_, stderr) = log.split_once("stderr:\n")?;
    stderr.lines().map(str::trim).rfind(|l| {
        !l.is_empty() && !l.starts_with("[reagent supervisor]") && !l.starts_with("reagent:")
    })
}

/// How the process ended, in words.
fn exit_status(failure: &FailureReport) -> String {
    match (failure.signal, failure.exit_code) {
        (Some(s), _) => format!("killed by signal {s}{}", signal_name(s)),
        (None, Some(c)) if c > 128 && c < 160 => {
            format!("exit code {c} (signal {}{})", c - 128, signal_name(c - 128))
        }
        (None, Some(c)) => format!("exit code {c}"),
        (None, None) => "no exit status".to_string(),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        6 => ", SIGABRT",
        9 => ", SIGKILL",
        11 => ", SIGSEGV",
        15 => ", SIGTERM",
        _ => "",
    }
}

/// The last line of `log` matching any of `patterns`, trimmed.
fn last_match<'a>(log: &'a str, patterns: &[Pattern]) -> Option<&'a str> {
    log.lines().rev().map(str::trim).find(|line| {
        let lower = line.to_ascii_lowercase();
        patterns.iter().any(|p| matches(&lower, p))
    })
}

fn matches(line: &str, pattern: &Pattern) -> bool {
    if pattern.unless.iter().any(|u| line.contains(u)) {
        return false;
    }
    if !pattern.word {
        return line.contains(pattern.needle);
    }
    let bytes = line.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    line.match_indices(pattern.needle).any(|(at, found)| {
        let end = at + found.len();
        (at == 0 || !is_word(bytes[at - 1])) && (end == bytes.len() || !is_word(bytes[end]))
    })
}

/// A log line in quotes, cut to [`EVIDENCE_CHARS`] characters.
pub fn quote(line: &str) -> String {
    if line.chars().count() <= EVIDENCE_CHARS {
        format!("\"{line}\"")
    } else {
        let cut: String = line.chars().take(EVIDENCE_CHARS - 1).collect();
        format!("\"{}…\"", cut.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(needle: &'static str, word: bool) -> Pattern {
        Pattern {
            needle,
            word,
            unless: &[],
        }
    }

    #[test]
    fn word_patterns_need_word_boundaries() {
        assert!(matches("loss = nan at step 10", &p("nan", true)));
        assert!(matches("loss=nan", &p("nan", true)));
        assert!(!matches("took 12 nanoseconds", &p("nan", true)));
        assert!(!matches("zoom room", &p("oom", true)));
        assert!(matches("kernel: oom-kill: process 12", &p("oom", true)));
        assert!(matches("grad norm: -inf", &p("inf", true)));
        assert!(!matches("info: loading infra config", &p("inf", true)));
    }

    #[test]
    fn a_missing_script_is_a_program_error_quoting_stderr() {
        let log = "stdout:\nstarting\nstderr:\nsh: 0: cannot open trian.sh: No such file\n";
        assert_eq!(
            last_match(log, PROGRAM_ERROR),
            Some("sh: 0: cannot open trian.sh: No such file")
        );
        assert_eq!(
            last_stderr_line("stdout:\nx\nstderr:\nsomething odd\n[reagent supervisor] exit 2\n"),
            Some("something odd")
        );
        assert_eq!(last_stderr_line("stdout:\nonly stdout\n"), None);
    }

    #[test]
    fn quotes_are_trimmed_and_capped() {
        let long = "x".repeat(500);
        let q = quote(&long);
        assert_eq!(q.chars().count(), EVIDENCE_CHARS + 2);
        assert!(q.ends_with("…\""));
        assert_eq!(
            last_match("a\n   error: boom   \nb", PROGRAM_ERROR),
            Some("error: boom")
        );
    }

    #[test]
    fn kl_divergence_and_stack_overflow_are_not_divergence() {
        assert_eq!(last_match("step 3 kl_divergence=0.12", DIVERGENCE), None);
        assert_eq!(
            last_match("thread 'main' has overflowed its stack", DIVERGENCE),
            None
        );
        assert_eq!(last_match("    best = float('inf')", DIVERGENCE), None);
        assert!(last_match("warning: loss diverged", DIVERGENCE).is_some());
    }
}
