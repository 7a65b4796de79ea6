//! Reading the metrics a job reports: JSON lines written to the file named by
//! `$REAGENT_METRICS`, or a regex over its output; and spotting a diverging
//! run (NaN/inf, loss explosion) while it is still running.
//!
//! Job output is untrusted input: nothing here panics on it, every unreadable
//! line becomes an error entry naming its line number, and the number of
//! entries is capped.
//!
//! JSON lines: each line is one JSON object. Numeric fields are metrics;
//! `step` (or, failing that, `epoch`) gives the step, else the line's index
//! among metric lines; other fields are ignored. Python's `json.dumps` writes
//! bare `NaN`, `Infinity` and `-Infinity`, so those are accepted too.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use lenient_json::{ErrorKind, Json};

/// At most this many error entries are kept per source.
pub const MAX_METRICS_ERRORS: usize = 20;
/// A JSON line longer than this is reported as an error and skipped.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Nesting deeper than this inside a metrics line is reported as an error.
const MAX_DEPTH: usize = 64;
/// Loss explosion: a loss above both this and `EXPLOSION_FACTOR` times its
/// first reported value (in magnitude).
pub const EXPLOSION_FLOOR: f64 = 10.0;
pub const EXPLOSION_FACTOR: f64 = 100.0;
/// A metric whose name is longer than this (bytes) is dropped.
pub const MAX_METRIC_NAME_BYTES: usize = 128;
/// At most this many distinct metrics are kept per job; later names are
/// dropped.
pub const MAX_METRICS: usize = 256;
/// At most this many points are kept per curve; past it the last point is
/// replaced, so the curve still ends at the final value.
pub const MAX_POINTS_PER_CURVE: usize = 10_000;

/// One reported value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub metric: String,
    pub step: u32,
    pub value: f64,
}

/// Everything a job reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Last reported value of each metric.
    pub finals: BTreeMap<String, f64>,
    /// Every reported (step, value), in report order.
    pub curves: BTreeMap<String, Vec<(u32, f64)>>,
    /// Unreadable lines (`line N: …`) and other problems, capped.
    pub errors: Vec<String>,
    /// What the caps dropped.
    pub capped: Capped,
}

/// Counts of what [`Metrics::push`] dropped at the caps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capped {
    pub long_names: usize,
    pub extra_metrics: usize,
    pub extra_points: usize,
}

impl Metrics {
    /// Records a point, within the caps: names up to
    /// [`MAX_METRIC_NAME_BYTES`], [`MAX_METRICS`] distinct metrics,
    /// [`MAX_POINTS_PER_CURVE`] points per curve.
    pub fn push(&mut self, p: Point) {
        if p.metric.len() > MAX_METRIC_NAME_BYTES {
            self.capped.long_names += 1;
            return;
        }
        if !self.finals.contains_key(&p.metric) && self.finals.len() >= MAX_METRICS {
            self.capped.extra_metrics += 1;
            return;
        }
        self.finals.insert(p.metric.clone(), p.value);
        let curve = self.curves.entry(p.metric).or_default();
        if curve.len() >= MAX_POINTS_PER_CURVE {
            self.capped.extra_points += 1;
            if let Some(last) = curve.last_mut() {
                *last = (p.step, p.value);
            }
        } else {
            curve.push((p.step, p.value));
        }
    }

    /// One note per cap that dropped something, for the outcome.
    pub fn cap_notes(&self) -> Vec<String> {
        let c = self.capped;
        let mut out = Vec::new();
        if c.long_names > 0 {
            out.push(format!(
                "metrics capped: {} values of metrics with names longer than {MAX_METRIC_NAME_BYTES} bytes dropped",
                c.long_names
            ));
        }
        if c.extra_metrics > 0 {
            out.push(format!(
                "metrics capped: more than {MAX_METRICS} distinct metrics; {} values of the others dropped",
                c.extra_metrics
            ));
        }
        if c.extra_points > 0 {
            out.push(format!(
                "metrics capped: curves keep at most {MAX_POINTS_PER_CURVE} points; {} intermediate points dropped",
                c.extra_points
            ));
        }
        out
    }
}

