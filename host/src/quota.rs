//! The workspace quota: `[quota]` in `.reagent/config.toml`. Jobs at once
//! across every campaign of the workspace, CPU- and GPU-hours per rolling
//! day or week, and each campaign's weight.
//!
//! How the driver applies it (`workspace::pass`, `Engine::share_slots`):
//! every active campaign is advanced first with its launches held back,
//! then free slots go out one at a time to the campaign furthest below its
//! weighted share ([`next_claimant`]). A campaign with nothing to launch
//! (waiting for a person, its budget spent, between stages) is not a
//! claimant, so the slots it cannot use go to the others.
//!
//! Usage is read from trial rows, never kept on the side: a launch's
//! reservation is written on its row in the transaction that journals the
//! launch (`Launching`), and settled on the same row when the job ends. A
//! driver killed at any point leaves rows that count every slot and hour
//! it gave out, so a restarted driver cannot exceed the quota.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::Config;
use crate::spec::ConfigError;

const HOUR_MS: u64 = 3_600_000;
/// The rolling windows the hour caps are measured over.
pub const DAY_MS: u64 = 24 * HOUR_MS;
pub const WEEK_MS: u64 = 7 * DAY_MS;

/// The `[quota]` section, checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Quota {
    /// Jobs running at once across all campaigns.
    pub jobs: Option<u32>,
    pub cpu_hours_per_day: Option<f64>,
    pub cpu_hours_per_week: Option<f64>,
    pub gpu_hours_per_day: Option<f64>,
    pub gpu_hours_per_week: Option<f64>,
    /// Campaign name → weight; a campaign not listed weighs 1.
    pub weights: BTreeMap<String, f64>,
}

impl Quota {
    pub fn weight(&self, campaign: &str) -> f64 {
        self.weights.get(campaign).copied().unwrap_or(1.0)
    }

    /// The caps on hours with their names, in [`Usage`]'s field order.
    fn hour_caps(&self) -> [(&'static str, Option<f64>); 4] {
        [
            ("CPU-hours per day", self.cpu_hours_per_day),
            ("CPU-hours per week", self.cpu_hours_per_week),
            ("GPU-hours per day", self.gpu_hours_per_day),
            ("GPU-hours per week", self.gpu_hours_per_week),
        ]
    }

    pub fn caps_hours(&self) -> bool {
        self.hour_caps().iter().any(|(_, c)| c.is_some())
    }

    /// Why one more launch reserving `cpu`/`gpu` hours would cross a cap on
    /// hours, given what the windows already hold; `None` if it fits.
    pub fn hours_refusal(&self, used: &Usage, cpu: f64, gpu: f64) -> Option<String> {
        let wants = [
            (used.cpu_day, cpu),
            (used.cpu_week, cpu),
            (used.gpu_day, gpu),
            (used.gpu_week, gpu),
        ];
        for ((what, cap), (used, more)) in self.hour_caps().into_iter().zip(wants) {
            if let Some(cap) = cap
                && more > 0.0
                && used + more > cap + 1e-9
            {
                return Some(format!(
                    "the workspace quota of {cap} {what} is used ({used:.3} in the window; a trial reserves {more:.3})"
                ));
            }
        }
        None
    }

    /// One line for terminals: what the quota allows.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(j) = self.jobs {
            parts.push(format!("{j} jobs at once"));
        }
        for (what, cap) in self.hour_caps() {
            if let Some(c) = cap {
                parts.push(format!("{c} {what}"));
            }
        }
        if parts.is_empty() {
            parts.push("no limits".into());
        }
        parts.join(", ")
    }
}

/// Hours the quota's windows hold now: reservations of running trials and
/// the spend of settled ones, by when they were launched.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Usage {
    pub cpu_day: f64,
    pub cpu_week: f64,
    pub gpu_day: f64,
    pub gpu_week: f64,
}

