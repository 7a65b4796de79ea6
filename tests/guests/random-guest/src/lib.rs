//! A generator whose behaviour is drawn at random from its context: the
//! seed (mixed with the campaign name and the round) drives a small PRNG
//! through 1..=40 steps — import calls with random arguments (log lines of
//! every level and of any size, history and insights queries in and out of
//! range, memory reads and writes past the quota), allocations, recursions,
//! loops, WASI calls, and now and then a fault: a trap, a spin, unbounded
//! recursion or allocation, a flood of calls, bytes or recorded answers, an
//! oversized argument, an exit. Then it answers: valid hypotheses over the
//! context's knobs, an answer invalid in one of many ways, or one too
//! large. The same context always gives the same behaviour;
//! `tests/all/random_guests.rs` runs it over many seeds under tight limits.
use std::hint::black_box;

use reagent_sdk::{
    Assignment, Context, Generator, Hypothesis, InsightQuery, KnobKind, Level, Value, history,
    insights, log, memory,
};

/// SplitMix64: tiny and deterministic, enough to pick actions.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform below `n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// Uniform in `[low, high]`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A size spread over orders of magnitude: below 2^k, k uniform in 0..=bits.
    fn size(&mut self, bits: u32) -> usize {
        let k = self.below(u64::from(bits) + 1);
        self.below(1 << k) as usize
    }

    /// A cursor or id: mostly small, sometimes at the edges of its type.
    fn edgy(&mut self) -> u64 {
        match self.below(6) {
            0 => 0,
            1 => u64::MAX - self.below(3),
            2 => self.next(),
            3 => u64::from(u32::MAX) + self.below(3),
            _ => self.below(200),
        }
    }

    /// A page size: zero, huge, or anything up to a few pages.
    fn limit(&mut self) -> u32 {
        match self.below(5) {
            0 => 0,
            1 => u32::MAX,
            _ => self.below(120) as u32,
        }
    }

    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    fn level(&mut self) -> Level {
        *self.pick(&[
            Level::Trace,
            Level::Debug,
            Level::Info,
            Level::Warn,
            Level::Error,
        ])
    }

    /// About `bytes` bytes of text (never more): ASCII, characters JSON must
    /// escape, multi-byte characters, markup.
    fn text(&mut self, bytes: usize) -> String {
        let mut s = String::with_capacity(bytes + 8);
        while s.len() < bytes {
            let piece = *self.pick(CLEAN);
            s.push_str(piece);
        }
        cut(s, bytes)
    }

    /// Like `text` but cheap for megabytes: a random pattern repeated.
    fn bulk(&mut self, bytes: usize) -> String {
        let pattern = self.text(24).replace('\n', " ") + "|";
        cut(pattern.repeat(bytes / pattern.len() + 1), bytes)
    }

    /// Text with a control character a title must not carry, somewhere.
    fn dirty(&mut self, bytes: usize) -> String {
        let mut s = self.text(bytes);
        let at = self.index(s.len() + 1);
        let at = (0..=at).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        let piece = *self.pick(DIRTY);
        s.insert_str(at, piece);
        s
    }
}

/// Pieces of text: plain, quoted by JSON, multi-byte, markup, whitespace.
const CLEAN: &[&str] = &[
    "a", "q", "Z", "0", "7", " ", "-", "_", ".", "\"", "\\", "<b>", "&amp;", "é", "ß", "漢字",
    "🦀", "\n", "\t", "%s", "{}",
];
/// Control characters the host refuses in titles, categories and choices.
const DIRTY: &[&str] = &["\u{0}", "\u{7}", "\u{1b}[31m", "\r", "\u{7f}", "\u{85}"];

/// `s` cut to at most `bytes`, on a character boundary.
fn cut(mut s: String, bytes: usize) -> String {
    if s.len() > bytes {
        let end = (0..=bytes)
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        s.truncate(end);
    }
    s
}

