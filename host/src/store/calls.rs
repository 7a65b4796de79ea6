//! How strategy call records are stored.
//!
//! A call record holds every host call's answer so the call can be replayed.
//! A strategy that reads the whole history at every call (the built-ins do)
//! records every trial again at every call: 2,500 trials made a 625 MB
//! database, growing with the square of the trial count. So the items of
//! `history.trials` and `history.hypotheses` pages are stored once, in
//! chunks of [`CHUNK_ITEMS`] aligned on the items' place in the history,
//! keyed by the SHA-256 of their bytes; a record names its chunks. A chunk
//! of finished trials is the same at every later call and is written once.
//!
//! The record read back is the record written (`call_bytes` gives the very
//! bytes whose hash is in the call's event; `tests/all/recording.rs` checks
//! it). Records written before this format are read as they are.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{CALLS, Store, Tx};
use crate::strategy::record::{CallRecord, HostCall};

/// Items per chunk. Small enough that the chunk still changing (the newest
/// trials) costs little to rewrite, large enough that a record's list of
/// chunk names is a small fraction of what it stands for.
const CHUNK_ITEMS: u64 = 64;

pub(super) const CHUNKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("answer_chunks");

/// The first byte of a record stored in this format (a record stored whole
/// is JSON and starts with `{`).
const CHUNKED: u8 = 1;

/// A record whose history pages' items were moved into chunks.
#[derive(Serialize, Deserialize)]
struct Stored {
    /// The record, with each chunked answer's `items` emptied.
    record: CallRecord,
    chunked: Vec<Chunked>,
}

#[derive(Serialize, Deserialize)]
struct Chunked {
    /// The host call's place in `record.host_calls`.
    call: usize,
    /// The chunks' SHA-256 digests (hex), in order.
    chunks: Vec<String>,
}

/// The host calls whose answers are history pages (request `[cursor, limit]`,
/// answer `{items, next}`).
fn pages(function: &str) -> bool {
    matches!(function, "history.trials" | "history.hypotheses")
}

/// A history page's cursor, its items (when there are any) and the whole
/// answer object.
fn page_items(
    call: &HostCall,
) -> Option<(
    u64,
    &[serde_json::Value],
    &serde_json::Map<String, serde_json::Value>,
)> {
    if !pages(&call.function) || call.withheld.is_some() {
        return None;
    }
    let cursor = call.request.get(0)?.as_u64()?;
    let object = call.response.as_object()?;
    let items = object.get("items")?.as_array()?;
    (!items.is_empty()).then_some((cursor, items.as_slice(), object))
}

/// Splits `items`, the first of which is item `cursor` of the history, at
/// multiples of [`CHUNK_ITEMS`].
fn split(cursor: u64, items: &[serde_json::Value]) -> Vec<&[serde_json::Value]> {
    let mut out = Vec::new();
    let mut rest = items;
    let mut at = cursor;
    while !rest.is_empty() {
        let room = (CHUNK_ITEMS - at % CHUNK_ITEMS).min(rest.len() as u64) as usize;
        let (head, tail) = rest.split_at(room);
        out.push(head);
        rest = tail;
        at += room as u64;
    }
    out
}

/// The stored form of `record`: its history pages' items written to
/// `chunks` (those not already there), the rest returned.
pub(super) fn store(
    chunks: &mut redb::Table<&[u8], &[u8]>,
    record: &CallRecord,
) -> anyhow::Result<Vec<u8>> {
    // The record without its history pages' items, built rather than
    // cloned: a clone copied every page (a third of a driver's peak heap).
    let mut stripped = CallRecord {
        component_sha256: record.component_sha256.clone(),
        world: record.world,
        input: record.input.clone(),
        limits: record.limits.clone(),
        host_calls: Vec::with_capacity(record.host_calls.len()),
        outcome: record.outcome.clone(),
        output_sha256: record.output_sha256.clone(),
        usage: record.usage,
        log: record.log.clone(),
    };
    let mut chunked = Vec::new();
    for (i, call) in record.host_calls.iter().enumerate() {
        let Some((cursor, items, rest)) = page_items(call) else {
            stripped.host_calls.push(call.clone());
            continue;
        };
        let mut names = Vec::new();
        for part in split(cursor, items) {
            let bytes = serde_json::to_vec(part)?;
            let digest = Sha256::digest(&bytes);
            if chunks.get(digest.as_slice())?.is_none() {
                chunks.insert(digest.as_slice(), bytes.as_slice())?;
            }
            names.push(hex::encode(digest));
        }
        // In the answer's own order (serde_json keeps insertion order
        // here), so the record read back serializes to the same bytes.
        let mut response = serde_json::Map::new();
        for (k, v) in rest {
            let v = if k == "items" {
                serde_json::Value::Array(Vec::new())
            } else {
                v.clone()
            };
            response.insert(k.clone(), v);
        }
        stripped.host_calls.push(HostCall {
            function: call.function.clone(),
            request: call.request.clone(),
            response: serde_json::Value::Object(response),
            withheld: None,
        });
        chunked.push(Chunked {
            call: i,
            chunks: names,
        });
    }
    if chunked.is_empty() {
        return Ok(serde_json::to_vec(record)?);
    }
    let mut out = vec![CHUNKED];
    serde_json::to_writer(
        &mut out,
        &Stored {
            record: stripped,
            chunked,
        },
    )?;
    Ok(out)
}