impl Usage {
    /// Adds what each launched trial holds (its reservation while it runs)
    /// or used (its spend once settled).
    pub fn count(&mut self, now: u64, trials: &[crate::records::campaign::TrialRow]) {
        for t in trials {
            if let Some(at) = t.launched_ms {
                self.add(
                    now,
                    at,
                    t.reserved_cpu + t.spent_cpu,
                    t.reserved_gpu + t.spent_gpu,
                );
            }
        }
    }

    /// Adds one trial's hours (launched at `launched_ms`) as seen at `now`.
    pub fn add(&mut self, now: u64, launched_ms: u64, cpu: f64, gpu: f64) {
        let age = now.saturating_sub(launched_ms);
        if age < WEEK_MS {
            self.cpu_week += cpu;
            self.gpu_week += gpu;
            if age < DAY_MS {
                self.cpu_day += cpu;
                self.gpu_day += gpu;
            }
        }
    }
}

/// Parses a workspace config; `Ok(None)` when it has no `[quota]`.
pub fn parse(file: &str, text: &str) -> Result<Option<Quota>, ConfigError> {
    resolve(&crate::config::parse(file, text)?)
}

/// The `[quota]` of a parsed config, checked.
pub fn resolve(c: &Config) -> Result<Option<Quota>, ConfigError> {
    let Some(q) = c.sections.quota.clone() else {
        return Ok(None);
    };
    let jobs = match q.jobs {
        Some(j) if *j.get_ref() < 1 || *j.get_ref() > 100_000 => {
            return Err(c.at(j.span(),
                format!(
                    "quota.jobs must be between 1 and 100000 (it is {}); leave it out for no limit on jobs at once",
                    j.get_ref()
                ),
            ));
        }
        Some(j) => Some(*j.get_ref() as u32),
        None => None,
    };
    let hours = |v: Option<toml::Spanned<f64>>, name: &str| -> Result<Option<f64>, ConfigError> {
        match v {
            Some(h) if !(h.get_ref().is_finite() && *h.get_ref() > 0.0) => Err(c.at(h.span(),
                format!(
                    "quota.{name} must be a positive number of hours (it is {}); leave it out for no cap",
                    h.get_ref()
                ),
            )),
            Some(h) => Ok(Some(*h.get_ref())),
            None => Ok(None),
        }
    };
    let mut weights = BTreeMap::new();
    for (name, w) in q.weights {
        if !(w.get_ref().is_finite() && *w.get_ref() > 0.0) {
            return Err(c.at(w.span(),
                format!(
                    "the weight of campaign `{name}` must be a positive number (it is {}); weights are relative, 1 by default",
                    w.get_ref()
                ),
            ));
        }
        weights.insert(name, *w.get_ref());
    }
    Ok(Some(Quota {
        jobs,
        cpu_hours_per_day: hours(q.cpu_hours_per_day, "cpu_hours_per_day")?,
        cpu_hours_per_week: hours(q.cpu_hours_per_week, "cpu_hours_per_week")?,
        gpu_hours_per_day: hours(q.gpu_hours_per_day, "gpu_hours_per_day")?,
        gpu_hours_per_week: hours(q.gpu_hours_per_week, "gpu_hours_per_week")?,
        weights,
    }))
}

/// The quota of the workspace at `dir` (its `.reagent/` folder); `Ok(None)`
/// without a config file or a `[quota]` section.
pub fn load(dir: &Path) -> Result<Option<Quota>, ConfigError> {
    let Some(c) = crate::config::read(dir)? else {
        return Ok(None);
    };
    resolve(&c).map_err(|mut e| {
        e.message
            .push_str("; nothing launches in this workspace until the file is mended");
        e
    })
}

/// A campaign that could take a slot, or holds some.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimant {
    pub campaign: u64,
    pub weight: f64,
    /// Jobs it has in flight now.
    pub running: usize,
    /// Trials it has launched so far (breaks ties: the least served first).
    pub launched: u32,
    /// It has a queued trial it may launch now (and room under its own
    /// `max_parallel`).
    pub wants: bool,
}

