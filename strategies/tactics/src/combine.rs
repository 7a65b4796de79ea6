//! Combine: put together the changes that helped.
//!
//! The promising hypotheses (effect above the host's noise threshold), best
//! first, are the parts. The slate is dealt from three queues in turn:
//!
//! - unions: the best change per knob, all together (then smaller prefixes);
//! - pairs among the top few parts, best-sum first;
//! - leave-one-out variants of the full union, to see which part pulls its
//!   weight once the others are in.
//!
//! With fewer than two promising hypotheses it falls back to pairs of the
//! best positive-effect ones, and with fewer than two of those it proposes
//! nothing.

use std::collections::BTreeSet;

use reagent_sdk::{Context, Hypothesis};

use crate::common::{Config, Past, Slate, baseline, changed_knobs, config_key, config_of, signed};

/// Pairs are formed among this many of the best parts.
const PAIR_POOL: usize = 5;

/// A hypothesis that helped, as a building block.
struct Part {
    id: u64,
    effect: f64,
    promising: bool,
    title: String,
    config: Config,
    knobs: Vec<usize>,
}

/// A set of parts to merge, by index into the parts list.
struct Blend {
    parts: Vec<usize>,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Union,
    Pair,
    LeaveOut(usize),
}

pub fn propose(ctx: &Context, max: u32) -> Vec<Hypothesis> {
    let past = Past::load(ctx);
    let mut slate = Slate::new(ctx, &past, max);
    let parts = parts(ctx, &past);
    let promising: Vec<usize> = (0..parts.len()).filter(|&i| parts[i].promising).collect();

    let (queues, source) = if promising.len() >= 2 {
        (plan(&parts, &promising), "promising")
    } else {
        let positive: Vec<usize> = (0..parts.len()).collect();
        (vec![pairs(&parts, &positive)], "positive-effect (fallback)")
    };

    // Deal from the queues in turn so a short slate still mixes kinds.
    let mut cursors = vec![0; queues.len()];
    let mut kinds = BTreeSet::new();
    'deal: loop {
        let mut progressed = false;
        for (q, queue) in queues.iter().enumerate() {
            while let Some(blend) = queue.get(cursors[q]) {
                cursors[q] += 1;
                if slate.is_full() {
                    break 'deal;
                }
                let Some(config) = merge(ctx, &parts, &blend.parts) else {
                    continue;
                };
                if slate.push(&config, describe(&parts, blend)) {
                    kinds.insert(kind_name(blend.kind));
                    progressed = true;
                    break;
                }
            }
        }
        if !progressed {
            break;
        }
    }

    reagent_sdk::log::info(&format!(
        "combine: proposed {} combinations (max {max}) from {} {source} hypotheses ({} promising){}",
        slate.items.len(),
        if promising.len() >= 2 {
            promising.len()
        } else {
            parts.len()
        },
        promising.len(),
        if kinds.is_empty() {
            String::new()
        } else {
            format!(": {}", kinds.into_iter().collect::<Vec<_>>().join(", "))
        }
    ));
    slate.items
}

/// Hypotheses with a positive effect that change something, best first,
/// one per distinct configuration.
fn parts(ctx: &Context, past: &Past) -> Vec<Part> {
    let mut parts: Vec<Part> = past
        .hypotheses
        .iter()
        .filter_map(|h| {
            let effect = h.effect.filter(|e| e.is_finite() && *e > 0.0)?;
            let config = config_of(ctx, &h.assignments);
            let knobs = changed_knobs(ctx, &config);
            (!knobs.is_empty()).then(|| Part {
                id: h.id,
                effect,
                promising: h.promising,
                title: h.title.clone(),
                config,
                knobs,
            })
        })
        .collect();
    parts.sort_by(|a, b| b.effect.total_cmp(&a.effect).then(a.id.cmp(&b.id)));
    let mut seen = BTreeSet::new();
    parts.retain(|p| seen.insert(config_key(ctx, &p.config)));
    parts
}

