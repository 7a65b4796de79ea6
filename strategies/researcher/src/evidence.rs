//! What past campaigns say, read once per call, and the proposals it
//! supports.
//!
//! Every record read through `insights` is kept only if all the values it
//! sets are valid here (the host serves records whose knobs exist with the
//! right kind, but a value may lie outside this campaign's range). Three
//! kinds of lead come out of them, in this order:
//!
//! 1. **transfer**: a change whose 95% interval lies above zero, applied
//!    whole to this baseline; multi-knob changes from campaigns sharing a
//!    tag with this one first, then single changes from such campaigns,
//!    then the rest; plus up to two of the best combinations (same metric,
//!    replicated first) of campaigns sharing a tag whose interval still
//!    includes zero, said to be weak evidence;
//! 2. **far**: a knob whose baseline here is far from the value that helped
//!    elsewhere (≥ 2× on a log scale, ≥ 1/8 of the range on a linear one, a
//!    different choice or flag), moved there on its own; the value comes
//!    from single-knob records when there are any for the knob, else from
//!    a combination that contained it;
//! 3. **interaction**: a multi-knob change whose interval's low end beats
//!    the best single-knob record of every knob in it.

use std::collections::{BTreeMap, BTreeSet};

use reagent_sdk::{Context, FailureClass, Hypothesis, Insight, InsightQuery, KnobKind, Value};
use tactics::common::{
    Config, baseline, changed_knobs, config_key, config_of, num, round_sig, same_value, show,
    signed, tidy,
};

use crate::text::clean;

/// Records read per query (per knob, the top effects, the failures).
const PER_QUERY: usize = 128;
/// A knob counts as far from a helpful value at this ratio on a log scale…
const FAR_RATIO: f64 = 2.0;
/// …and at this fraction of its range on a linear one.
const FAR_FRACTION: f64 = 0.125;
/// Knob changes spelled out in a title before "and N more".
const TITLE_KNOBS: usize = 3;

/// One past record that applies here.
pub struct Record {
    pub insight: Insight,
    /// The record's change applied to this campaign's baseline.
    pub config: Config,
    /// Indices of the knobs the record sets.
    pub knobs: Vec<usize>,
    /// The campaign shares a tag with this one.
    pub shares_tag: bool,
}

impl Record {
    /// The interval lies above zero: a significant improvement.
    pub fn significant(&self) -> bool {
        self.insight.failure.is_none() && self.insight.ci95_low > 0.0
    }

    fn same_metric(&self, ctx: &Context) -> bool {
        self.insight.metric == ctx.objective.metric
    }
}

pub struct Evidence {
    /// Records of changes that did not fail and improved their metric,
    /// same metric as this campaign first, then by effect.
    pub helpful: Vec<Record>,
    /// Records of changes that failed.
    pub failures: Vec<Record>,
    /// Per knob (in `ctx.knobs` order): some record sets it to a value
    /// valid here.
    pub mentioned: Vec<bool>,
    /// Records read, and how many of them set a value not valid here.
    pub read: usize,
    pub outside: usize,
    /// The best effect of a single-knob, non-failed record, per knob index
    /// and metric.
    singles: BTreeMap<(usize, String), f64>,
}

impl Evidence {
    pub fn load(ctx: &Context) -> Evidence {
        let mut queries = vec![InsightQuery::TopEffects, InsightQuery::KnownFailures];
        queries.extend(
            ctx.knobs
                .iter()
                .map(|k| InsightQuery::ByKnob(k.name.clone())),
        );
        let mut seen = BTreeSet::new();
        let mut records = Vec::new();
        for query in &queries {
            for record in reagent_sdk::insights::find(query, PER_QUERY) {
                if seen.insert(identity(&record)) {
                    records.push(record);
                }
            }
        }
        Evidence::from_records(ctx, records)
    }