/// The generator's seed: the host's, mixed with the campaign and round.
fn seed(ctx: &Context) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in ctx.campaign.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
    }
    ctx.seed ^ h.rotate_left(17) ^ (u64::from(ctx.round) << 40)
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Log,
    TrialCount,
    Trials,
    Hypotheses,
    Curve,
    AllHistory,
    Insights,
    MemoryGet,
    MemorySet,
    MemoryDelete,
    MemoryKeys,
    Alloc,
    Recurse,
    DeepThenCall,
    Compute,
    Wasi,
    // Faults: each ends the call under the test's limits (most of them
    // under any limits).
    Spin,
    HugeAlloc,
    Hoard,
    Dive,
    Trap,
    CallFlood,
    BigArgument,
    ByteFlood,
    RecordFlood,
    Exit,
}

/// Each step with its weight.
const STEPS: &[(u64, Step)] = &[
    (130, Step::Log),
    (40, Step::TrialCount),
    (70, Step::Trials),
    (50, Step::Hypotheses),
    (50, Step::Curve),
    (25, Step::AllHistory),
    (60, Step::Insights),
    (40, Step::MemoryGet),
    (60, Step::MemorySet),
    (20, Step::MemoryDelete),
    (20, Step::MemoryKeys),
    (80, Step::Alloc),
    (40, Step::Recurse),
    (10, Step::DeepThenCall),
    (50, Step::Compute),
    (80, Step::Wasi),
    (7, Step::Spin),
    (5, Step::HugeAlloc),
    (3, Step::Hoard),
    (5, Step::Dive),
    (8, Step::Trap),
    (5, Step::CallFlood),
    (5, Step::BigArgument),
    (5, Step::ByteFlood),
    (5, Step::RecordFlood),
    (2, Step::Exit),
];

/// Keys the memory steps share, so reads find earlier writes.
const KEYS: &[&str] = &["calls", "a", "b", "k1", "k2", ""];

struct Walk<'a> {
    rng: Mix,
    ctx: &'a Context,
    /// Allocations kept alive across steps.
    hoard: Vec<Vec<u8>>,
    /// Hypothesis ids the history answered, for parents.
    hypotheses: Vec<u64>,
    trials: Vec<u64>,
    /// Everything observed, folded, so no step is optimised away.
    sum: u64,
}

