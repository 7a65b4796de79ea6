//! Write failures said as a person needs them: which file, why (the disk is
//! full, the filesystem is read-only) and what to do. redb's errors carry
//! the I/O error without exposing it as a `source`, so the store digs it out
//! here and the CLI adds the advice ([`advice`]) to whatever failed.

use std::io;
use std::path::Path;

/// The I/O error inside an error a redb call returned, if there is one.
fn redb_io(e: &anyhow::Error) -> Option<io::Error> {
    let storage = e
        .downcast_ref::<redb::StorageError>()
        .or_else(|| match e.downcast_ref::<redb::CommitError>() {
            Some(redb::CommitError::Storage(s)) => Some(s),
            _ => None,
        })
        .or_else(|| match e.downcast_ref::<redb::TransactionError>() {
            Some(redb::TransactionError::Storage(s)) => Some(s),
            _ => None,
        })
        .or_else(|| match e.downcast_ref::<redb::TableError>() {
            Some(redb::TableError::Storage(s)) => Some(s),
            _ => None,
        })?;
    match storage {
        redb::StorageError::Io(io) => Some(match io.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(io.kind(), io.to_string()),
        }),
        redb::StorageError::PreviousIo => Some(io::Error::other(
            "an earlier write to it failed in this process (a full disk or a read-only filesystem?)",
        )),
        _ => None,
    }
}

/// A failed write to the database at `path`, named with its path when the
/// cause is an I/O error; any other error is returned as it was.
pub(super) fn name_write_error(path: &Path, e: anyhow::Error) -> anyhow::Error {
    match redb_io(&e) {
        Some(io) => anyhow::Error::new(io).context(format!(
            "cannot write the workspace database {}",
            path.display()
        )),
        None => e,
    }
}

/// What to do about an error whose cause is a full disk, a quota or a
/// read-only filesystem; None for other errors.
pub fn advice(e: &anyhow::Error) -> Option<&'static str> {
    let code = e.chain().find_map(|c| {
        c.downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
    })?;
    match code {
        libc::ENOSPC | libc::EDQUOT => Some(
            "The disk is full. Free space on the filesystem that holds the workspace (`df -h .reagent`), \
             then run the same command again: a campaign continues where it stopped, and nothing it \
             had recorded was lost.",
        ),
        libc::EROFS => Some(
            "The filesystem is read-only. Remount it read-write (or move the workspace to one that is), \
             then run the same command again: a campaign continues where it stopped, and nothing it \
             had recorded was lost.",
        ),
        _ => None,
    }
}