    fn from_records(ctx: &Context, records: Vec<Insight>) -> Evidence {
        let mut ev = Evidence {
            helpful: Vec::new(),
            failures: Vec::new(),
            mentioned: vec![false; ctx.knobs.len()],
            read: records.len(),
            outside: 0,
            singles: BTreeMap::new(),
        };
        for insight in records {
            let finite = [insight.effect, insight.ci95_low, insight.ci95_high]
                .iter()
                .all(|x| x.is_finite());
            if !finite || insight.assignments.is_empty() {
                ev.outside += 1;
                continue;
            }
            let mut knobs = Vec::new();
            for a in &insight.assignments {
                if let Some(i) = ctx.knobs.iter().position(|k| k.name == a.knob)
                    && ctx.knobs[i].accepts(&a.value)
                {
                    ev.mentioned[i] = true;
                    if !knobs.contains(&i) {
                        knobs.push(i);
                    }
                }
            }
            if knobs.len() != insight.assignments.len() {
                ev.outside += 1;
                continue;
            }
            let record = Record {
                config: config_of(ctx, &insight.assignments),
                shares_tag: insight.tags.iter().any(|t| ctx.tags.contains(t)),
                knobs,
                insight,
            };
            if record.insight.failure.is_some() {
                ev.failures.push(record);
                continue;
            }
            if let [knob] = record.knobs[..] {
                let best = ev
                    .singles
                    .entry((knob, record.insight.metric.clone()))
                    .or_insert(f64::NEG_INFINITY);
                *best = best.max(record.insight.effect);
            }
            if record.insight.effect > 0.0 {
                ev.helpful.push(record);
            }
        }
        ev.helpful.sort_by(|a, b| {
            b.same_metric(ctx)
                .cmp(&a.same_metric(ctx))
                .then(b.insight.effect.total_cmp(&a.insight.effect))
                .then(b.insight.ci95_low.total_cmp(&a.insight.ci95_low))
                .then_with(|| a.insight.campaign.cmp(&b.insight.campaign))
                .then_with(|| config_key(ctx, &a.config).cmp(&config_key(ctx, &b.config)))
        });
        ev
    }

    /// Why each configuration recorded as a failure failed, by config key.
    pub fn failure_notes(&self, ctx: &Context) -> BTreeMap<String, String> {
        let mut notes = BTreeMap::new();
        for r in &self.failures {
            let key = config_key(ctx, &r.config);
            if key.is_empty() {
                continue; // the change is this campaign's baseline
            }
            notes.entry(key).or_insert_with(|| {
                format!(
                    "{} in campaign {}",
                    failure_name(r.insight.failure),
                    clean(&r.insight.campaign, 60)
                )
            });
        }
        notes
    }

    /// The best single-knob effects of `record`'s knobs, on its metric;
    /// `None` unless every knob has one.
    fn parts_alone(&self, record: &Record) -> Option<Vec<(usize, f64)>> {
        record
            .knobs
            .iter()
            .map(|&k| {
                self.singles
                    .get(&(k, record.insight.metric.clone()))
                    .map(|&e| (k, e))
            })
            .collect()
    }

    /// For a multi-knob record whose interval's low end beats the best
    /// single-knob record of each of its knobs: the sentence that says so.
    fn interaction(&self, ctx: &Context, record: &Record) -> Option<String> {
        if record.knobs.len() < 2 {
            return None;
        }
        let alone = self.parts_alone(record)?;
        let best_part = alone.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        if record.insight.ci95_low <= best_part {
            return None;
        }
        let listed = alone
            .iter()
            .map(|&(k, e)| format!("{} {}", ctx.knobs[k].name, signed(e)))
            .collect::<Vec<_>>()
            .join(", ");
        let sum: f64 = alone.iter().map(|p| p.1.max(0.0)).sum();
        let more = if record.insight.ci95_low > sum {
            " and more than their sum"
        } else {
            ""
        };
        Some(format!(
            "Alone, the best records of its knobs are {listed}: together they did better than any part{more}, an interaction."
        ))
    }
}

/// Where a lead comes from (the discriminant indexes per-source counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Transfer = 0,
    Far = 1,
    Interaction = 2,
}

