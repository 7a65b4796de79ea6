//! What the harness-free benches share: the no-op job, a no-op campaign,
//! and the CPU of finished children.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const REAGENT: &str = env!("CARGO_BIN_EXE_reagent");

/// A no-op job: reports its knob as the loss and exits.
pub const NOOP: &str = r#"echo "{\"loss\": $REAGENT_KNOB_X}" > "$REAGENT_METRICS""#;

/// CPU seconds (user + system) of every child waited for so far.
pub fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the zeroed struct; no other precondition.
    #[allow(unsafe_code)]
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u
    };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(u.ru_utime) + s(u.ru_stime)
}

/// Writes `campaign.toml` (knobs x and y, the built-in strategies) running
/// `command` under `sh -c`, and initialises a workspace in `dir`.
pub fn noop_campaign(
    dir: &Path,
    trials: u64,
    parallel: u32,
    command: &str,
    time_limit: &str,
) -> PathBuf {
    // Braces in a command template are placeholders; `{{`/`}}` are literal.
    let command = command.replace('{', "{{").replace('}', "}}");
    let toml = format!(
        r#"[campaign]
name = "bench"
[objective]
metric = "loss"
direction = "minimize"
[job]
command = ["sh", "-c", {command:?}]
time_limit = "{time_limit}"
[knobs]
x = {{ kind = "float", low = 0.0, high = 1.0, baseline = 0.5 }}
y = {{ kind = "int", low = 0, high = 9, baseline = 5 }}
[budget]
cpu_hours = 100000.0
max_trials = {trials}
max_parallel = {parallel}
baseline_replicates = 3
confirm_replicates = 2
"#
    );
    let file = dir.join("campaign.toml");
    std::fs::write(&file, toml).unwrap();
    let o = Command::new(REAGENT)
        .arg("init")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success());
    file
}

/// CPU seconds of `n` no-op jobs run directly (to subtract their own cost).
pub fn noop_jobs_cpu(n: u64) -> f64 {
    let before = children_cpu();
    for _ in 0..n {
        let o = Command::new("sh")
            .args(["-c", NOOP])
            .env("REAGENT_KNOB_X", "0.5")
            .env("REAGENT_METRICS", "/dev/null")
            .output()
            .unwrap();
        assert!(o.status.success());
    }
    children_cpu() - before
}

/// Runs `reagent run campaign.toml --yes` in `dir` to the end; returns its
/// output (stderr has the `reagent-rusage:` line), the wall time and the CPU
/// of it and everything it started that was waited for.
pub fn run_campaign(dir: &Path) -> (std::process::Output, std::time::Duration, f64) {
    let before = children_cpu();
    let start = std::time::Instant::now();
    let o = Command::new(REAGENT)
        .args(["run", "campaign.toml", "--yes"])
        .current_dir(dir)
        .env("REAGENT_RUSAGE", "1")
        .output()
        .unwrap();
    (o, start.elapsed(), children_cpu() - before)
}
