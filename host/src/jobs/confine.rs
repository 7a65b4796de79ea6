//! Confining a job's writes with Landlock (Linux ≥ 6.2, no root needed).
//!
//! Jobs run as the operator's user, so without this a job could write
//! everything the host trusts: its own and other trials' records, the
//! workspace database. The supervisor builds a Landlock ruleset that
//! handles every *write* access (create, remove, rename/link across
//! folders, write, truncate, special files) and grants them only beneath:
//!
//! - the job's own output folder (`<job folder>/out`) and private tmp
//!   (`<job folder>/tmp`, also `$TMPDIR`);
//! - the device files jobs write (`/dev/null`, `/dev/zero`, `/dev/full`,
//!   `/dev/random`, `/dev/urandom`, `/dev/tty`, `/dev/ptmx`, `/dev/pts`,
//!   `/dev/shm`, and GPU devices: `/dev/nvidia*`, `/dev/dri`, `/dev/kfd`);
//! - the job's working directory, except the workspace (`.reagent/`) and
//!   the jobs folder. Landlock rules only add, so when the workspace is
//!   inside the working directory (the common case) each other entry of
//!   the working directory is granted on its own: the job can write inside
//!   them but cannot create, remove or rename *top-level* entries of the
//!   working directory.
//!
//! Reads, execution and device ioctls are not handled, so they stay as the
//! user's permissions allow. On kernels with Landlock ABI ≥ 6 the job is
//! also scoped: it cannot signal processes outside its own domain (the
//! supervisor, the host) nor connect to their abstract Unix sockets.
//!
//! The ruleset is built in the supervisor (where errors can be reported),
//! and the child applies it between fork and exec with two system calls
//! (`PR_SET_NO_NEW_PRIVS`, `landlock_restrict_self`), which are safe to make
//! there. Without Landlock (or with ABI < 3, which cannot stop truncation)
//! the job does not start, unless `REAGENT_ALLOW_UNCONFINED_JOBS=1`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use landlock::{
    ABI, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope,
};

/// Set to `1` to run jobs unconfined where Landlock is unavailable.
pub const ALLOW_UNCONFINED_ENV: &str = "REAGENT_ALLOW_UNCONFINED_JOBS";
/// The oldest Landlock ABI that confines writes fully (3 adds truncation).
pub const MIN_ABI: i32 = 3;
/// The Landlock ABI that adds signal and abstract-socket scoping.
pub const SCOPE_ABI: i32 = 6;
/// At most this many rules (a working directory with more entries around
/// the workspace is refused rather than half granted).
const MAX_RULES: usize = 4096;

/// Device files and folders a job may write, where they exist.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
    "/dev/dri",
    "/dev/kfd",
];

/// A ruleset ready to be applied in the job's process.
#[derive(Debug)]
pub struct Confinement {
    fd: OwnedFd,
    /// The kernel's Landlock ABI version.
    pub abi: i32,
    /// Signals and abstract Unix sockets are scoped (ABI ≥ 6).
    pub scoped: bool,
    /// What is writable, for the supervisor's note.
    pub granted: Vec<PathBuf>,
}