/// A proposal supported by past campaigns.
pub struct Lead {
    pub source: Source,
    pub config: Config,
    pub hypothesis: Hypothesis,
}

/// Every lead in order of preference (transfer, far, interaction), each
/// configuration once, none equal to the baseline.
pub fn leads(ctx: &Context, ev: &Evidence) -> Vec<Lead> {
    let mut out = transfers(ctx, ev);
    out.extend(far_values(ctx, ev));
    out.extend(interactions(ctx, ev));
    let mut seen = BTreeSet::new();
    out.retain(|lead| {
        let key = config_key(ctx, &lead.config);
        !key.is_empty() && seen.insert(key)
    });
    out
}

/// Weak transfers per call: the best replicated combinations of related
/// campaigns whose interval still includes zero.
const WEAK_TRANSFERS: usize = 2;

fn transfers(ctx: &Context, ev: &Evidence) -> Vec<Lead> {
    let mut chosen: Vec<&Record> = ev
        .helpful
        .iter()
        .filter(|r| r.significant() && !changed_knobs(ctx, &r.config).is_empty())
        .collect();
    // A related campaign's best combinations are worth one trial here even
    // when their interval includes zero (an engineer tries last time's
    // winner first): replicated ones first (a confirmed winner has its
    // confirmation runs), then by effect.
    let mut weak: Vec<&Record> = ev
        .helpful
        .iter()
        .filter(|r| {
            !r.significant()
                && r.shares_tag
                && r.knobs.len() > 1
                && r.same_metric(ctx)
                && changed_knobs(ctx, &r.config).len() > 1
        })
        .collect();
    weak.sort_by_key(|r| r.insight.trials < 2);
    chosen.extend(weak.into_iter().take(WEAK_TRANSFERS));
    // Whole configurations from related campaigns, then single changes
    // from them, then the rest (stable: best first within each).
    chosen.sort_by_key(|r| match (r.shares_tag, r.knobs.len() > 1) {
        (true, true) => 0,
        (true, false) => 1,
        _ => 2,
    });
    chosen
        .into_iter()
        .map(|r| {
            let mut rationale = if r.significant() {
                format!(
                    "{}. The interval lies above zero, so this carries the change over: {}.",
                    cite(ctx, r),
                    moves(ctx, &r.config, usize::MAX)
                )
            } else {
                format!(
                    "{}. The interval includes zero, but it is among the best configurations a related campaign measured{}, so it is worth one trial here: {}.",
                    cite(ctx, r),
                    if r.insight.trials >= 2 { " more than once" } else { "" },
                    moves(ctx, &r.config, usize::MAX)
                )
            };
            let unchanged: Vec<String> = r
                .knobs
                .iter()
                .filter(|&&k| same_value(&r.config[k], &ctx.knobs[k].baseline))
                .map(|&k| format!("{} = {}", ctx.knobs[k].name, show(&r.config[k])))
                .collect();
            if !unchanged.is_empty() {
                rationale.push_str(&format!(" Already so here: {}.", unchanged.join(", ")));
            }
            if let Some(note) = ev.interaction(ctx, r) {
                rationale.push(' ');
                rationale.push_str(&note);
            }
            let changed = changed_knobs(ctx, &r.config);
            let category = match changed[..] {
                [k] => ctx.knobs[k].name.clone(),
                _ => "transfer".to_string(),
            };
            Lead {
                source: Source::Transfer,
                hypothesis: Hypothesis::new(format!(
                    "{}, as in {}",
                    moves(ctx, &r.config, TITLE_KNOBS),
                    clean(&r.insight.campaign, 40)
                ))
                .because(rationale)
                .category(category),
                config: r.config.clone(),
            }
        })
        .collect()
}

