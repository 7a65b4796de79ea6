//! Reading LETOR / SVMlight ranking files (`label qid:N i:v … # comment`)
//! into a compact in-memory [`Dataset`], and finding the train / valid /
//! test files of a data directory.
//!
//! The same reader serves the synthetic data of `gen-data` and public sets
//! such as MSLR-WEB10K, Yahoo! LTR and Istella. Features are numbered as in
//! the file; those named categorical (by the directory's `meta.json` or by
//! `--categorical`) hold integer ids that the trainer hashes into embedding
//! buckets, all others are dense. A feature missing from a line is 0 (dense)
//! or "missing" (categorical).

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The id stored for a categorical feature that a line does not mention.
pub const MISSING_ID: i64 = i64::MIN;

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub label: f32,
    pub qid: u64,
    /// (feature index, value) in file order; non-finite values are kept.
    pub features: Vec<(u32, f64)>,
}

/// Parses one line. `Ok(None)` for blank and comment-only lines. The error
/// does not name the line; [`read_file`] adds file and line number.
pub fn parse_line(text: &str) -> Result<Option<Line>, String> {
    let body = match text.find('#') {
        Some(at) => &text[..at],
        None => text,
    };
    let mut tokens = body.split_whitespace();
    let Some(first) = tokens.next() else {
        return Ok(None);
    };
    let label: f32 = first
        .parse()
        .ok()
        .filter(|l: &f32| l.is_finite())
        .ok_or_else(|| format!("bad label '{first}'"))?;
    let mut qid = None;
    let mut features = Vec::new();
    for tok in tokens {
        let Some((key, value)) = tok.split_once(':') else {
            return Err(format!("bad feature '{tok}' (expected index:value)"));
        };
        if key == "qid" {
            if qid.is_some() {
                return Err("qid given twice".into());
            }
            qid = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| format!("bad qid '{value}'"))?,
            );
            continue;
        }
        let index: u32 = key
            .parse()
            .map_err(|_| format!("bad feature index '{key}' in '{tok}'"))?;
        let value: f64 = value
            .parse()
            .map_err(|_| format!("bad feature value '{value}' in '{tok}'"))?;
        features.push((index, value));
    }
    let qid = qid.ok_or_else(|| "missing qid (every line needs qid:N)".to_string())?;
    Ok(Some(Line {
        label,
        qid,
        features,
    }))
}

/// Rows of one split, grouped by query: rows of a query are contiguous and
/// `groups` lists their ranges in order of first appearance.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub labels: Vec<f32>,
    pub qids: Vec<u64>,
    pub groups: Vec<Range<usize>>,
    /// Number of dense columns; `dense` is row-major `rows × n_dense`.
    pub n_dense: usize,
    pub dense: Vec<f32>,
    /// Number of categorical fields; `cat` is row-major `rows × n_cat` ids.
    pub n_cat: usize,
    pub cat: Vec<i64>,
    /// Feature index of each dense column.
    pub dense_features: Vec<u32>,
}

impl Dataset {
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    pub fn dense_row(&self, r: usize) -> &[f32] {
        &self.dense[r * self.n_dense..(r + 1) * self.n_dense]
    }

    pub fn cat_row(&self, r: usize) -> &[i64] {
        &self.cat[r * self.n_cat..(r + 1) * self.n_cat]
    }

    /// Labels as clicks: label > 0.
    pub fn clicks(&self) -> Vec<f32> {
        self.labels
            .iter()
            .map(|&l| if l > 0.0 { 1.0 } else { 0.0 })
            .collect()
    }
}

/// Reads LETOR text into rows. Dense values are stored by feature index
/// (`0..=max index`, grown as needed); [`finish_columns`] later keeps the
/// columns the training split uses.
struct Builder {
    categorical: Vec<u32>,
    cat_slot: HashMap<u32, usize>,
    width: usize,
    dense: Vec<f32>,
    cat: Vec<i64>,
    labels: Vec<f32>,
    qids: Vec<u64>,
    seen: Vec<bool>,
}