impl Store {
    pub fn call(&self, seq: u64) -> anyhow::Result<Option<CallRecord>> {
        self.read_call(seq, load)
    }

    /// The bytes of a call record as it was written (to check them against
    /// the hash in their event): its chunks put back in place.
    pub fn call_bytes(&self, seq: u64) -> anyhow::Result<Option<Vec<u8>>> {
        self.read_call(seq, |chunks, bytes| {
            if is_chunked(bytes) {
                Ok(serde_json::to_vec(&load(chunks, bytes)?)?)
            } else {
                Ok(bytes.to_vec())
            }
        })
    }

    /// Hands call `seq`'s stored row, and the chunks it may name, to `f`.
    fn read_call<R>(
        &self,
        seq: u64,
        f: impl FnOnce(
            Option<&redb::ReadOnlyTable<&'static [u8], &'static [u8]>>,
            &[u8],
        ) -> anyhow::Result<R>,
    ) -> anyhow::Result<Option<R>> {
        let read = self.db.begin_read()?;
        let t = match read.open_table(CALLS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(bytes) = t.get(seq)? else {
            return Ok(None);
        };
        let chunks = match read.open_table(CHUNKS) {
            Ok(c) => Some(c),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        f(chunks.as_ref(), bytes.value()).map(Some)
    }
}

impl Tx {
    /// Stores a call record; history pages' items go to shared chunks
    /// (see store/calls.rs).
    pub fn put_call(&mut self, seq: u64, record: &CallRecord) -> anyhow::Result<()> {
        let bytes = {
            let mut chunks = self.txn.open_table(CHUNKS)?;
            store(&mut chunks, record)?
        };
        if is_chunked(&bytes) {
            // An older reagent must refuse this database, not misread it.
            self.put_meta("schema", &super::SCHEMA_VERSION.to_le_bytes())?;
        }
        let mut t = self.txn.open_table(CALLS)?;
        t.insert(seq, bytes.as_slice())?;
        Ok(())
    }
}

/// Whether `bytes` is a record stored in this format.
fn is_chunked(bytes: &[u8]) -> bool {
    bytes.first() == Some(&CHUNKED)
}

/// The record stored as `bytes`, its chunks read from `chunks`.
fn load(
    chunks: Option<&impl ReadableTable<&'static [u8], &'static [u8]>>,
    bytes: &[u8],
) -> anyhow::Result<CallRecord> {
    let unreadable =
        |e: &dyn std::fmt::Display| anyhow::anyhow!("unreadable strategy call row: {e}");
    let Some(rest) = bytes.strip_prefix(&[CHUNKED]) else {
        return serde_json::from_slice(bytes).map_err(|e| unreadable(&e));
    };
    let stored: Stored = serde_json::from_slice(rest).map_err(|e| unreadable(&e))?;
    let mut record = stored.record;
    for c in stored.chunked {
        let mut items = Vec::new();
        for name in &c.chunks {
            let key = hex::decode(name).map_err(|e| unreadable(&e))?;
            let chunk = chunks
                .map(|t| t.get(key.as_slice()))
                .transpose()?
                .flatten()
                .ok_or_else(|| anyhow::anyhow!("a strategy call names chunk {name}, which is missing: the workspace database is damaged"))?;
            let part: Vec<serde_json::Value> =
                serde_json::from_slice(chunk.value()).map_err(|e| unreadable(&e))?;
            items.extend(part);
        }
        let slot = record
            .host_calls
            .get_mut(c.call)
            .and_then(|h| h.response.get_mut("items"))
            .ok_or_else(|| unreadable(&format!("no host call {} with items", c.call)))?;
        *slot = serde_json::Value::Array(items);
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_aligned_on_the_items_place_in_the_history() {
        let items: Vec<serde_json::Value> = (0..150).map(serde_json::Value::from).collect();
        let sizes = |cursor| {
            split(cursor, &items)
                .iter()
                .map(|p| p.len())
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes(0), vec![64, 64, 22]);
        assert_eq!(sizes(10), vec![54, 64, 32]);
        assert_eq!(sizes(64), vec![64, 64, 22]);
        assert!(split(3, &[]).is_empty());
    }
}