fn far_values(ctx: &Context, ev: &Evidence) -> Vec<Lead> {
    let mut out = Vec::new();
    for (i, knob) in ctx.knobs.iter().enumerate() {
        // The value that helped: significant records first, then records
        // that changed this knob alone (stable: best first within each). A
        // value from a combination counts only when no record shows the
        // knob alone: otherwise the single-knob records speak for it.
        let alone_known = ev.singles.keys().any(|(k, _)| *k == i);
        let mut candidates: Vec<&Record> = ev
            .helpful
            .iter()
            .filter(|r| r.knobs.contains(&i) && !same_value(&r.config[i], &knob.baseline))
            .filter(|r| r.knobs.len() == 1 || !alone_known)
            .collect();
        candidates.sort_by_key(|r| !r.significant());
        let Some(r) = candidates.first() else {
            continue;
        };
        let value = tidy(knob, r.config[i].clone());
        let Some(gap) = gap(knob, &value) else {
            continue;
        };
        let mut config = baseline(ctx);
        config[i] = value.clone();
        let others: Vec<String> = r
            .knobs
            .iter()
            .filter(|&&k| k != i)
            .map(|&k| format!("{} {}", ctx.knobs[k].name, show(&r.config[k])))
            .collect();
        let context = if others.is_empty() {
            String::new()
        } else {
            format!(" (together with {})", others.join(", "))
        };
        let confidence = if r.significant() {
            ""
        } else {
            " The interval includes zero, so the evidence is weak."
        };
        let rationale = format!(
            "{} is {} here, {gap} {}, the value with which campaign {}{context} improved {} by {} (95% CI [{}, {}], {} trials). This moves it there on its own to measure the effect here.{confidence}",
            knob.name,
            show(&knob.baseline),
            show(&value),
            clean(&r.insight.campaign, 60),
            clean(&r.insight.metric, 60),
            num(r.insight.effect),
            num(r.insight.ci95_low),
            num(r.insight.ci95_high),
            r.insight.trials,
        );
        out.push(Lead {
            source: Source::Far,
            hypothesis: Hypothesis::new(format!(
                "{}, toward what helped in {}",
                moves(ctx, &config, TITLE_KNOBS),
                clean(&r.insight.campaign, 40)
            ))
            .because(rationale)
            .category(knob.name.clone()),
            config,
        });
    }
    out
}

fn interactions(ctx: &Context, ev: &Evidence) -> Vec<Lead> {
    ev.helpful
        .iter()
        .filter(|r| changed_knobs(ctx, &r.config).len() > 1)
        .filter_map(|r| {
            let note = ev.interaction(ctx, r)?;
            Some(Lead {
                source: Source::Interaction,
                hypothesis: Hypothesis::new(format!(
                    "{} together (interaction seen in {})",
                    moves(ctx, &r.config, TITLE_KNOBS),
                    clean(&r.insight.campaign, 40)
                ))
                .because(format!(
                    "{}. {note} This tries the combination here: {}.",
                    cite(ctx, r),
                    moves(ctx, &r.config, usize::MAX)
                ))
                .category("interaction"),
                config: r.config.clone(),
            })
        })
        .collect()
}

/// How far `value` is from `knob`'s baseline, worded to precede the value
/// ("100× below", "38% of its range above", "rather than"); `None` when
/// it is near.
fn gap(knob: &reagent_sdk::KnobSpec, value: &Value) -> Option<String> {
    let side = |up: bool| if up { "below" } else { "above" };
    match (&knob.kind, knob.baseline.as_f64(), value.as_f64()) {
        (KnobKind::LogFloat(_), Some(b), Some(v)) if b > 0.0 && v > 0.0 => {
            let ratio = (v / b).max(b / v);
            (ratio >= FAR_RATIO).then(|| format!("{}× {}", round_sig(ratio, 3), side(v > b)))
        }
        (KnobKind::Float(r) | KnobKind::LogFloat(r), Some(b), Some(v)) => {
            far_linear(r.high - r.low, b, v, 0.0)
        }
        (KnobKind::Int(r), Some(b), Some(v)) => far_linear(r.high as f64 - r.low as f64, b, v, 1.0),
        _ => (!same_value(&knob.baseline, value)).then(|| "rather than".to_string()),
    }
}

