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
//! - an entry starts with a magic line and the sha256 of its name plus the
//!   serialized artifact, checked before `deserialize`: an entry copied or
//!   linked from another component's name, or altered in any byte, fails
//!   the check, is removed and the component is compiled afresh.

use std::hash::{Hash, Hasher};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The first bytes of every entry, then 32 bytes of sha256, then the artifact.
const MAGIC: &[u8] = b"reagent-cwasm-1\n";
const HEADER: usize = MAGIC.len() + 32;
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

    /// The sha256 that binds an artifact to the entry's name.
    fn digest(name: &str, artifact: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(artifact);
        h.finalize().into()
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
        let artifact = match self.read_entry(&name, &path) {
            Ok(Some(a)) => a,
            Ok(None) => return None,
            Err(why) => {
                tracing::warn!(path = %path.display(), reason = %why, "untrusted cache entry; compiling afresh");
                // Remove the name (a symlink itself, not its target).
                let _ = std::fs::remove_file(&path);
                return None;
            }
        };
        // SAFETY: `deserialize` runs the native code in `artifact`. These
        // bytes are exactly what `store` wrote for this component and
        // engine: the entry was opened without following links, is owned by
        // us and not writable by others, in a directory likewise, and its
        // sha256 over its name and bytes matched. wasmtime also checks the
        // header and engine compatibility before use.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &artifact) };
        match component {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unusable cache entry; recompiling");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Reads and checks an entry: `Ok(None)` when there is none, `Err(why)`
    /// when there is one we must not use.
    fn read_entry(&self, name: &str, path: &Path) -> Result<Option<Vec<u8>>, String> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path);
        let mut file = match file {
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
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
            return Err("not a reagent cache entry".into());
        }
        let artifact = bytes.split_off(HEADER);
        if bytes[MAGIC.len()..] != Self::digest(name, &artifact) {
            return Err("its sha256 does not match its name and contents".into());
        }
        Ok(Some(artifact))
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
        let path = self.dir.join(&name);
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
            file.write_all(MAGIC)?;
            file.write_all(&Self::digest(&name, &artifact))?;
            file.write_all(&artifact)?;
            file.sync_all()?;
        }
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        Ok(())
    }
}