impl Walk<'_> {
    /// Folds what a step saw into the sum and into the PRNG, so what the
    /// guest does next and what it answers depend on every answer it got
    /// (a replay fed a different answer goes another way).
    fn note(&mut self, x: u64) {
        self.sum = black_box(self.sum.rotate_left(5) ^ x);
        self.rng.0 ^= x.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    }

    fn choose(&mut self) -> Step {
        let total: u64 = STEPS.iter().map(|(w, _)| w).sum();
        let mut roll = self.rng.below(total);
        for (weight, step) in STEPS {
            if roll < *weight {
                return *step;
            }
            roll -= weight;
        }
        Step::Log
    }

    fn step(&mut self) {
        let step = self.choose();
        match step {
            Step::Log => self.log(),
            Step::TrialCount => {
                let n = history::trial_count();
                self.note(n);
            }
            Step::Trials => {
                let page = history::trials_page(self.rng.edgy(), self.rng.limit());
                self.trials.extend(page.items.iter().map(|t| t.id));
                self.note(page.next.unwrap_or(7) ^ page.items.len() as u64);
            }
            Step::Hypotheses => {
                let page = history::hypotheses_page(self.rng.edgy(), self.rng.limit());
                self.hypotheses.extend(page.items.iter().map(|h| h.id));
                self.note(page.next.unwrap_or(9) ^ page.items.len() as u64);
            }
            Step::Curve => self.curve(),
            Step::AllHistory => {
                let trials = history::trials();
                let hypotheses = history::hypotheses();
                self.trials.extend(trials.iter().map(|t| t.id));
                self.hypotheses.extend(hypotheses.iter().map(|h| h.id));
                self.note(trials.len() as u64 ^ ((hypotheses.len() as u64) << 20));
            }
            Step::Insights => self.insights(),
            Step::MemoryGet => {
                let key = self.key();
                let value = memory::get(&key);
                self.note(value.map_or(3, |v| v.len() as u64));
            }
            Step::MemorySet => self.memory_set(),
            Step::MemoryDelete => memory::delete(&self.key()),
            Step::MemoryKeys => {
                for key in memory::keys().iter().take(3) {
                    let value = memory::get(key);
                    self.note(value.map_or(5, |v| v.len() as u64));
                }
            }
            Step::Alloc => self.alloc(),
            Step::Recurse => {
                let depth = self.rng.size(12) as u64;
                let r = descend(depth, &mut || 1);
                self.note(r);
            }
            Step::DeepThenCall => self.deep_then_call(),
            Step::Compute => {
                let rounds = self.rng.size(17) as u64;
                let mut x = self.sum | 1;
                for i in 0..rounds {
                    x = black_box(x.wrapping_mul(0x5851_F42D_4C95_7F2D).wrapping_add(i));
                }
                self.note(x);
            }
            Step::Wasi => self.wasi(),
            _ => self.fault(step),
        }
    }

    fn log(&mut self) {
        let level = self.rng.level();
        let len = self.rng.size(16);
        let message = match self.rng.below(10) {
            0 => self.rng.dirty(len.min(4096)),
            1..=3 => self.rng.bulk(len),
            _ => self.rng.text(len.min(1024)),
        };
        log::write(level, &message);
    }

    fn curve(&mut self) {
        let trial = if !self.trials.is_empty() && self.rng.chance(60) {
            *self.rng.pick(&self.trials)
        } else {
            self.rng.edgy()
        };
        let metric = if self.rng.chance(50) {
            self.ctx.objective.metric.clone()
        } else {
            let len = self.rng.size(10);
            self.rng.text(len)
        };
        let points = history::curve(trial, &metric);
        self.note(points.len() as u64);
    }

    fn insights(&mut self) {
        let ctx = self.ctx;
        let name = |rng: &mut Mix| {
            if !ctx.knobs.is_empty() && rng.chance(60) {
                rng.pick(&ctx.knobs).name.clone()
            } else {
                let len = rng.size(9);
                rng.text(len)
            }
        };
        let query = match self.rng.below(4) {
            0 => InsightQuery::ByKnob(name(&mut self.rng)),
            1 => InsightQuery::ByTag(if self.rng.chance(50) {
                "test".to_string()
            } else {
                name(&mut self.rng)
            }),
            2 => InsightQuery::TopEffects,
            _ => InsightQuery::KnownFailures,
        };
        let page = insights::find_page(&query, self.rng.edgy(), self.rng.limit());
        self.note(page.items.len() as u64 ^ page.next.unwrap_or(11));
    }

    fn key(&mut self) -> String {
        if self.rng.chance(70) {
            self.rng.pick(KEYS).to_string()
        } else {
            let len = self.rng.size(9);
            self.rng.text(len)
        }
    }

    fn memory_set(&mut self) {
        let key = self.key();
        let len = self.rng.size(13);
        let salt = self.rng.next() as u8;
        let value: Vec<u8> = (0..len).map(|i| (i as u8) ^ salt).collect();
        let result = memory::set(&key, &value);
        self.note(u64::from(result.is_ok()));
        if let Err(why) = result {
            if self.rng.chance(25) {
                // A strategy that treats a full store as fatal.
                panic!("random-guest: memory.set({key:?}, {len} bytes): {why}");
            }
            log::warn(&format!("memory.set refused: {why}"));
        }
    }

    fn alloc(&mut self) {
        let len = self.rng.size(22);
        let mut block = vec![0u8; len];
        if len > 0 {
            block[len / 2] = 1;
            block[len - 1] = 2;
        }
        self.note(block.iter().step_by(4096).map(|b| u64::from(*b)).sum());
        match self.rng.below(10) {
            0..=3 => self.hoard.push(block),
            4 => self.hoard.clear(),
            _ => drop(black_box(block)),
        }
    }

    /// Recurses some way down the wasm stack (sometimes past its end) and
    /// calls an import at the bottom, on what is left of the native stack.
    /// Under the host's 1 MiB wasm stack a frame here takes ~96 bytes, so
    /// the edge is near 10,900 frames.
    fn deep_then_call(&mut self) {
        let depth = match self.rng.below(10) {
            0..5 => self.rng.between(1_000, 10_500),
            5..8 => self.rng.between(10_500, 11_000),
            _ => self.rng.between(11_000, 40_000),
        };
        let choice = self.rng.below(4);
        let key = self.key();
        let level = self.rng.level();
        let mut bottom = || match choice {
            0 => history::trial_count(),
            1 => history::trials_page(0, u32::MAX).items.len() as u64,
            2 => memory::set(&key, &[1, 2, 3]).map_or(1, |()| 2),
            _ => {
                log::write(level, "at the bottom of the stack");
                4
            }
        };
        let r = descend(depth, &mut bottom);
        self.note(r);
    }

    fn wasi(&mut self) {
        use std::io::{BufRead as _, Write as _};
        match self.rng.below(10) {
            0 => {
                let len = self.rng.size(14);
                println!("{}", self.rng.text(len));
            }
            1 => {
                let len = self.rng.size(14);
                eprintln!("{}", self.rng.text(len));
            }
            2 => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                self.note(now);
            }
            3 => {
                let start = std::time::Instant::now();
                self.note(black_box(start.elapsed().as_nanos() as u64));
            }
            4 => {
                let ms = self.rng.size(24) as u64;
                let start = std::time::Instant::now();
                std::thread::sleep(std::time::Duration::from_millis(ms));
                self.note(start.elapsed().as_millis() as u64);
            }
            5 => {
                // The hasher's keys come from WASI random, seeded by the host.
                let mut map = std::collections::HashMap::new();
                for i in 0..self.rng.size(8) as u64 {
                    map.insert(i, i * 3);
                }
                let order: u64 = map.keys().take(8).fold(0, |a, k| a.rotate_left(7) ^ k);
                self.note(order);
            }
            6 => self.note((std::env::vars().count() + std::env::args().count()) as u64),
            7 => self.note(u64::from(std::fs::read("/etc/passwd").is_ok())),
            8 => {
                // Raw bytes, not UTF-8: lone continuation bytes, 0xFF, a
                // lead byte without its tail.
                let len = self.rng.size(14);
                let bytes: Vec<u8> = (0..len)
                    .map(|i| [0xFF, 0x80, 0xC3, b'x'][(i + len) % 4])
                    .collect();
                let written = if self.rng.chance(50) {
                    std::io::stdout().write_all(&bytes)
                } else {
                    std::io::stderr().write_all(&bytes)
                };
                self.note(u64::from(written.is_ok()));
            }
            _ => {
                let mut line = String::new();
                let read = std::io::stdin().lock().read_line(&mut line);
                self.note(read.map_or(13, |n| n as u64));
            }
        }
    }

    /// A step that ends the call (under the test's limits).
    fn fault(&mut self, step: Step) {
        log::info(&format!("random-guest: fault {step:?}"));
        match step {
            Step::Spin => self.note(spin(self.sum)),
            Step::HugeAlloc => {
                let len = self.rng.between(40 << 20, 1536 << 20) as usize;
                let block = vec![0u8; len];
                self.note(u64::from(black_box(&block)[len - 1]));
            }
            Step::Hoard => loop {
                let mut block = vec![0u8; 1 << 20];
                block[4096] = 1;
                self.hoard.push(black_box(block));
            },
            Step::Dive => self.note(dive(self.sum)),
            Step::Trap => self.trap(),
            Step::CallFlood => match self.rng.below(3) {
                0 => loop {
                    black_box(history::trial_count());
                },
                1 => loop {
                    log::debug("flood");
                },
                _ => loop {
                    black_box(memory::get("calls"));
                },
            },
            Step::BigArgument => {
                let len = self.rng.between(70_000, 4 << 20) as usize;
                let big = self.rng.bulk(len);
                match self.rng.below(4) {
                    0 => log::write(self.rng.level(), &big),
                    1 => drop(memory::set("big", big.as_bytes())),
                    2 => self.note(history::curve(0, &big).len() as u64),
                    _ => {
                        let page = insights::find_page(&InsightQuery::ByTag(big), 0, 10);
                        self.note(page.items.len() as u64);
                    }
                }
            }
            Step::ByteFlood => {
                let len = self.rng.between(20_000, 60_000) as usize;
                let chunk = self.rng.bulk(len);
                let level = self.rng.level();
                loop {
                    log::write(level, &chunk);
                }
            }
            Step::RecordFlood => match self.rng.below(3) {
                0 => loop {
                    black_box(history::trials_page(0, u32::MAX));
                },
                1 => loop {
                    black_box(history::hypotheses_page(0, u32::MAX));
                    black_box(history::trials_page(50, u32::MAX));
                },
                _ => {
                    let value = vec![0x5A; 30_000];
                    for i in 0u64.. {
                        black_box(memory::set(&format!("r{}", i % 4), &value)).ok();
                    }
                }
            },
            Step::Exit => std::process::exit(self.rng.below(256) as i32),
            _ => {}
        }
    }

    /// A trap of one of several kinds.
    fn trap(&mut self) {
        let n = black_box(self.ctx.knobs.len());
        match self.rng.below(7) {
            0 => {
                let v = black_box([1u8; 4]);
                self.note(u64::from(v[n + 10]));
            }
            1 => self.note(black_box(10 + n as u64) / black_box(0u64)),
            2 => self.note(black_box(None::<u64>).expect("random-guest: nothing there")),
            3 => std::process::abort(),
            4 => self.note(wild_read()),
            5 => self.note(u64::from(
                u8::try_from(black_box(300u32) + n as u32).unwrap(),
            )),
            _ => {
                let len = self.rng.size(8);
                panic!("random-guest: deliberate panic {}", self.rng.text(len));
            }
        }
    }
}

