//! Crash-testing hooks: where a test may kill the process as if at a
//! power cut (tests/all/kill_points.rs). The bottom layer: the store's
//! commits, the engine's submit path and the Slurm backend call them.

/// Crash-testing hooks (tests/all/crash.rs), read from the environment:
///
/// - `REAGENT_CRASH_AFTER_COMMITS=N`: this process aborts right after its
///   own Nth commit (as if killed there). Not passed on to supervisors.
/// - `REAGENT_CRASH_AT_EVENT=N`: whichever process makes the commit that
///   brings the workspace's audit log to N events aborts right after it —
///   a driver, a supervisor's `wake`, `approve`, `cancel`… Passed on to
///   supervisors and their wakes, so every commit of a workspace is a kill
///   point, whoever makes it.
/// - `REAGENT_CRASH_AFTER_SUBMITS=N`: this process aborts right after its
///   Nth job submission returned, before the journal records it.
/// - `REAGENT_SLURM_CRASH_AFTER_SBATCH=N`: this process aborts right after
///   its Nth `sbatch` returned, before the job id is written down.
/// - `REAGENT_CRASH_LOG=FILE`: before aborting, append a line naming the
///   kill point, so a test can count the kill points it exercised.
pub(crate) fn crash_point() -> Option<u64> {
    env_number("REAGENT_CRASH_AFTER_COMMITS")
}

pub(crate) fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Aborts the process as if killed here, after noting `what` in
/// `$REAGENT_CRASH_LOG` when set.
pub fn crash_here(what: &str) -> ! {
    if let Some(path) = std::env::var_os("REAGENT_CRASH_LOG") {
        use std::io::Write as _;
        let arg = std::env::args().nth(1).unwrap_or_default();
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{what} in `reagent {arg}`");
        }
    }
    std::process::abort();
}

static SUBMITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The crash-testing hook of the submit path: called after a job
/// submission returned, before the journal update.
pub fn after_submit() {
    let n = SUBMITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    if env_number("REAGENT_CRASH_AFTER_SUBMITS") == Some(n) {
        crash_here(&format!("after submit {n}"));
    }
}

static SBATCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The crash-testing hook of the Slurm backend: called after `sbatch`
/// returned a job id, before the id file is written.
pub fn after_sbatch() {
    let n = SBATCHES.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    if env_number("REAGENT_SLURM_CRASH_AFTER_SBATCH") == Some(n) {
        crash_here(&format!("after sbatch {n}"));
    }
}
