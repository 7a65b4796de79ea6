//! The on-disk cache of compiled components, keyed by the wasm's sha256 and
//! the engine's compatibility hash (wasmtime version, target, settings).
//!
//! A cache entry is native code the host will map and run, so the cache
//! uses only what it could have written itself, for this very component:
//!
//! - the directory must be owned by this user and not writable by group or
//!   others (else the cache is not used at all, neither read nor written,
//!   and a warning says why, once); it is created `0700`;
//! - an entry is opened with `O_NOFOLLOW` (a symlink is refused), and must
//!   be a regular file owned by this user and not writable by others;
//! - an entry is two files: `NAME.cwasm`, the artifact exactly as wasmtime
//!   serialized it (so it is mapped, not copied: `deserialize_file`), and
//!   `NAME.cwasm.sum`, a magic line and the BLAKE3 hash of the entry's name
//!   plus the artifact, checked before the artifact is mapped: an entry
//!   copied or linked from another component's name, or altered in any
//!   byte, fails the check, is removed and the component is compiled
//!   afresh. (BLAKE3, not SHA-256: it reads the 40 MB of a Python
//!   component's artifact in a few milliseconds; the hash is this cache's
//!   own, never shown or recorded.)

use std::hash::{Hash, Hasher};
use std::io::{Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::Engine;
use wasmtime::component::Component;

/// What an entry's `.sum` file holds: this line, then 32 bytes of BLAKE3.
const MAGIC: &[u8] = b"reagent-cwasm-2\n";
const SUM_LEN: usize = MAGIC.len() + 32;
/// Entries larger than this are not read (a serialized Python component is
/// ~40 MB).
const MAX_ENTRY_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
    /// Whether the untrusted-directory warning was given (once per cache).
    warned: Arc<AtomicBool>,
}

/// Where the cache lives unless configured: `$REAGENT_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/reagent/components`, else `~/.cache/reagent/components`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("REAGENT_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("reagent").join("components"))
}

fn our_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::getuid()
    }
}

/// Why a file or directory with this metadata is not ours alone, if it is not.
fn not_ours(meta: &std::fs::Metadata) -> Option<String> {
    if meta.uid() != our_uid() {
        return Some(format!("owned by uid {}, not us", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    None
}

impl CompileCache {
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        CompileCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
            warned: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn name(&self, sha256: &str) -> String {
        format!("{sha256}-{}.cwasm", self.engine_key)
    }

    /// The hasher that binds an artifact to the entry's name (fed the
    /// artifact next).
    fn hasher(name: &str) -> blake3::Hasher {
        let mut h = blake3::Hasher::new();
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h
    }

    /// Whether the directory may be used; says why not once.
    fn dir_trusted(&self) -> bool {
        let why = match std::fs::metadata(&self.dir) {
            // Not there yet: `store` creates it as ours.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
            Err(e) => format!("cannot read it: {e}"),
            Ok(meta) if !meta.is_dir() => "not a directory".to_string(),
            Ok(meta) => match not_ours(&meta) {
                None => return true,
                Some(why) => why,
            },
        };
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                dir = %self.dir.display(),
                reason = %why,
                "not using the component cache: compiling every component afresh"
            );
        }
        false
    }

    /// The cached compilation of the component with this hash, if present
    /// and trustworthy.
    pub fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        if !self.dir_trusted() {
            return None;
        }
        let name = self.name(sha256);
        let path = self.dir.join(&name);
        let sum_path = self.dir.join(format!("{name}.sum"));
        let file = match self.checked_entry(&name, &path, &sum_path) {
            Ok(Some(f)) => f,
            Ok(None) => return None,
            Err(why) => {
                tracing::warn!(path = %path.display(), reason = %why, "untrusted cache entry; compiling afresh");
                // Remove the names (a symlink itself, not its target).
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(&sum_path);
                return None;
            }
        };
        // The very file that was checked, by its descriptor: a rename over
        // the name since cannot put another file in its place.
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        // SAFETY: `deserialize_file` maps and runs the native code in this
        // file. It is exactly what `store` wrote for this component and
        // engine: opened without following links, owned by us and not
        // writable by others, in a directory likewise, and its hash over
        // its name and bytes matched the entry's sum. wasmtime also checks
        // the header and engine compatibility before use.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize_file(engine, &by_fd) };
        drop(file);
        match component {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unusable cache entry; recompiling");
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(&sum_path);
                None
            }
        }
    }

    /// Opens one file of an entry and checks it is ours alone: `Ok(None)`
    /// when there is none.
    fn open_checked(path: &Path) -> Result<Option<(std::fs::File, u64)>, String> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path);
        let file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err("it is a symbolic link".into());
            }
            Err(e) => return Err(format!("cannot open it: {e}")),
        };
        // The checks are on the file we opened, not on the name.
        let meta = file.metadata().map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        if let Some(why) = not_ours(&meta) {
            return Err(why);
        }
        if meta.len() > MAX_ENTRY_BYTES {
            return Err(format!("{} bytes is too large", meta.len()));
        }
        Ok(Some((file, meta.len())))
    }

    /// Opens and checks an entry: the artifact's open file when its sum
    /// matches, `Ok(None)` when there is no entry, `Err(why)` when there
    /// is one we must not use.
    fn checked_entry(
        &self,
        name: &str,
        path: &Path,
        sum_path: &Path,
    ) -> Result<Option<std::fs::File>, String> {
        let Some((mut file, _)) = Self::open_checked(path)? else {
            return Ok(None);
        };
        let Some((mut sum_file, sum_len)) =
            Self::open_checked(sum_path).map_err(|why| format!("its sum file: {why}"))?
        else {
            return Err("it has no sum file".into());
        };
        if sum_len != SUM_LEN as u64 {
            return Err("its sum file is not a reagent cache sum".into());
        }
        let mut sum = [0u8; SUM_LEN];
        sum_file
            .read_exact(&mut sum)
            .map_err(|e| format!("its sum file: {e}"))?;
        if &sum[..MAGIC.len()] != MAGIC {
            return Err("its sum file is not a reagent cache sum".into());
        }
        let mut h = Self::hasher(name);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        if h.finalize().as_bytes()[..] != sum[MAGIC.len()..] {
            return Err("its hash does not match its name and contents".into());
        }
        Ok(Some(file))
    }

    /// Stores a compilation; failures only cost a recompile later.
    pub fn store(&self, sha256: &str, component: &Component) {
        if let Err(e) = self.try_store(sha256, component) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write the component cache");
        }
    }

    fn try_store(&self, sha256: &str, component: &Component) -> anyhow::Result<()> {
        if !self.dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)?;
        }
        if !self.dir_trusted() {
            return Ok(());
        }
        let artifact = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
        let name = self.name(sha256);
        let mut h = Self::hasher(&name);
        h.update(&artifact);
        let mut sum = MAGIC.to_vec();
        sum.extend_from_slice(h.finalize().as_bytes());
        // The artifact first: an artifact without its sum is not used.
        self.write_file(&name, &artifact)?;
        self.write_file(&format!("{name}.sum"), &sum)
    }

    /// Writes `dir/name` whole (a private temporary file, synced, renamed).
    fn write_file(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp{}", std::process::id()));
        // A stale temporary file of a crashed process with our pid.
        let _ = std::fs::remove_file(&tmp);
        {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        Ok(())
    }
}