fn far_linear(span: f64, b: f64, v: f64, at_least: f64) -> Option<String> {
    let distance = (v - b).abs();
    if span <= 0.0 || distance < (span * FAR_FRACTION).max(at_least) {
        return None;
    }
    let side = if v > b { "below" } else { "above" };
    Some(format!(
        "{}% of its range {side}",
        round_sig(100.0 * distance / span, 2)
    ))
}

/// "In campaign X (tags a, b; shares `a` with this one), setting lr 0.1,
/// batch_size 512 improved valid_ne by 0.012 (95% CI [0.008, 0.016], 6
/// trials, 3.5 CPU-hours)" plus a note when the metric differs.
pub fn cite(ctx: &Context, r: &Record) -> String {
    let i = &r.insight;
    let tags = if i.tags.is_empty() {
        String::new()
    } else {
        let shown: Vec<String> = i.tags.iter().take(5).map(|t| clean(t, 30)).collect();
        let shared: Vec<String> = i
            .tags
            .iter()
            .filter(|t| ctx.tags.contains(t))
            .take(3)
            .map(|t| format!("`{}`", clean(t, 30)))
            .collect();
        let shared = if shared.is_empty() {
            String::new()
        } else {
            format!("; shares {} with this one", shared.join(", "))
        };
        format!(" (tags {}{shared})", shown.join(", "))
    };
    let setting = r
        .knobs
        .iter()
        .map(|&k| format!("{} {}", ctx.knobs[k].name, show(&r.config[k])))
        .collect::<Vec<_>>()
        .join(", ");
    let metric = if r.same_metric(ctx) {
        String::new()
    } else {
        format!(
            "; that campaign measured {}, this one {}",
            clean(&i.metric, 60),
            ctx.objective.metric
        )
    };
    format!(
        "In campaign {}{tags}, setting {setting} improved {} by {} (95% CI [{}, {}], {} trials, {} CPU-hours{metric})",
        clean(&i.campaign, 60),
        clean(&i.metric, 60),
        num(i.effect),
        num(i.ci95_low),
        num(i.ci95_high),
        i.trials,
        num(i.cost_cpu_hours),
    )
}

/// "lr 0.001 → 0.1, batch_size 256 → 512": the knobs `config` changes,
/// at most `limit` of them spelled out.
pub fn moves(ctx: &Context, config: &Config, limit: usize) -> String {
    let changed = changed_knobs(ctx, config);
    let mut parts: Vec<String> = changed
        .iter()
        .take(limit)
        .map(|&k| {
            format!(
                "{} {} → {}",
                ctx.knobs[k].name,
                show(&ctx.knobs[k].baseline),
                show(&config[k])
            )
        })
        .collect();
    if changed.len() > limit {
        parts.push(format!("and {} more", changed.len() - limit));
    }
    parts.join(", ")
}

/// The WIT name of a failure class.
pub fn failure_name(class: Option<FailureClass>) -> &'static str {
    match class {
        None => "no failure",
        Some(FailureClass::OutOfMemory) => "out-of-memory",
        Some(FailureClass::Divergence) => "divergence",
        Some(FailureClass::TimeLimit) => "time-limit",
        Some(FailureClass::Killed) => "killed",
        Some(FailureClass::Infrastructure) => "infrastructure",
        Some(FailureClass::ProgramError) => "program-error",
        Some(FailureClass::MissingMetrics) => "missing-metrics",
        Some(FailureClass::Unknown) => "unknown failure",
    }
}

/// Tells records apart when two queries return the same one.
fn identity(r: &Insight) -> String {
    let mut parts: Vec<String> = r
        .assignments
        .iter()
        .map(|a| format!("{}={}", a.knob, a.value.render()))
        .collect();
    parts.sort();
    format!(
        "{}|{}|{}|{}|{}|{}|{}|{}",
        r.campaign,
        r.metric,
        parts.join(","),
        r.effect.to_bits(),
        r.ci95_low.to_bits(),
        r.ci95_high.to_bits(),
        r.trials,
        failure_name(r.failure),
    )
}