/// The three queues for the promising parts (`pool`, best first).
fn plan(parts: &[Part], pool: &[usize]) -> Vec<Vec<Blend>> {
    // Best change per knob: greedily keep parts whose knobs are still free.
    let mut picked: Vec<usize> = Vec::new();
    let mut used = BTreeSet::new();
    for &p in pool {
        if parts[p].knobs.iter().all(|k| !used.contains(k)) {
            used.extend(parts[p].knobs.iter().copied());
            picked.push(p);
        }
    }
    let mut unions = Vec::new();
    for size in (2..=picked.len()).rev() {
        unions.push(Blend {
            parts: picked[..size].to_vec(),
            kind: Kind::Union,
        });
    }
    let mut leave_out = Vec::new();
    if picked.len() >= 3 {
        // Dropping the weakest first: the likeliest to be noise.
        for drop in (0..picked.len()).rev() {
            let rest = picked
                .iter()
                .copied()
                .filter(|&p| p != picked[drop])
                .collect();
            leave_out.push(Blend {
                parts: rest,
                kind: Kind::LeaveOut(picked[drop]),
            });
        }
    }
    vec![unions, pairs(parts, pool), leave_out]
}

/// Knob-disjoint pairs among the first few of `pool`, best sum first.
fn pairs(parts: &[Part], pool: &[usize]) -> Vec<Blend> {
    let top = &pool[..pool.len().min(PAIR_POOL)];
    let mut out = Vec::new();
    for (n, &a) in top.iter().enumerate() {
        for &b in &top[n + 1..] {
            if parts[a].knobs.iter().all(|k| !parts[b].knobs.contains(k)) {
                out.push(Blend {
                    parts: vec![a, b],
                    kind: Kind::Pair,
                });
            }
        }
    }
    let sum = |b: &Blend| b.parts.iter().map(|&p| parts[p].effect).sum::<f64>();
    out.sort_by(|x, y| sum(y).total_cmp(&sum(x)));
    out
}

/// The configuration with every part's changes applied; `None` if two parts
/// set the same knob.
fn merge(ctx: &Context, parts: &[Part], chosen: &[usize]) -> Option<Config> {
    let mut config = baseline(ctx);
    let mut used = BTreeSet::new();
    for &p in chosen {
        for &k in &parts[p].knobs {
            if !used.insert(k) {
                return None;
            }
            config[k] = parts[p].config[k].clone();
        }
    }
    Some(config)
}

fn describe(parts: &[Part], blend: &Blend) -> Hypothesis {
    let members: Vec<&Part> = blend.parts.iter().map(|&p| &parts[p]).collect();
    let title = if members.len() <= 3 {
        members
            .iter()
            .map(|p| p.title.as_str())
            .collect::<Vec<_>>()
            .join(" + ")
    } else {
        format!(
            "{} changes: {}",
            members.len(),
            members
                .iter()
                .map(|p| format!("h{}", p.id))
                .collect::<Vec<_>>()
                .join(" + ")
        )
    };
    let listed = members
        .iter()
        .map(|p| format!("h{} {} ({})", p.id, p.title, signed(p.effect)))
        .collect::<Vec<_>>()
        .join(", ");
    let expected = signed(members.iter().map(|p| p.effect).sum());
    let rationale = match blend.kind {
        Kind::Union => format!(
            "Union of the best change per knob: {listed}. If the effects add up, expect about {expected} over baseline."
        ),
        Kind::Pair => format!(
            "Pair of changes that helped on their own: {listed}. If they add up, expect about {expected}; if not, they interact."
        ),
        Kind::LeaveOut(p) => format!(
            "The union without h{} ({}): {listed}. Shows whether h{} still pulls its weight once the others are in.",
            parts[p].id, parts[p].title, parts[p].id
        ),
    };
    Hypothesis::new(title)
        .because(rationale)
        .category("combination")
        .parents(members.iter().map(|p| p.id))
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Union => "union",
        Kind::Pair => "pair",
        Kind::LeaveOut(_) => "leave-one-out",
    }
}
