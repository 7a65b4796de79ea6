//! The workspace database: the only module that touches redb.
//!
//! One file per workspace, opened by one process at a time (redb's lock).
//! Every state change is one write transaction that appends its events to
//! the hash-chained log and updates the derived tables together, committed
//! with `Durability::Immediate`.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::records::approval::ApprovalRow;
use crate::records::campaign::{CampaignRow, Event, EventBody, HypothesisRow, TrialRow};
use crate::records::insight::InsightRecord;
use crate::strategy::data::MemoryStore;

/// The schema this binary reads and writes. 2: a call record may name
/// shared chunks of history (store/calls.rs), which a binary of schema 1
/// cannot read; a schema-1 database becomes 2 with its first such record.
pub const SCHEMA_VERSION: u32 = 2;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const CAMPAIGNS: TableDefinition<u64, &[u8]> = TableDefinition::new("campaigns");
const HYPOTHESES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("hypotheses");
const TRIALS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("trials");
const CURVES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("curves");
const MEMORY: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("strategy_memory");
const CALLS: TableDefinition<u64, &[u8]> = TableDefinition::new("strategy_calls");
const APPROVALS: TableDefinition<u64, &[u8]> = TableDefinition::new("approvals");
/// Insight records in the order they arrived (recorded or imported), so the
/// newest are a cheap range; `insight_ids` maps a record's id to its place.
const INSIGHTS: TableDefinition<u64, &[u8]> = TableDefinition::new("insights");
const INSIGHT_IDS: TableDefinition<&str, u64> = TableDefinition::new("insight_ids");

/// Why the store could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the workspace database {path} is in use by another reagent process")]
    Busy { path: String },
    #[error(
        "the workspace database {path} was written by a newer reagent (schema {found}); this binary reads schema {SCHEMA_VERSION}: upgrade reagent"
    )]
    Newer { path: String, found: u32 },
    #[error(
        "the workspace database {path} is damaged or not a reagent database: {message}\nNothing was changed. Restore it from a backup, or move it aside and run `reagent init`."
    )]
    Corrupt { path: String, message: String },
    #[error("cannot open the workspace database {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub use crate::time::now_ms;

fn to_bytes<T: Serialize>(value: &T) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

fn from_bytes<T: DeserializeOwned>(bytes: &[u8], what: &str) -> anyhow::Result<T> {
    serde_json::from_slice(bytes).map_err(|e| anyhow::anyhow!("unreadable {what} row: {e}"))
}

/// The hash of one event given its predecessor's hash, over the exact
/// bytes of its body as stored.
pub fn event_hash(
    prev_hash: &str,
    seq: u64,
    at_ms: u64,
    campaign: Option<u64>,
    body: &[u8],
) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(seq.to_le_bytes());
    h.update(at_ms.to_le_bytes());
    h.update(campaign.map_or(0, |c| c + 1).to_le_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

/// An event row as stored: the body kept as the exact JSON bytes hashed.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredEvent<'a> {
    seq: u64,
    at_ms: u64,
    campaign: Option<u64>,
    prev_hash: String,
    hash: String,
    #[serde(borrow)]
    body: &'a serde_json::value::RawValue,
}

/// An event as stored, with its body kept as the exact JSON text that was
/// hashed (for `reagent audit export`, and for reading events whose body
/// this binary may not know). Serializes as one JSON object with the fields
/// in this order, `body` last and verbatim.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RawEvent {
    pub seq: u64,
    pub at_ms: u64,
    pub campaign: Option<u64>,
    pub prev_hash: String,
    pub hash: String,
    pub body: Box<serde_json::value::RawValue>,
}

impl RawEvent {
    /// The body's `type` tag (`trial-finished`, …), if it has one.
    pub fn kind(&self) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Tag {
            #[serde(rename = "type")]
            kind: String,
        }
        serde_json::from_str::<Tag>(self.body.get())
            .ok()
            .map(|t| t.kind)
    }
}

/// Where the hash chain first fails.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainBreak {
    pub seq: u64,
    pub problem: String,
}