/// Reads a word past the end of linear memory: the load traps.
#[allow(unsafe_code)]
fn wild_read() -> u64 {
    let address = black_box(0xFFFF_FFF0usize);
    // SAFETY: none; this is a hostile test guest. In wasm the load traps
    // with an out-of-bounds access, which is what the host must survive.
    unsafe { std::ptr::read_volatile(std::ptr::with_exposed_provenance::<u64>(address)) }
}

fn spin(seed: u64) -> u64 {
    let mut x = seed | 1;
    loop {
        x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
}

/// Recurses without bound on the wasm stack (scalars only, so the frames
/// live on the engine's stack, not in linear memory).
#[allow(unconditional_recursion)]
#[inline(never)]
fn dive(n: u64) -> u64 {
    black_box(dive(black_box(n + 1))).wrapping_add(n)
}

/// Recurses `depth` frames, then calls `bottom`.
#[inline(never)]
fn descend(depth: u64, bottom: &mut dyn FnMut() -> u64) -> u64 {
    if depth == 0 {
        return bottom();
    }
    black_box(descend(black_box(depth - 1), bottom)).wrapping_add(depth)
}

/// The answer: valid, invalid in one of many ways, or too large.
impl Walk<'_> {
    fn answer(&mut self, max: u32) -> Vec<Hypothesis> {
        match self.rng.below(100) {
            0..55 => {
                let count = self.rng.below(u64::from(max) + 1) as usize;
                self.valid(count)
            }
            55..85 => self.invalid(max),
            _ => self.oversized(),
        }
    }

    /// Up to `count` distinct valid hypotheses (fewer when draws collide).
    fn valid(&mut self, count: usize) -> Vec<Hypothesis> {
        let mut out = Vec::new();
        let mut keys = Vec::new();
        for i in 0..count * 3 {
            if out.len() >= count {
                break;
            }
            if let Some(h) = self.hypothesis(i) {
                let key = key(&h);
                if !keys.contains(&key) {
                    keys.push(key);
                    out.push(h);
                }
            }
        }
        out
    }

    /// One valid hypothesis over the context's knobs, if the draw changes
    /// something.
    fn hypothesis(&mut self, i: usize) -> Option<Hypothesis> {
        let ctx = self.ctx;
        let knobs = &ctx.knobs;
        if knobs.is_empty() {
            return None;
        }
        let first = self.rng.index(knobs.len());
        let spec = &knobs[first];
        let value = spec.from_unit(self.rng.unit());
        if value == spec.baseline || !spec.accepts(&value) {
            return None;
        }
        let mut assignments = vec![Assignment {
            knob: spec.name.clone(),
            value,
        }];
        if knobs.len() > 1 && self.rng.chance(30) {
            let second = &knobs[(first + 1 + self.rng.index(knobs.len() - 1)) % knobs.len()];
            let value = second.from_unit(self.rng.unit());
            if second.accepts(&value) {
                assignments.push(Assignment {
                    knob: second.name.clone(),
                    value,
                });
            }
        }
        let parents = if !self.hypotheses.is_empty() && self.rng.chance(30) {
            vec![*self.rng.pick(&self.hypotheses)]
        } else {
            Vec::new()
        };
        let (title, rationale, category) = (self.rng.size(6), self.rng.size(12), self.rng.size(5));
        Some(Hypothesis {
            title: format!("r{i} {}", self.rng.text(title)),
            rationale: self.rng.text(rationale),
            category: self.rng.text(category).replace(['\n', '\t'], " "),
            assignments,
            parents,
        })
    }

    /// A small answer with one thing wrong.
    fn invalid(&mut self, max: u32) -> Vec<Hypothesis> {
        let count = self.rng.between(1, u64::from(max.max(1))) as usize;
        let mut out = self.valid(count);
        let ctx = self.ctx;
        let Some(spec) = ctx.knobs.first() else {
            return vec![Hypothesis::new("no knobs").set("no_such_knob", Value::Flag(true))];
        };
        if out.is_empty() {
            let value = spec.from_unit(if spec.to_unit(&spec.baseline) == Some(0.0) {
                1.0
            } else {
                0.0
            });
            out.push(Hypothesis::new("fallback").set(spec.name.clone(), value));
        }
        let i = self.rng.index(out.len());
        let h = &mut out[i];
        let first = h.assignments[0].clone();
        match self.rng.below(15) {
            0 => {
                let len = self.rng.size(6);
                h.assignments.push(Assignment {
                    knob: format!("no_such_knob_{}", self.rng.text(len)),
                    value: Value::Float(1.0),
                });
            }
            1 => {
                let knob = self.knob(&first.knob);
                h.assignments[0].value = wrong_kind(&knob.kind);
            }
            2 => {
                let x = *self.rng.pick(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY]);
                let float = self
                    .ctx
                    .knobs
                    .iter()
                    .find(|k| matches!(k.kind, KnobKind::Float(_) | KnobKind::LogFloat(_)));
                let name = float.map_or(first.knob.clone(), |k| k.name.clone());
                *h = Hypothesis::new("not a number").set(name, Value::Float(x));
            }
            3 => {
                let knob = self.knob(&first.knob);
                h.assignments[0].value = out_of_range(&knob.kind);
            }
            4 => {
                let extra = out[0].clone();
                while out.len() <= max as usize {
                    out.push(extra.clone());
                }
            }
            5 => h.title = self.rng.pick(&["", " ", "\n\t "]).to_string(),
            6 => h.title = self.rng.dirty(40),
            7 => {
                let len = self.rng.between(1_025, 8_000) as usize;
                h.title = self.rng.bulk(len);
            }
            8 => {
                let len = self.rng.between(129, 2_000) as usize;
                h.category = self.rng.bulk(len);
            }
            9 => h.rationale = self.rng.dirty(200),
            10 => {
                let knob = self.knob(&first.knob);
                h.assignments = vec![Assignment {
                    knob: knob.name.clone(),
                    value: knob.baseline.clone(),
                }];
            }
            11 => {
                let mut twin = h.clone();
                twin.title.push_str(" (again)");
                out.push(twin);
            }
            12 => h.assignments.push(first),
            13 => h.parents.push(u64::MAX - self.rng.below(1_000)),
            _ => h.assignments.clear(),
        }
        out
    }

    fn knob(&self, name: &str) -> &reagent_sdk::KnobSpec {
        let knobs = &self.ctx.knobs;
        knobs.iter().find(|k| k.name == name).unwrap_or(&knobs[0])
    }

    /// An answer past any sensible output limit.
    fn oversized(&mut self) -> Vec<Hypothesis> {
        let name = self
            .ctx
            .knobs
            .first()
            .map_or("lr".to_string(), |k| k.name.clone());
        match self.rng.below(3) {
            0 => {
                let len = self.rng.between(70_000, 4 << 20) as usize;
                vec![
                    Hypothesis::new("long")
                        .because(self.rng.bulk(len))
                        .set(name, Value::Float(0.1)),
                ]
            }
            1 => (0..self.rng.between(2_000, 8_000))
                .map(|i| {
                    Hypothesis::new(format!("many {i}")).set(name.clone(), Value::Int(i as i64))
                })
                .collect(),
            _ => {
                let len = self.rng.between(70_000, 1 << 20) as usize;
                vec![Hypothesis::new("long choice").set(name, Value::Choice(self.rng.bulk(len)))]
            }
        }
    }
}