impl Confinement {
    /// The ruleset's fd, for [`apply_in_child`]; valid while `self` lives.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

/// The write rights handled: ABI 3's, so without `IoctlDev` (ABI 5), which
/// is not a write and which GPU jobs need.
fn handled() -> BitFlags<AccessFs> {
    AccessFs::from_write(ABI::V3)
}

/// Builds the ruleset for a job. `abi` is the kernel's Landlock ABI
/// ([`kernel_abi`]); `own` are the job's own folders (output, tmp);
/// `protected` are folders that must stay read-only even inside the
/// working directory (the workspace, the jobs folder).
pub fn build(
    abi: i32,
    own: &[PathBuf],
    workdir: &Path,
    protected: &[PathBuf],
) -> Result<Confinement, String> {
    if abi < MIN_ABI {
        return Err(if abi <= 0 {
            "Landlock is not available in this kernel (it needs Linux ≥ 6.2 with Landlock enabled)"
                .to_string()
        } else {
            format!(
                "this kernel's Landlock ABI is {abi}; confining writes needs ABI {MIN_ABI} (Linux ≥ 6.2)"
            )
        });
    }
    let protected: Vec<PathBuf> = protected
        .iter()
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
        .collect();
    let mut granted: Vec<PathBuf> = Vec::new();
    for p in own {
        granted.push(
            p.canonicalize()
                .map_err(|e| format!("{}: {e}", name_of(p)))?,
        );
    }
    for d in DEVICES {
        if Path::new(d).exists() {
            granted.push(PathBuf::from(d));
        }
    }
    if let Ok(entries) = std::fs::read_dir("/dev") {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("nvidia") {
                granted.push(e.path());
            }
        }
    }
    grant_tree(workdir, &protected, &mut granted, 0)?;
    if granted.len() > MAX_RULES {
        return Err(format!(
            "the working directory has too many entries around the workspace ({} rules, at most {MAX_RULES}); put the workspace elsewhere or use a working directory without it",
            granted.len()
        ));
    }

    let err = |e: landlock::RulesetError| e.to_string();
    let scoped = abi >= SCOPE_ABI;
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(handled())
        .map_err(err)?;
    if scoped {
        ruleset = ruleset
            .scope(Scope::Signal | Scope::AbstractUnixSocket)
            .map_err(err)?;
    }
    let mut created = ruleset.create().map_err(err)?;
    for path in &granted {
        let fd = PathFd::new(path).map_err(|e| format!("{}: {e}", name_of(path)))?;
        let access = if path.is_dir() {
            handled()
        } else {
            handled() & AccessFs::from_file(ABI::V3)
        };
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(err)?;
    }
    let fd: Option<OwnedFd> = created.into();
    let fd = fd.ok_or("Landlock created no ruleset")?;
    Ok(Confinement {
        fd,
        abi,
        scoped,
        granted,
    })
}

/// Adds `path` to `granted`, or, when a protected folder is inside it,
/// each of its entries (recursively) except the protected ones. Symbolic
/// links are resolved first, so a link to the workspace grants nothing.
fn grant_tree(
    path: &Path,
    protected: &[PathBuf],
    granted: &mut Vec<PathBuf>,
    depth: usize,
) -> Result<(), String> {
    let Ok(real) = path.canonicalize() else {
        return Ok(());
    };
    if protected.iter().any(|p| real.starts_with(p)) {
        return Ok(());
    }
    if !protected.iter().any(|p| p.starts_with(&real)) {
        granted.push(real);
        return Ok(());
    }
    if depth > 32 || granted.len() > MAX_RULES {
        return Ok(());
    }
    let entries = std::fs::read_dir(&real).map_err(|e| format!("{}: {e}", name_of(&real)))?;
    for e in entries.flatten() {
        grant_tree(&e.path(), protected, granted, depth + 1)?;
    }
    Ok(())
}

/// A path's last component, for messages a strategy may see.
fn name_of(p: &Path) -> String {
    p.file_name()
        .map_or_else(|| "/".to_string(), |n| n.to_string_lossy().into_owned())
}

/// The running kernel's Landlock ABI version; 0 or less when none.
pub fn kernel_abi() -> i32 {
    #[cfg(test)]
    if let Some(abi) = FAKE_ABI.with(std::cell::Cell::get) {
        return abi;
    }
    sys::landlock_abi()
}

#[cfg(test)]
thread_local! {
    /// Unit tests: the ABI this thread's supervisor sees (a kernel without
    /// Landlock, say).
    pub(crate) static FAKE_ABI: std::cell::Cell<Option<i32>> = const { std::cell::Cell::new(None) };
}

/// Whether the operator allows unconfined jobs where Landlock is missing.
pub fn unconfined_allowed() -> bool {
    std::env::var_os(ALLOW_UNCONFINED_ENV).is_some_and(|v| v == "1")
}

/// The message of a job that could not be confined.
pub fn refusal(why: &str) -> String {
    format!("cannot confine the job: {why}; set {ALLOW_UNCONFINED_ENV}=1 to run jobs unconfined")
}