impl Builder {
    fn new(categorical: &[u32]) -> Self {
        Builder {
            categorical: categorical.to_vec(),
            cat_slot: categorical
                .iter()
                .enumerate()
                .map(|(slot, &f)| (f, slot))
                .collect(),
            width: 0,
            dense: Vec::new(),
            cat: Vec::new(),
            labels: Vec::new(),
            qids: Vec::new(),
            seen: Vec::new(),
        }
    }

    fn grow(&mut self, width: usize) {
        let rows = self.labels.len();
        let mut dense = vec![0.0f32; rows * width];
        for r in 0..rows {
            dense[r * width..r * width + self.width]
                .copy_from_slice(&self.dense[r * self.width..(r + 1) * self.width]);
        }
        self.dense = dense;
        self.width = width;
        self.seen.resize(width, false);
    }

    fn push(&mut self, line: &Line) -> Result<(), String> {
        let needed = line
            .features
            .iter()
            .filter(|(i, _)| !self.cat_slot.contains_key(i))
            .map(|&(i, _)| i as usize + 1)
            .max()
            .unwrap_or(0);
        if needed > self.width {
            // Grow geometrically so a file with rising indices stays linear.
            self.grow(needed.max(self.width + self.width / 2));
        }
        let base = self.dense.len();
        self.dense.resize(base + self.width, 0.0);
        let cat_base = self.cat.len();
        self.cat
            .resize(cat_base + self.categorical.len(), MISSING_ID);
        for &(index, value) in &line.features {
            if let Some(&slot) = self.cat_slot.get(&index) {
                if !value.is_finite() || value.fract() != 0.0 {
                    return Err(format!(
                        "categorical feature {index} needs an integer id, got '{value}'"
                    ));
                }
                self.cat[cat_base + slot] = value as i64;
            } else if value.is_finite() {
                self.dense[base + index as usize] = value as f32;
                self.seen[index as usize] = true;
            }
        }
        self.labels.push(line.label);
        self.qids.push(line.qid);
        Ok(())
    }

    /// Groups rows by qid (contiguous, in order of first appearance).
    fn finish(self) -> Dataset {
        let rows = self.labels.len();
        let mut group_of: HashMap<u64, usize> = HashMap::new();
        let mut row_group = Vec::with_capacity(rows);
        for &q in &self.qids {
            let next = group_of.len();
            row_group.push(*group_of.entry(q).or_insert(next));
        }
        let n_cat = self.categorical.len();
        let width = self.width;
        let mut out = Dataset {
            n_dense: width,
            n_cat,
            dense_features: (0..width as u32).collect(),
            ..Dataset::default()
        };
        if row_group.windows(2).any(|w| w[1] < w[0]) {
            // A query's lines are scattered: reorder rows by query.
            let mut order: Vec<usize> = (0..rows).collect();
            order.sort_by_key(|&r| row_group[r]);
            out.labels.reserve(rows);
            out.dense.reserve(rows * width);
            out.cat.reserve(rows * n_cat);
            for &r in &order {
                out.labels.push(self.labels[r]);
                out.qids.push(self.qids[r]);
                out.dense
                    .extend_from_slice(&self.dense[r * width..(r + 1) * width]);
                out.cat
                    .extend_from_slice(&self.cat[r * n_cat..(r + 1) * n_cat]);
            }
            row_group = order.iter().map(|&r| row_group[r]).collect();
        } else {
            out.labels = self.labels;
            out.qids = self.qids;
            out.dense = self.dense;
            out.cat = self.cat;
        }
        let mut start = 0;
        for k in 1..rows {
            if row_group[k] != row_group[k - 1] {
                out.groups.push(start..k);
                start = k;
            }
        }
        if rows > 0 {
            out.groups.push(start..rows);
        }
        out
    }
}