/// The campaign the next free slot goes to: of those that want one, the
/// furthest below its weighted share of `slots` (shares are taken among
/// the campaigns that want a slot or hold one), then the least served for
/// its weight, then the lowest id. `None` when nobody wants a slot.
pub fn next_claimant(slots: usize, claimants: &[Claimant]) -> Option<u64> {
    let in_play = claimants.iter().filter(|c| c.wants || c.running > 0);
    let total_weight: f64 = in_play.map(|c| c.weight).sum();
    claimants
        .iter()
        .filter(|c| c.wants)
        .map(|c| {
            let share = slots as f64 * c.weight / total_weight;
            let deficit = share - c.running as f64;
            (c, deficit, f64::from(c.launched) / c.weight)
        })
        .max_by(|a, b| {
            a.1.total_cmp(&b.1)
                .then(b.2.total_cmp(&a.2))
                .then(b.0.campaign.cmp(&a.0.campaign))
        })
        .map(|(c, ..)| c.campaign)
}

/// One campaign's place under the quota, for `reagent quota` and `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Place {
    pub campaign: u64,
    pub name: String,
    pub state: String,
    pub paused: bool,
    pub weight: f64,
    /// Its weighted share of the jobs at once, among the campaigns that
    /// want a slot or hold one (none without a cap on jobs, or when it
    /// neither wants nor holds one).
    pub share: Option<f64>,
    pub running: usize,
    pub queued: usize,
}

/// The workspace under its quota now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Standing {
    pub running: usize,
    pub usage: Usage,
    pub campaigns: Vec<Place>,
}