/// The host's duplicate key: sorted `knob=value` pairs.
fn key(h: &Hypothesis) -> String {
    let mut parts: Vec<String> = h
        .assignments
        .iter()
        .map(|a| format!("{}={}", a.knob, a.value.render()))
        .collect();
    parts.sort();
    parts.join(",")
}

/// A value of the wrong kind for `kind`.
fn wrong_kind(kind: &KnobKind) -> Value {
    match kind {
        KnobKind::Float(_) | KnobKind::LogFloat(_) => Value::Choice("fast".into()),
        KnobKind::Int(_) => Value::Float(1.5),
        KnobKind::Categorical(_) => Value::Int(3),
        KnobKind::Flag => Value::Float(0.0),
    }
}

/// A value of the right kind outside the knob's space.
fn out_of_range(kind: &KnobKind) -> Value {
    match kind {
        KnobKind::Float(r) | KnobKind::LogFloat(r) => Value::Float(r.high * 2.0 + 1e9),
        KnobKind::Int(r) => Value::Int(r.high.saturating_add(1_000_000)),
        KnobKind::Categorical(_) => Value::Choice("not-one-of-the-choices".into()),
        KnobKind::Flag => Value::Int(2),
    }
}

struct Random;

impl Generator for Random {
    fn propose(ctx: &Context, max: u32) -> Vec<Hypothesis> {
        let mut rng = Mix(seed(ctx));
        let steps = rng.between(1, 40);
        let mut walk = Walk {
            rng,
            ctx,
            hoard: Vec::new(),
            hypotheses: Vec::new(),
            trials: Vec::new(),
            sum: 0,
        };
        for _ in 0..steps {
            walk.step();
        }
        log::debug(&format!("random-guest: sum {:016x}", walk.sum));
        let mut answer = walk.answer(max);
        if let Some(h) = answer.first_mut() {
            h.rationale.push_str(&format!(" [{:016x}]", walk.sum));
        }
        answer
    }
}

reagent_sdk::export_generator!(Random);