/// Parses LETOR text from a reader; `name` is used in error messages.
pub fn read<R: BufRead>(
    reader: R,
    name: &str,
    categorical: &[u32],
) -> Result<(Dataset, Vec<bool>)> {
    let mut b = Builder::new(categorical);
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{name}:{}: cannot read line", n + 1))?;
        match parse_line(&line) {
            Ok(None) => {}
            Ok(Some(parsed)) => b
                .push(&parsed)
                .map_err(|e| anyhow::anyhow!("{name}:{}: {e}", n + 1))?,
            Err(e) => bail!("{name}:{}: {e}", n + 1),
        }
    }
    let mut seen = std::mem::take(&mut b.seen);
    seen.resize(b.width, false);
    Ok((b.finish(), seen))
}

/// Parses one LETOR file.
pub fn read_file(path: &Path, categorical: &[u32]) -> Result<(Dataset, Vec<bool>)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    read(
        BufReader::new(file),
        &path.display().to_string(),
        categorical,
    )
}

/// Keeps the dense columns the training split has values for, in feature
/// order, in every split (columns are matched by feature index).
pub fn finish_columns(splits: &mut [&mut Dataset], train_seen: &[bool]) {
    let keep: Vec<u32> = train_seen
        .iter()
        .enumerate()
        .filter(|(_, s)| **s)
        .map(|(i, _)| i as u32)
        .collect();
    for ds in splits.iter_mut() {
        let rows = ds.rows();
        let width = ds.n_dense;
        let mut dense = Vec::with_capacity(rows * keep.len());
        for r in 0..rows {
            let row = &ds.dense[r * width..(r + 1) * width];
            dense.extend(
                keep.iter()
                    .map(|&i| row.get(i as usize).copied().unwrap_or(0.0)),
            );
        }
        ds.dense = dense;
        ds.n_dense = keep.len();
        ds.dense_features = keep.clone();
    }
}

/// The train / valid / test files of a data directory.
#[derive(Debug, Clone)]
pub struct SplitFiles {
    pub train: PathBuf,
    pub valid: PathBuf,
    pub test: Option<PathBuf>,
}

const TRAIN_NAMES: &[&str] = &["train.txt", "train.svm", "train.letor", "train"];
const VALID_NAMES: &[&str] = &[
    "vali.txt",
    "valid.txt",
    "validation.txt",
    "val.txt",
    "vali.svm",
    "valid.svm",
    "vali",
    "valid",
];
const TEST_NAMES: &[&str] = &["test.txt", "test.svm", "test.letor", "test"];

fn is_data_file(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !lower.ends_with(".json")
        && !lower.ends_with(".gz")
        && !lower.ends_with(".zip")
        && !lower.ends_with(".md")
        && !lower.starts_with('.')
}