/// An open workspace database.
pub struct Store {
    db: Database,
    path: PathBuf,
    /// See [`Store::fail_commit_after`].
    fail_at: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

mod calls;
mod io;
use crate::crash::{crash_here, crash_point, env_number};
pub use io::advice;

static COMMITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let display = path.display().to_string();
        let db = match Database::create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Busy { path: display });
            }
            Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
                if e.kind() != std::io::ErrorKind::InvalidData =>
            {
                return Err(StoreError::Io {
                    path: display,
                    source: e,
                });
            }
            Err(e) => {
                return Err(StoreError::Corrupt {
                    path: display,
                    message: e.to_string(),
                });
            }
        };
        let store = Store {
            db,
            path: path.to_path_buf(),
            fail_at: std::sync::atomic::AtomicU64::new(0),
        };
        store.check_schema()?;
        Ok(store)
    }

    /// A database in memory, gone with the value: the strategy bench runs
    /// thousands of throwaway campaigns through the real engine, and a
    /// durable commit per state change would cost more than the campaign.
    pub fn in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from("(in memory)");
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| StoreError::Corrupt {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        let store = Store {
            db,
            path,
            fail_at: std::sync::atomic::AtomicU64::new(0),
        };
        store.check_schema()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn corrupt(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let found = {
            let read = self.db.begin_read().map_err(|e| self.corrupt(e))?;
            match read.open_table(META) {
                Ok(meta) => match meta.get("schema").map_err(|e| self.corrupt(e))? {
                    Some(v) => {
                        let bytes: [u8; 4] = v
                            .value()
                            .try_into()
                            .map_err(|_| self.corrupt("bad schema entry"))?;
                        Some(u32::from_le_bytes(bytes))
                    }
                    None => None,
                },
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(self.corrupt(e)),
            }
        };
        match found {
            Some(v) if v > SCHEMA_VERSION => Err(StoreError::Newer {
                path: self.path.display().to_string(),
                found: v,
            }),
            Some(_) => Ok(()),
            None => {
                // A new database: write the schema and the first event.
                self.write(|tx| {
                    tx.put_meta("schema", &SCHEMA_VERSION.to_le_bytes())?;
                    tx.append(
                        None,
                        EventBody::WorkspaceCreated {
                            schema: SCHEMA_VERSION,
                        },
                    )?;
                    Ok(())
                })
                .map_err(|e| self.corrupt(e))
            }
        }
    }

    /// Runs `f` in one write transaction and commits it durably.
    pub fn write<R>(&self, f: impl FnOnce(&mut Tx) -> anyhow::Result<R>) -> anyhow::Result<R> {
        self.commit(f)
            .map_err(|e| io::name_write_error(&self.path, e))
    }

    fn commit<R>(&self, f: impl FnOnce(&mut Tx) -> anyhow::Result<R>) -> anyhow::Result<R> {
        let txn = self.db.begin_write()?;
        let head = {
            let meta = txn.open_table(META)?;
            match meta.get("head")? {
                Some(v) => serde_json::from_slice::<(u64, String)>(v.value())?,
                None => (0, String::new()),
            }
        };
        let before = head.0;
        let mut tx = Tx { txn, head };
        let result = f(&mut tx)?;
        let fail_at = self.fail_at.load(std::sync::atomic::Ordering::SeqCst);
        if fail_at > 0 {
            self.fail_at
                .store(fail_at - 1, std::sync::atomic::Ordering::SeqCst);
            if fail_at == 1 {
                // Dropping the transaction aborts it: nothing is written.
                anyhow::bail!("injected crash before commit");
            }
        }
        let Tx { txn, head } = tx;
        let after = head.0;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert("head", serde_json::to_vec(&head)?.as_slice())?;
        }
        txn.commit()?;
        let n = COMMITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if crash_point() == Some(n) {
            crash_here(&format!("after commit {n}"));
        }
        if let Some(at) = env_number("REAGENT_CRASH_AT_EVENT")
            && before < at
            && at <= after
        {
            // Named by the commit's last event: two N in one commit are
            // one kill point.
            crash_here(&format!("at the commit ending event {after}"));
        }
        Ok(result)
    }

    fn get<T: DeserializeOwned, K: redb::Key + 'static>(
        &self,
        table: TableDefinition<K, &[u8]>,
        key: K::SelfType<'_>,
        what: &str,
    ) -> anyhow::Result<Option<T>>
    where
        for<'a> K::SelfType<'a>: std::borrow::Borrow<K::SelfType<'a>>,
    {
        let read = self.db.begin_read()?;
        let t = match read.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match t.get(key)? {
            Some(v) => Ok(Some(from_bytes(v.value(), what)?)),
            None => Ok(None),
        }
    }

    pub fn campaign(&self, id: u64) -> anyhow::Result<Option<CampaignRow>> {
        self.get(CAMPAIGNS, id, "campaign")
    }

    pub fn campaigns(&self) -> anyhow::Result<Vec<CampaignRow>> {
        self.all(CAMPAIGNS, "campaign")
    }

    /// Every row of a table keyed by id, in id order.
    fn all<T: DeserializeOwned>(
        &self,
        table: TableDefinition<u64, &[u8]>,
        what: &str,
    ) -> anyhow::Result<Vec<T>> {
        let read = self.db.begin_read()?;
        let t = match read.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (_, v) = entry?;
            out.push(from_bytes(v.value(), what)?);
        }
        Ok(out)
    }

    fn scan<T: DeserializeOwned>(
        &self,
        table: TableDefinition<(u64, u64), &[u8]>,
        campaign: u64,
        what: &str,
    ) -> anyhow::Result<Vec<T>> {
        let read = self.db.begin_read()?;
        let t = match read.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in t.range((campaign, 0)..=(campaign, u64::MAX))? {
            let (_, v) = entry?;
            out.push(from_bytes(v.value(), what)?);
        }
        Ok(out)
    }

    pub fn hypotheses(&self, campaign: u64) -> anyhow::Result<Vec<HypothesisRow>> {
        self.scan(HYPOTHESES, campaign, "hypothesis")
    }

    pub fn trials(&self, campaign: u64) -> anyhow::Result<Vec<TrialRow>> {
        self.scan(TRIALS, campaign, "trial")
    }

    /// Curves of one trial: metric → (step, value) points.
    pub fn curves(
        &self,
        campaign: u64,
        trial: u64,
    ) -> anyhow::Result<std::collections::BTreeMap<String, Vec<(u32, f64)>>> {
        Ok(self
            .get(CURVES, (campaign, trial), "curve")?
            .unwrap_or_default())
    }

    pub fn memory(&self, campaign: u64, role: &str) -> anyhow::Result<MemoryStore> {
        Ok(self
            .get(MEMORY, (campaign, role), "memory")?
            .unwrap_or_default())
    }

    pub fn approval(&self, id: u64) -> anyhow::Result<Option<ApprovalRow>> {
        self.get(APPROVALS, id, "approval")
    }

    /// Every approval request, oldest first.
    pub fn approvals(&self) -> anyhow::Result<Vec<ApprovalRow>> {
        self.all(APPROVALS, "approval")
    }

    /// The approval requests of one campaign.
    pub fn approvals_of(&self, campaign: u64) -> anyhow::Result<Vec<ApprovalRow>> {
        Ok(self
            .approvals()?
            .into_iter()
            .filter(|a| a.campaign == campaign)
            .collect())
    }

    /// Every insight record, in the order they arrived.
    pub fn insights(&self) -> anyhow::Result<Vec<InsightRecord>> {
        self.all(INSIGHTS, "insight")
    }

    /// The `limit` most recently arrived insight records, newest first.
    pub fn recent_insights(&self, limit: usize) -> anyhow::Result<Vec<InsightRecord>> {
        let read = self.db.begin_read()?;
        let t = match read.open_table(INSIGHTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in t.iter()?.rev().take(limit) {
            let (_, v) = entry?;
            out.push(from_bytes(v.value(), "insight")?);
        }
        Ok(out)
    }

    /// Insight records whose id starts with `prefix`, in arrival order.
    pub fn insights_by_prefix(&self, prefix: &str) -> anyhow::Result<Vec<InsightRecord>> {
        let read = self.db.begin_read()?;
        let ids = match read.open_table(INSIGHT_IDS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let records = read.open_table(INSIGHTS)?;
        let mut places = Vec::new();
        for entry in ids.range(prefix..)? {
            let (k, v) = entry?;
            if !k.value().starts_with(prefix) {
                break;
            }
            places.push(v.value());
        }
        places.sort_unstable();
        let mut out = Vec::new();
        for place in places {
            if let Some(v) = records.get(place)? {
                out.push(from_bytes(v.value(), "insight")?);
            }
        }
        Ok(out)
    }

    /// Whether a record with this id is stored.
    pub fn has_insight(&self, id: &str) -> anyhow::Result<bool> {
        let read = self.db.begin_read()?;
        match read.open_table(INSIGHT_IDS) {
            Ok(t) => Ok(t.get(id)?.is_some()),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Test hook: the `n`th write from now fails before it commits, as if
    /// the process died there (0 turns it off). The model-based tests use
    /// it to crash the host between any two steps.
    pub fn fail_commit_after(&self, n: u64) {
        self.fail_at.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Events with `seq` in `from..`, in order.
    pub fn events(&self, from: u64) -> anyhow::Result<Vec<Event>> {
        self.events_raw(from)?
            .into_iter()
            .map(|r| {
                Ok(Event {
                    seq: r.seq,
                    at_ms: r.at_ms,
                    campaign: r.campaign,
                    body: serde_json::from_str(r.body.get())
                        .map_err(|e| anyhow::anyhow!("unreadable event {}: {e}", r.seq))?,
                    prev_hash: r.prev_hash,
                    hash: r.hash,
                })
            })
            .collect()
    }

    /// Events with `seq` in `from..`, in order, each with its body as the
    /// exact JSON text that was hashed. Fails on an unreadable row, naming
    /// its seq.
    pub fn events_raw(&self, from: u64) -> anyhow::Result<Vec<RawEvent>> {
        let read = self.db.begin_read()?;
        let t = match read.open_table(EVENTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in t.range(from..)? {
            let (k, v) = entry?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| anyhow::anyhow!("unreadable event row {}: {e}", k.value()))?,
            );
        }
        Ok(out)
    }

    /// The event stored under `seq`, with its raw body (None when there is
    /// no such row).
    pub fn event_raw(&self, seq: u64) -> anyhow::Result<Option<RawEvent>> {
        self.get(EVENTS, seq, "event")
    }

    /// How many rows the event log holds (whatever their contents).
    pub fn event_count(&self) -> anyhow::Result<u64> {
        let read = self.db.begin_read()?;
        match read.open_table(EVENTS) {
            Ok(t) => Ok(redb::ReadableTableMetadata::len(&t)?),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Walks the whole event log from the stored bytes and reports the
    /// first altered, removed or reordered entry: the first seq from which
    /// on the log cannot be trusted.
    pub fn verify_chain(&self) -> anyhow::Result<Result<u64, ChainBreak>> {
        let read = self.db.begin_read()?;
        // The head from the same snapshot as the entries.
        let head: (u64, String) = match read.open_table(META) {
            Ok(meta) => match meta.get("head")? {
                Some(v) => serde_json::from_slice(v.value())
                    .map_err(|e| anyhow::anyhow!("unreadable chain head: {e}"))?,
                None => (0, String::new()),
            },
            Err(redb::TableError::TableDoesNotExist(_)) => (0, String::new()),
            Err(e) => return Err(e.into()),
        };
        let t = match read.open_table(EVENTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) if head.0 == 0 => return Ok(Ok(0)),
            Err(redb::TableError::TableDoesNotExist(_)) => {
                return Ok(Err(ChainBreak {
                    seq: 1,
                    problem: format!(
                        "the log is gone but the head says it ends at {} (entries were removed)",
                        head.0
                    ),
                }));
            }
            Err(e) => return Err(e.into()),
        };
        let short = |h: &str| h.get(..16).unwrap_or(h).to_string();
        let mut prev = String::new();
        let mut expected = 1u64;
        for entry in t.iter()? {
            let (k, v) = entry?;
            let key = k.value();
            if key != expected {
                return Ok(Err(ChainBreak {
                    seq: expected,
                    problem: format!(
                        "entry {expected} is missing (the next entry stored is {key}; entries were removed)"
                    ),
                }));
            }
            let stored: StoredEvent = match serde_json::from_slice(v.value()) {
                Ok(s) => s,
                Err(e) => {
                    return Ok(Err(ChainBreak {
                        seq: key,
                        problem: format!("unreadable entry: {e}"),
                    }));
                }
            };
            if stored.seq != key {
                return Ok(Err(ChainBreak {
                    seq: key,
                    problem: format!(
                        "the entry stored here says it is entry {} (entries were moved or swapped)",
                        stored.seq
                    ),
                }));
            }
            let hash = event_hash(
                &stored.prev_hash,
                stored.seq,
                stored.at_ms,
                stored.campaign,
                stored.body.get().as_bytes(),
            );
            if hash != stored.hash {
                return Ok(Err(ChainBreak {
                    seq: key,
                    problem: "its contents do not match its hash (altered)".into(),
                }));
            }
            if stored.prev_hash != prev {
                // This entry is consistent with itself but not linked to
                // its predecessor: either the predecessor was rewritten and
                // its hash recomputed, or this entry's link was (with its
                // own hash). Trust ends at the predecessor.
                return Ok(Err(match key.checked_sub(1).filter(|&p| p > 0) {
                    Some(p) => ChainBreak {
                        seq: p,
                        problem: format!(
                            "entry {key} records {}… as this entry's hash, but it hashes to {}…: this entry was rewritten and its hash recomputed (or entry {key}'s link was)",
                            short(&stored.prev_hash),
                            short(&prev)
                        ),
                    },
                    None => ChainBreak {
                        seq: key,
                        problem: format!(
                            "the first entry links to a predecessor {}… that does not exist (altered)",
                            short(&stored.prev_hash)
                        ),
                    },
                }));
            }
            prev = stored.hash;
            expected += 1;
        }
        let last = expected - 1;
        if head.0 > last {
            return Ok(Err(ChainBreak {
                seq: expected,
                problem: format!(
                    "the log ends at {last} but the head says {} (entries were removed from the end)",
                    head.0
                ),
            }));
        }
        if head.0 < last {
            return Ok(Err(ChainBreak {
                seq: head.0 + 1,
                problem: format!(
                    "the head says the log ends at {} but it holds entries up to {last} (entries were added past the head)",
                    head.0
                ),
            }));
        }
        if head.1 != prev {
            return Ok(Err(ChainBreak {
                seq: last,
                problem: format!(
                    "the head records {}… as this last entry's hash, but it hashes to {}…: it was rewritten and its hash recomputed",
                    short(&head.1),
                    short(&prev)
                ),
            }));
        }
        Ok(Ok(last))
    }

    /// The newest event's seq and hash.
    pub fn head(&self) -> anyhow::Result<(u64, String)> {
        let read = self.db.begin_read()?;
        let meta = read.open_table(META)?;
        Ok(match meta.get("head")? {
            Some(v) => serde_json::from_slice(v.value())?,
            None => (0, String::new()),
        })
    }
}

/// One write transaction.
pub struct Tx {
    txn: redb::WriteTransaction,
    head: (u64, String),
}

impl Tx {
    fn put_meta(&mut self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let mut t = self.txn.open_table(META)?;
        t.insert(key, value)?;
        Ok(())
    }

    /// Appends an event to the hash chain; returns its seq.
    pub fn append(&mut self, campaign: Option<u64>, body: EventBody) -> anyhow::Result<u64> {
        let seq = self.head.0 + 1;
        let at_ms = now_ms();
        let body = serde_json::to_string(&body)?;
        let hash = event_hash(&self.head.1, seq, at_ms, campaign, body.as_bytes());
        let raw = serde_json::value::RawValue::from_string(body)?;
        let stored = StoredEvent {
            seq,
            at_ms,
            campaign,
            prev_hash: self.head.1.clone(),
            hash: hash.clone(),
            body: &raw,
        };
        let mut t = self.txn.open_table(EVENTS)?;
        t.insert(seq, to_bytes(&stored)?.as_slice())?;
        self.head = (seq, hash);
        Ok(seq)
    }

    pub fn put_campaign(&mut self, row: &CampaignRow) -> anyhow::Result<()> {
        let mut t = self.txn.open_table(CAMPAIGNS)?;
        t.insert(row.id, to_bytes(row)?.as_slice())?;
        Ok(())
    }

    pub fn put_hypothesis(&mut self, campaign: u64, row: &HypothesisRow) -> anyhow::Result<()> {
        let mut t = self.txn.open_table(HYPOTHESES)?;
        t.insert((campaign, row.id), to_bytes(row)?.as_slice())?;
        Ok(())
    }

    pub fn put_trial(&mut self, campaign: u64, row: &TrialRow) -> anyhow::Result<()> {
        let mut t = self.txn.open_table(TRIALS)?;
        t.insert((campaign, row.id), to_bytes(row)?.as_slice())?;
        Ok(())
    }

    pub fn put_curves(
        &mut self,
        campaign: u64,
        trial: u64,
        curves: &std::collections::BTreeMap<String, Vec<(u32, f64)>>,
    ) -> anyhow::Result<()> {
        let mut t = self.txn.open_table(CURVES)?;
        t.insert((campaign, trial), to_bytes(curves)?.as_slice())?;
        Ok(())
    }

    pub fn put_memory(
        &mut self,
        campaign: u64,
        role: &str,
        memory: &MemoryStore,
    ) -> anyhow::Result<()> {
        let mut t = self.txn.open_table(MEMORY)?;
        t.insert((campaign, role), to_bytes(memory)?.as_slice())?;
        Ok(())
    }

    pub fn put_approval(&mut self, row: &ApprovalRow) -> anyhow::Result<()> {
        let mut t = self.txn.open_table(APPROVALS)?;
        t.insert(row.id, to_bytes(row)?.as_slice())?;
        Ok(())
    }

    /// Stores an insight record (its JSON bytes) under its id, unless a
    /// record with that id is already stored. True when it was stored.
    pub fn put_insight(&mut self, id: &str, bytes: &[u8]) -> anyhow::Result<bool> {
        let mut ids = self.txn.open_table(INSIGHT_IDS)?;
        if ids.get(id)?.is_some() {
            return Ok(false);
        }
        let mut records = self.txn.open_table(INSIGHTS)?;
        let place = records.last()?.map_or(1, |(k, _)| k.value() + 1);
        records.insert(place, bytes)?;
        ids.insert(id, place)?;
        Ok(true)
    }

    /// An approval request as this transaction sees it.
    pub fn approval(&mut self, id: u64) -> anyhow::Result<Option<ApprovalRow>> {
        let t = self.txn.open_table(APPROVALS)?;
        let v = t.get(id)?;
        v.map(|v| from_bytes(v.value(), "approval")).transpose()
    }

    /// A campaign row as this transaction sees it.
    pub fn campaign(&mut self, id: u64) -> anyhow::Result<Option<CampaignRow>> {
        let t = self.txn.open_table(CAMPAIGNS)?;
        let v = t.get(id)?;
        v.map(|v| from_bytes(v.value(), "campaign")).transpose()
    }

    /// The next approval request id (1-based).
    pub fn next_approval_id(&mut self) -> anyhow::Result<u64> {
        let t = self.txn.open_table(APPROVALS)?;
        let last = t.last()?.map(|(k, _)| k.value()).unwrap_or(0);
        Ok(last + 1)
    }

    /// The next campaign id (1-based).
    pub fn next_campaign_id(&mut self) -> anyhow::Result<u64> {
        let t = self.txn.open_table(CAMPAIGNS)?;
        let last = t.last()?.map(|(k, _)| k.value()).unwrap_or(0);
        Ok(last + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_chain_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.redb");
        {
            let store = Store::open(&path).unwrap();
            store
                .write(|tx| {
                    tx.append(
                        Some(1),
                        EventBody::PlanApproved {
                            by: "me".into(),
                            note: String::new(),
                        },
                    )?;
                    Ok(())
                })
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let events = store.events(0).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].prev_hash, events[0].hash);
        let e = &events[1];
        assert_eq!(store.verify_chain().unwrap(), Ok(2));
        assert_eq!(store.head().unwrap(), (2, e.hash.clone()));
    }

    #[test]
    fn a_second_open_is_busy_and_garbage_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.redb");
        let _first = Store::open(&path).unwrap();
        assert!(matches!(Store::open(&path), Err(StoreError::Busy { .. })));
        let bad = dir.path().join("bad.redb");
        std::fs::write(&bad, vec![0x42; 8192]).unwrap();
        let err = Store::open(&bad).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert_eq!(
            std::fs::read(&bad).unwrap(),
            vec![0x42; 8192],
            "nothing was changed"
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.redb");
        {
            let store = Store::open(&path).unwrap();
            store
                .write(|tx| tx.put_meta("schema", &99u32.to_le_bytes()))
                .unwrap();
        }
        let err = Store::open(&path).unwrap_err();
        assert!(
            err.to_string().contains("newer reagent (schema 99)"),
            "{err}"
        );
    }
}