/// Opens a file the job may have placed for reading: never through a
/// symlink, never blocking on a FIFO, and only a regular file.
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// A capped list of error messages that remembers how many it dropped.
#[derive(Debug, Clone, Default)]
struct ErrorLog {
    kept: Vec<String>,
    dropped: usize,
}

impl ErrorLog {
    fn push(&mut self, msg: String) {
        if self.kept.len() < MAX_METRICS_ERRORS {
            self.kept.push(msg);
        } else {
            self.dropped += 1;
        }
    }

    /// At most `MAX_METRICS_ERRORS` entries; when some were dropped the last
    /// entry says how many.
    fn entries(&self) -> Vec<String> {
        let mut out = self.kept.clone();
        if self.dropped > 0 {
            out.truncate(MAX_METRICS_ERRORS - 1);
            let more = self.dropped + self.kept.len() - out.len();
            out.push(format!("… and {more} more errors"));
        }
        out
    }
}

// ------------------------------------------------------------------ jsonl

/// Incremental JSON-lines reader: feed it bytes as they are appended to the
/// file; it returns the points of every complete line. A trailing line
/// without its newline is held back until more bytes come or [`finish`].
///
/// [`finish`]: JsonlReader::finish
#[derive(Debug, Clone, Default)]
pub struct JsonlReader {
    partial: Vec<u8>,
    /// The current line is longer than `MAX_LINE_BYTES`: drop it.
    overlong: bool,
    /// Physical lines consumed so far (1-based numbering for messages).
    lines: usize,
    /// Lines that reported at least one metric (the default step).
    metric_lines: u32,
    errors: ErrorLog,
}

impl JsonlReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the complete lines in `bytes` (plus what was held back).
    pub fn feed(&mut self, mut bytes: &[u8]) -> Vec<Point> {
        let mut out = Vec::new();
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            self.take_piece(&bytes[..nl]);
            self.end_line(&mut out);
            bytes = &bytes[nl + 1..];
        }
        self.take_piece(bytes);
        out
    }

    /// The end of the file: reads a last line that has no newline.
    pub fn finish(&mut self) -> Vec<Point> {
        let mut out = Vec::new();
        if !self.partial.is_empty() || self.overlong {
            self.end_line(&mut out);
        }
        out
    }

    /// Errors so far (capped).
    pub fn errors(&self) -> Vec<String> {
        self.errors.entries()
    }

    fn take_piece(&mut self, piece: &[u8]) {
        if self.overlong {
            return;
        }
        if self.partial.len() + piece.len() > MAX_LINE_BYTES {
            self.overlong = true;
            self.partial = Vec::new();
        } else {
            self.partial.extend_from_slice(piece);
        }
    }

    fn end_line(&mut self, out: &mut Vec<Point>) {
        self.lines += 1;
        let n = self.lines;
        let line = std::mem::take(&mut self.partial);
        if std::mem::replace(&mut self.overlong, false) {
            self.errors.push(format!(
                "line {n}: longer than {MAX_LINE_BYTES} bytes; skipped"
            ));
            return;
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            self.errors.push(format!("line {n}: not valid UTF-8"));
            return;
        };
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let fields = match parse_object(text) {
            Ok(f) => f,
            Err(e) => {
                self.errors.push(format!("line {n}: {e}"));
                return;
            }
        };
        let mut step = None;
        let mut epoch = None;
        let mut values: Vec<(String, f64)> = Vec::new();
        for (key, value) in fields {
            let Json::Number(v) = value else { continue };
            match key.as_str() {
                "step" => step = Some(v),
                "epoch" => epoch = Some(v),
                _ => match values.iter_mut().find(|(k, _)| *k == key) {
                    // A repeated key: the last one wins, as in Python.
                    Some(slot) => slot.1 = v,
                    None => values.push((key, v)),
                },
            }
        }
        if values.is_empty() {
            return;
        }
        let index = self.metric_lines;
        self.metric_lines = self.metric_lines.saturating_add(1);
        let step = match step.map(|s| ("step", s)).or(epoch.map(|e| ("epoch", e))) {
            None => index,
            Some((name, s)) => match as_step(s) {
                Some(s) => s,
                None => {
                    self.errors.push(format!(
                        "line {n}: `{name}` is {}, not a step (a whole number from 0 to {}); using {index}",
                        show(s),
                        u32::MAX
                    ));
                    index
                }
            },
        };
        out.extend(values.into_iter().map(|(metric, value)| Point {
            metric,
            step,
            value,
        }));
    }
}