/// Applies the ruleset `fd` to the calling process. Only for the child
/// between fork and exec: it makes two system calls and allocates nothing.
pub fn apply_in_child(fd: i32) -> std::io::Result<()> {
    sys::restrict_self(fd)
}

mod sys {
    /// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`.
    pub fn landlock_abi() -> i32 {
        const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
        // SAFETY: with a null attribute pointer, size 0 and the VERSION flag
        // the call reads no memory and only returns the ABI version.
        #[allow(unsafe_code)]
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<libc::c_void>(),
                0usize,
                LANDLOCK_CREATE_RULESET_VERSION,
            )
        };
        i32::try_from(r).unwrap_or(-1)
    }

    /// `prctl(PR_SET_NO_NEW_PRIVS)` then `landlock_restrict_self(fd, 0)`:
    /// both async-signal-safe, touching no memory of ours.
    pub fn restrict_self(fd: i32) -> std::io::Result<()> {
        // SAFETY: prctl with integer arguments only.
        #[allow(unsafe_code)]
        let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the syscall takes an fd and flags; a bad fd is an error.
        #[allow(unsafe_code)]
        let r = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_landlock_the_job_is_refused_with_the_way_out() {
        let tmp = tempfile::tempdir().unwrap();
        for abi in [-1, 0, 1, 2] {
            let e = build(abi, &[], tmp.path(), &[]).unwrap_err();
            let msg = refusal(&e);
            assert!(msg.starts_with("cannot confine the job: "), "{msg}");
            assert!(msg.contains("REAGENT_ALLOW_UNCONFINED_JOBS=1"), "{msg}");
        }
    }

    #[test]
    fn the_workspace_inside_the_workdir_is_left_out_entry_by_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join(".reagent/jobs")).unwrap();
        std::fs::create_dir_all(root.join("src/deep")).unwrap();
        std::fs::write(root.join("train.sh"), "").unwrap();
        std::os::unix::fs::symlink(root.join(".reagent"), root.join("ws-link")).unwrap();
        let mut granted = Vec::new();
        grant_tree(&root, &[root.join(".reagent")], &mut granted, 0).unwrap();
        granted.sort();
        assert_eq!(granted, vec![root.join("src"), root.join("train.sh")]);
        // Without the workspace inside, the folder is granted whole.
        let mut whole = Vec::new();
        grant_tree(&root.join("src"), &[root.join(".reagent")], &mut whole, 0).unwrap();
        assert_eq!(whole, vec![root.join("src")]);
    }

    #[test]
    fn a_confined_child_writes_only_where_granted() {
        if kernel_abi() < MIN_ABI {
            eprintln!("skipped: no Landlock here");
            return;
        }
        use std::os::unix::process::CommandExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let ws = root.join(".reagent");
        let out = ws.join("jobs/k/out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        let c = build(
            kernel_abi(),
            std::slice::from_ref(&out),
            &root,
            std::slice::from_ref(&ws),
        )
        .unwrap();
        let fd = c.raw_fd();
        let script = "echo a > .reagent/x; echo b > data/y; echo c > \"$OUT/z\"; echo d > new-top; echo e > /dev/null && echo ok; kill -0 \"$HOST\" 2>/dev/null && echo signalled";
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", script])
            .current_dir(&root)
            .env("OUT", &out)
            .env("HOST", std::process::id().to_string());
        // SAFETY: apply_in_child only makes two async-signal-safe calls.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || apply_in_child(fd));
        }
        let o = cmd.output().unwrap();
        let said = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(said.starts_with("ok"), "{said}");
        // Scoped (ABI ≥ 6): no signal reaches a process outside the domain.
        assert_eq!(said.contains("signalled"), !c.scoped, "{said}");
        assert!(!ws.join("x").exists(), "the workspace was written");
        assert!(root.join("data/y").exists(), "a workdir folder is writable");
        assert!(out.join("z").exists(), "the output folder is writable");
        assert!(!root.join("new-top").exists(), "no new top-level entries");
    }
}