/// Finds a split file: an exact conventional name first, else the only
/// data file whose name contains one of `keys` (e.g. `set1.train.txt`).
fn find_split(dir: &Path, names: &[&str], keys: &[&str], what: &str) -> Result<Option<PathBuf>> {
    for n in names {
        let p = dir.join(n);
        if p.is_file() {
            return Ok(Some(p));
        }
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        let lower = name.to_ascii_lowercase();
        if entry.path().is_file() && is_data_file(&name) && keys.iter().any(|k| lower.contains(k)) {
            found.push(entry.path());
        }
    }
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => bail!(
            "{}: several candidate {what} files: {}",
            dir.display(),
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Locates train (required), valid (required) and test (optional) files.
pub fn find_splits(dir: &Path) -> Result<SplitFiles> {
    if !dir.is_dir() {
        bail!("data directory {} does not exist", dir.display());
    }
    let train = find_split(dir, TRAIN_NAMES, &["train"], "training")?
        .with_context(|| format!("{}: no training file (train.txt)", dir.display()))?;
    let valid = find_split(dir, VALID_NAMES, &["vali", "valid", "dev"], "validation")?
        .with_context(|| {
            format!(
                "{}: no validation file (vali.txt or valid.txt)",
                dir.display()
            )
        })?;
    let test = find_split(dir, TEST_NAMES, &["test"], "test")?;
    Ok(SplitFiles { train, valid, test })
}

/// The optional sidecar `meta.json` that `gen-data` writes.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// Feature indices holding categorical ids.
    #[serde(default)]
    pub categorical: Vec<u32>,
    /// Human-readable names by feature index (informational).
    #[serde(default)]
    pub feature_names: std::collections::BTreeMap<String, String>,
    /// Anything else the writer recorded (informational).
    #[serde(default, flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Reads `DIR/meta.json` if present.
pub fn read_meta(dir: &Path) -> Result<Option<Meta>> {
    let p = dir.join("meta.json");
    if !p.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    let meta = serde_json::from_str(&text).with_context(|| format!("bad {}", p.display()))?;
    Ok(Some(meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_graded_labels_comments_and_blank_lines() {
        let text = "\
# a header comment
2 qid:10 1:0.5 3:-1.25 # docid = 7
0 qid:10 2:4

4.0 qid:11 1:1e-3 7:2 #
1 qid:12
";
        let (ds, seen) = read(text.as_bytes(), "t.txt", &[7]).unwrap();
        assert_eq!(ds.labels, vec![2.0, 0.0, 4.0, 1.0]);
        assert_eq!(ds.qids, vec![10, 10, 11, 12]);
        assert_eq!(ds.groups, vec![0..2, 2..3, 3..4]);
        // Feature 7 is categorical: no dense column for it.
        assert!(!seen.get(7).copied().unwrap_or(false));
        assert_eq!(ds.n_cat, 1);
        assert_eq!(ds.cat, vec![MISSING_ID, MISSING_ID, 2, MISSING_ID]);
        // Missing dense features are 0.
        assert_eq!(ds.dense_row(0)[1], 0.5);
        assert_eq!(ds.dense_row(0)[2], 0.0);
        assert_eq!(ds.dense_row(0)[3], -1.25);
        assert_eq!(ds.dense_row(1)[2], 4.0);
        assert_eq!(ds.dense_row(3).iter().sum::<f32>(), 0.0);
        assert_eq!(ds.clicks(), vec![1.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn malformed_line_names_its_line_number() {
        let text = "1 qid:1 1:0.5\n0 qid:1 2:0.1\n1 qid:2 3:abc\n";
        let err = read(text.as_bytes(), "train.txt", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.txt:3"), "{err}");
        assert!(err.contains("abc"), "{err}");

        let err = read("1 1:2\n".as_bytes(), "x", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("x:1") && err.contains("qid"), "{err}");
        let err = read("\n\nfoo qid:1\n".as_bytes(), "x", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("x:3") && err.contains("label"), "{err}");
        let err = read("1 qid:1 5\n".as_bytes(), "x", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("x:1") && err.contains("'5'"), "{err}");
    }

    #[test]
    fn non_contiguous_queries_are_regrouped() {
        let text = "1 qid:5 1:1\n0 qid:6 1:2\n0 qid:5 1:3\n";
        let (ds, _) = read(text.as_bytes(), "t", &[]).unwrap();
        assert_eq!(ds.qids, vec![5, 5, 6]);
        assert_eq!(ds.groups, vec![0..2, 2..3]);
        assert_eq!(ds.dense_row(1)[1], 3.0);
    }

    #[test]
    fn columns_follow_the_training_split() {
        let (mut train, seen) = read("1 qid:1 2:1 4:2\n".as_bytes(), "a", &[]).unwrap();
        let (mut valid, _) = read("0 qid:2 1:9 2:3 9:1\n".as_bytes(), "b", &[]).unwrap();
        finish_columns(&mut [&mut train, &mut valid], &seen);
        assert_eq!(train.dense_features, vec![2, 4]);
        assert_eq!(train.dense, vec![1.0, 2.0]);
        assert_eq!(valid.dense, vec![3.0, 0.0]);
    }
}