fn as_step(v: f64) -> Option<u32> {
    (v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= f64::from(u32::MAX)).then_some(v as u32)
}

/// Parses a whole JSON-lines text.
pub fn parse_jsonl(bytes: &[u8]) -> Metrics {
    let mut reader = JsonlReader::new();
    let mut m = Metrics::default();
    for p in reader.feed(bytes).into_iter().chain(reader.finish()) {
        m.push(p);
    }
    m.errors = reader.errors();
    m
}

/// Reads a JSON-lines file in chunks. A missing file is no metrics and no
/// error (the job may report none); an unreadable one is an error entry.
pub fn read_jsonl_file(path: &Path) -> Metrics {
    let mut m = Metrics::default();
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut file = match open_regular(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return m,
        Err(e) => {
            m.errors.push(format!("{name}: {e}"));
            return m;
        }
    };
    let mut reader = JsonlReader::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reader.feed(&buf[..n]).into_iter().for_each(|p| m.push(p)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                reader.errors.push(format!("{name}: {e}"));
                break;
            }
        }
    }
    reader.finish().into_iter().for_each(|p| m.push(p));
    m.errors = reader.errors();
    m
}

// ------------------------------------------------------------------ regex

/// Applies `pattern` to each text in turn (stdout, then stderr): every match
/// of every named group is a point, its step the group's match count so far;
/// the last match wins as the final value.
pub fn parse_regex(pattern: &str, texts: &[&str]) -> Metrics {
    parse_regex_named(pattern, &BTreeMap::new(), texts)
}

/// [`parse_regex`], reporting group `g` as metric `renames[g]` when listed.
pub fn parse_regex_named(
    pattern: &str,
    renames: &BTreeMap<String, String>,
    texts: &[&str],
) -> Metrics {
    let mut m = Metrics::default();
    let mut errors = ErrorLog::default();
    let re = match regex::Regex::new(pattern) {
        Ok(re) => re,
        Err(e) => {
            m.errors.push(format!("metrics regex {pattern:?}: {e}"));
            return m;
        }
    };
    let names: Vec<&str> = re.capture_names().flatten().collect();
    if names.is_empty() {
        m.errors.push(format!(
            "metrics regex {pattern:?} has no named groups, e.g. (?P<loss>[0-9.eE+-]+)"
        ));
        return m;
    }
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for text in texts {
        for caps in re.captures_iter(text) {
            for &name in &names {
                let Some(g) = caps.name(name) else { continue };
                match parse_number(g.as_str()) {
                    Some(value) => {
                        let step = counts.entry(name).or_insert(0);
                        m.push(Point {
                            metric: renames.get(name).map_or(name, String::as_str).to_string(),
                            step: *step,
                            value,
                        });
                        *step = step.saturating_add(1);
                    }
                    None => errors.push(format!(
                        "metrics regex group `{name}` matched {:?}, which is not a number",
                        truncate(g.as_str(), 40)
                    )),
                }
            }
        }
    }
    m.errors = errors.entries();
    m
}

/// A number as a regex captured it: decimal, `nan`, `inf`, `infinity`, any
/// case, optional sign.
fn parse_number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok()
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

// ------------------------------------------------------------- early stop

/// Spots a diverging run from its points as they arrive.
#[derive(Debug, Clone, Default)]
pub struct EarlyStop {
    first: BTreeMap<String, f64>,
}

impl EarlyStop {
    pub fn new() -> Self {
        Self::default()
    }

