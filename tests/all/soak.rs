//! The soak's short version (the bench host/benches/soak.rs runs 10,000
//! trials): random job failures, killed supervisors and operator actions
//! over one campaign; nothing lost, the ledger exact, and the driver's
//! open descriptors not growing after warm-up. Memory is reported, not
//! asserted (it belongs to the bench).

use std::time::Duration;

#[path = "../../host/benches/common/soak.rs"]
mod harness;

#[test]
fn a_short_soak_loses_nothing_and_leaks_no_descriptors() {
    let trials = std::env::var("REAGENT_SOAK_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let s = harness::Soak {
        trials,
        seed: 3,
        parallel: 4,
        kill_every: 50,
        act_every: Duration::from_secs(1),
    };
    let dir = tempfile::tempdir().unwrap();
    let out = harness::run(dir.path(), &s);
    let trend: Vec<(u64, u64, u64)> = out
        .samples
        .iter()
        .map(|x| (x.launched, x.fds, x.rss_kib))
        .collect();
    println!(
        "soak: {} launched in {:?}; (launched, descriptors, rss KiB) {trend:?}; actions {:?}; slowest {:?}",
        out.launched, out.wall, out.actions, out.slowest_action
    );
    let (rss_warm, rss_end, fds_warm, fds_end) =
        harness::drift(&out.samples, trials).expect("samples after warm-up");
    println!(
        "soak: {} jobs in {:.0} s, {} events, {} failed, {} supervisors killed, actions {:?}; RSS {} -> {} KiB, fds {fds_warm} -> {fds_end}",
        out.launched,
        out.wall.as_secs_f64(),
        out.events,
        out.failed,
        out.supervisors_killed,
        out.actions,
        rss_warm,
        rss_end
    );
    assert!(out.failed > 0, "the random failures happened");
    assert!(out.supervisors_killed > 0, "a supervisor was killed");
    assert!(
        out.actions.len() >= 3,
        "the operator acted: {:?}",
        out.actions
    );
    assert!(
        fds_end <= fds_warm + 2,
        "the driver's descriptors grew from {fds_warm} to {fds_end}"
    );
}