/// Reads every active campaign's rows (and the trials of campaigns that
/// ended within the week, when the quota caps hours).
pub fn standing(store: &crate::store::Store, quota: &Quota, now: u64) -> anyhow::Result<Standing> {
    let mut usage = Usage::default();
    let mut places = Vec::new();
    for c in store.campaigns()? {
        let recent = c
            .finished_ms
            .is_some_and(|f| now.saturating_sub(f) < WEEK_MS);
        let counts = c.state.is_active() || (recent && quota.caps_hours());
        if !counts {
            continue;
        }
        let trials = store.trials(c.id)?;
        usage.count(now, &trials);
        if !c.state.is_active() {
            continue;
        }
        let running = trials.iter().filter(|t| t.status.in_flight()).count();
        let queued = trials
            .iter()
            .filter(|t| t.status == crate::records::campaign::TrialStatus::Queued)
            .count();
        places.push(Place {
            campaign: c.id,
            weight: quota.weight(&c.spec.name),
            name: c.spec.name,
            state: c.state.name().to_string(),
            paused: c.paused,
            share: None,
            running,
            queued,
        });
    }
    if let Some(jobs) = quota.jobs {
        let in_play = |p: &Place| p.running > 0 || (p.queued > 0 && !p.paused);
        let total: f64 = places.iter().filter(|p| in_play(p)).map(|p| p.weight).sum();
        for p in places.iter_mut().filter(|p| in_play(p)) {
            p.share = Some(f64::from(jobs) * p.weight / total);
        }
    }
    Ok(Standing {
        running: places.iter().map(|p| p.running).sum(),
        usage,
        campaigns: places,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        parse("config.toml", text).unwrap_err()
    }

    #[test]
    fn a_quota_parses_and_its_mistakes_are_located() {
        let q = parse(
            "config.toml",
            "[quota]\njobs = 4\ncpu_hours_per_day = 100\n[quota.weights]\nranker = 3\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(q.jobs, Some(4));
        assert_eq!(q.cpu_hours_per_day, Some(100.0));
        assert_eq!(q.weight("ranker"), 3.0);
        assert_eq!(q.weight("other"), 1.0);
        assert_eq!(parse("config.toml", "").unwrap(), None);

        let e = err("[quota]\njobs = 0\n");
        assert_eq!((e.line, e.column), (2, 8), "{e}");
        assert!(e.message.contains("between 1 and 100000"), "{e}");
        let e = err("[quota]\njobs = 2\ncpu_hours_per_week = -1\n");
        assert_eq!(e.line, 3, "{e}");
        let e = err("[quota]\n[quota.weights]\na = 0\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("campaign `a`"), "{e}");
        // A misspelt key is named with its place.
        let e = err("[quota]\njob = 2\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("unknown field `job`"), "{e}");
    }

    #[test]
    fn hours_caps_refuse_only_what_would_cross_them() {
        let q = Quota {
            cpu_hours_per_day: Some(10.0),
            gpu_hours_per_week: Some(2.0),
            ..Quota::default()
        };
        let mut used = Usage::default();
        let now = 100 * DAY_MS;
        used.add(now, now - 3 * HOUR_MS, 9.0, 1.5);
        used.add(now, now - 2 * DAY_MS, 50.0, 0.0); // outside the day
        assert_eq!(used.cpu_day, 9.0);
        assert_eq!(used.cpu_week, 59.0);
        assert!(q.hours_refusal(&used, 1.0, 0.0).is_none());
        let why = q.hours_refusal(&used, 1.5, 0.0).unwrap();
        assert!(why.contains("10 CPU-hours per day"), "{why}");
        let why = q.hours_refusal(&used, 0.0, 1.0).unwrap();
        assert!(why.contains("GPU-hours per week"), "{why}");
        // A CPU-only trial is not refused by a spent GPU cap.
        used.gpu_week = 5.0;
        assert!(q.hours_refusal(&used, 0.5, 0.0).is_none());
    }

    fn claimant(campaign: u64, weight: f64, running: usize, launched: u32) -> Claimant {
        Claimant {
            campaign,
            weight,
            running,
            launched,
            wants: true,
        }
    }

    /// Hands out `slots` one at a time from nothing, as a pass does.
    fn fill(slots: usize, mut cs: Vec<Claimant>) -> Vec<usize> {
        for _ in 0..slots {
            let id = next_claimant(slots, &cs).unwrap();
            let c = cs.iter_mut().find(|c| c.campaign == id).unwrap();
            c.running += 1;
            c.launched += 1;
        }
        cs.iter().map(|c| c.running).collect()
    }

    #[test]
    fn slots_follow_the_weights_within_one_slot() {
        // Weights 3:1 over 4 slots: 3 and 1.
        assert_eq!(
            fill(4, vec![claimant(1, 3.0, 0, 0), claimant(2, 1.0, 0, 0)]),
            [3, 1]
        );
        // 5:1:…:1 (12 in all) over 4 slots: the heavy one's share is 1.67.
        let mut cs = vec![claimant(1, 5.0, 0, 0)];
        cs.extend((2..=8).map(|i| claimant(i, 1.0, 0, 0)));
        let got = fill(4, cs);
        assert_eq!(got[0], 2, "{got:?}");
        assert_eq!(got.iter().sum::<usize>(), 4);
        assert!(got[1..].iter().all(|&r| r <= 1), "{got:?}");
    }

    #[test]
    fn equal_weights_take_turns_by_what_they_were_given() {
        // Two slots, four equal campaigns: the two served least go first.
        let cs = vec![
            claimant(1, 1.0, 0, 9),
            claimant(2, 1.0, 0, 3),
            claimant(3, 1.0, 0, 5),
            claimant(4, 1.0, 0, 3),
        ];
        assert_eq!(next_claimant(2, &cs), Some(2));
        let mut cs = cs;
        cs[1].running = 1;
        assert_eq!(next_claimant(2, &cs), Some(4));
    }

    #[test]
    fn a_campaign_that_cannot_use_its_share_lends_it() {
        // Campaign 1 weighs 3 but wants nothing: campaign 2 gets every slot.
        let mut cs = vec![claimant(1, 3.0, 0, 0), claimant(2, 1.0, 0, 0)];
        cs[0].wants = false;
        assert_eq!(fill(4, cs), [0, 4]);
        // Nobody wants a slot: none is given.
        let mut idle = claimant(1, 1.0, 2, 2);
        idle.wants = false;
        assert_eq!(next_claimant(4, &[idle]), None);
    }
}