    /// The reason to stop the job, if this point is one.
    ///
    /// A NaN or infinite value stops it; so does a metric whose name contains
    /// `loss` rising above both `EXPLOSION_FLOOR` and `EXPLOSION_FACTOR` times
    /// its first value. `*_stderr` metrics (evaluation noise, which may be
    /// undefined for tiny sets) never stop a job.
    pub fn check(&mut self, p: &Point) -> Option<String> {
        if p.metric.ends_with("_stderr") || p.metric.len() > MAX_METRIC_NAME_BYTES {
            return None;
        }
        if !p.value.is_finite() {
            return Some(format!(
                "metric `{}` is {} at step {}",
                p.metric,
                show(p.value),
                p.step
            ));
        }
        if p.metric.contains("loss") {
            match self.first.get(&p.metric) {
                // Bounded like the metrics kept.
                None if self.first.len() >= MAX_METRICS => {}
                None => {
                    self.first.insert(p.metric.clone(), p.value);
                }
                Some(&first) => {
                    if p.value > EXPLOSION_FLOOR && p.value > EXPLOSION_FACTOR * first.abs() {
                        return Some(format!(
                            "metric `{}` exploded: {} → {} at step {}",
                            p.metric,
                            show(first),
                            show(p.value),
                            p.step
                        ));
                    }
                }
            }
        }
        None
    }
}

fn show(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "inf".into()
    } else if v == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        format!("{v}")
    }
}

/// Tails a growing JSON-lines file for the early-stop check: each [`poll`]
/// reads only the bytes appended since the last one.
///
/// [`poll`]: MetricsTail::poll
#[derive(Debug, Clone)]
pub struct MetricsTail {
    path: PathBuf,
    offset: u64,
    reader: JsonlReader,
    stop: EarlyStop,
}

impl MetricsTail {
    pub fn new(path: PathBuf) -> Self {
        MetricsTail {
            path,
            offset: 0,
            reader: JsonlReader::new(),
            stop: EarlyStop::new(),
        }
    }

    /// Reads what was appended and returns the first reason to stop, if any.
    /// A missing file is nothing new; a file that shrank (rewritten) is read
    /// again from the start.
    pub fn poll(&mut self) -> Option<String> {
        let mut file = open_regular(&self.path).ok()?;
        let len = file.metadata().ok()?.len();
        if len < self.offset {
            self.offset = 0;
            self.reader = JsonlReader::new();
            self.stop = EarlyStop::new();
        }
        if len == self.offset {
            return None;
        }
        file.seek(SeekFrom::Start(self.offset)).ok()?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut reason = None;
        // Read at most what was there when we looked; later bytes wait for
        // the next poll.
        let mut left = len - self.offset;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            self.offset += n as u64;
            left -= n as u64;
            for p in self.reader.feed(&buf[..n]) {
                if reason.is_none() {
                    reason = self.stop.check(&p);
                }
            }
            if reason.is_some() {
                break;
            }
        }
        reason
    }
}

// ------------------------------------------------- reading one JSON line

/// Parses one JSON object (allowing `NaN`, `Infinity`, `-Infinity`, and the
/// other slips [`lenient_json`] takes) into its top-level fields, in order.
fn parse_object(text: &str) -> Result<Vec<(String, Json)>, String> {
    if !text
        .trim_start_matches([' ', '\t', '\r', '\n'])
        .starts_with('{')
    {
        return Err(format!(
            "not a JSON object (starts with {})",
            describe(text.chars().next())
        ));
    }
    match lenient_json::parse(text, MAX_DEPTH) {
        Ok(Json::Object(fields)) => Ok(fields),
        // It starts with `{`, so it is an object.
        Ok(other) => Err(format!("not a JSON object ({})", other.kind())),
        Err(e) => Err(describe_error(text, &e)),
    }
}

/// `e` in the words of a metrics line: columns count from 1.
fn describe_error(text: &str, e: &lenient_json::Error) -> String {
    let column = e.at + 1;
    let expected = |wanted: &str| {
        let found = text.get(e.at..).and_then(|rest| rest.chars().next());
        match found {
            Some(c) => format!("expected {wanted} at column {column}, found {c:?}"),
            None => format!("expected {wanted} at column {column}, found the end of the line"),
        }
    };
    match &e.kind {
        ErrorKind::Expected(wanted) => expected(wanted),
        ErrorKind::TrailingText => expected("the end of the line"),
        ErrorKind::TooDeep { max_depth } => {
            format!("nested deeper than {max_depth} at column {column}")
        }
        ErrorKind::UnterminatedString => format!("string opened at column {column} never closes"),
    }
}

fn describe(c: Option<char>) -> String {
    match c {
        Some(c) => format!("{c:?}"),
        None => "nothing".into(),
    }
}

#[cfg(test)]
mod tests;
