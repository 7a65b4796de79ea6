//! The few system calls std does not wrap, for the supervisor, the local
//! backend and the foreground driver.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

pub fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: the fd is open for the duration of the call (borrowed
        // from `file`); flock touches no memory of ours.
        #[allow(unsafe_code)]
        let r = unsafe { libc::flock(file.as_raw_fd(), op) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Sends `sig` to a process group; false if it does not exist. Refuses
/// groups 0 and 1 (ours, init's).
pub fn signal_group(pgid: i32, sig: libc::c_int) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: killpg only sends a signal; pgid > 1 names one group.
    #[allow(unsafe_code)]
    let r = unsafe { libc::killpg(pgid, sig) };
    r == 0
}

/// Sends `sig` to one process. Refuses pids 0, 1 and negative ones
/// (which would mean groups or everyone).
pub fn signal_pid(pid: i32, sig: libc::c_int) -> bool {
    if pid <= 1 {
        return false;
    }
    // SAFETY: kill only sends a signal; pid > 1 names one process.
    #[allow(unsafe_code)]
    let r = unsafe { libc::kill(pid, sig) };
    r == 0
}

/// Whether a process with this pid exists (possibly not ours).
pub fn pid_exists(pid: i32) -> bool {
    if pid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    #[allow(unsafe_code)]
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether `pid` has exited and waits to be reaped (state `Z` in
/// /proc/PID/stat, read after the name, which may contain spaces).
pub fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// A handle that becomes readable when process `pid` ends (Linux 5.3+
/// pidfd); `None` where the kernel has none.
pub fn exit_watch(pid: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    #[allow(unsafe_code)]
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the fd was just returned to us and is owned by nobody else.
    #[allow(unsafe_code)]
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Waits up to `timeout` for the watched process to end (returns early
/// when it does, or on a signal); sleeps the timeout without a watch.
pub fn wait_exit(watch: Option<&std::os::fd::OwnedFd>, timeout: std::time::Duration) {
    let Some(fd) = watch else {
        std::thread::sleep(timeout);
        return;
    };
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    #[allow(unsafe_code)]
    unsafe {
        libc::poll(&mut p, 1, ms);
    }
}

/// Reaps the child `pid` if it has ended: its wait status and resource
/// usage (its own and its waited-for descendants').
pub fn try_reap(pid: i32) -> io::Result<Option<(libc::c_int, libc::rusage)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is a plain C struct of integers, for which all-zero
    // is a valid value.
    #[allow(unsafe_code)]
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals of the right types.
    #[allow(unsafe_code)]
    let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
    match r {
        0 => Ok(None),
        -1 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(e)
            }
        }
        _ => Ok(Some((status, usage))),
    }
}

/// Makes the calling process a session leader (no controlling
/// terminal, no hangups from the one that started it). Called first
/// thing by the supervisor process: doing it in the parent between fork
/// and exec would force `fork` of a large host (wasmtime reserves a lot
/// of address space), where a plain spawn uses `posix_spawn`.
pub fn become_session_leader() {
    // SAFETY: setsid has no preconditions; failure (already a leader)
    // is harmless.
    #[allow(unsafe_code)]
    unsafe {
        libc::setsid();
    }
}

/// Routes SIGTERM, SIGINT and SIGHUP to `handler`.
pub fn install_stop_handlers(handler: extern "C" fn(libc::c_int)) {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; `signal` with a valid function is sound.
        #[allow(unsafe_code)]
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
}

/// A process as /proc/PID/stat tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub pgrp: i32,
    pub zombie: bool,
}

/// Every process in /proc (those that vanish while we look are skipped).
pub fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …; comm may hold spaces and parens.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().unwrap_or("");
        let num = |s: Option<&str>| s.and_then(|s| s.parse::<i32>().ok()).unwrap_or(0);
        let ppid = num(f.next());
        let pgrp = num(f.next());
        out.push(Proc {
            pid,
            ppid,
            pgrp,
            zombie: state.starts_with('Z') || state.starts_with('X'),
        });
    }
    out
}

/// `root` and the processes descending from it (following parent links),
/// and the members of process group `group`, from one look at /proc.
pub fn tree(root: i32, group: i32) -> Vec<Proc> {
    let all = processes();
    let mut inside: std::collections::BTreeSet<i32> = std::collections::BTreeSet::new();
    inside.insert(root);
    // Parents usually come before children in /proc order, but not always
    // (pids wrap): repeat until nothing new joins.
    loop {
        let before = inside.len();
        for p in &all {
            if inside.contains(&p.ppid) || (group > 1 && p.pgrp == group) {
                inside.insert(p.pid);
            }
        }
        if inside.len() == before {
            break;
        }
    }
    all.into_iter()
        .filter(|p| p.pid > 1 && inside.contains(&p.pid))
        .collect()
}

/// Memory of these processes in KiB: the sum of their proportional set
/// sizes (shared pages split among sharers, so forked workers are not
/// counted many times), or resident size where the kernel has no
/// smaps_rollup. `None` if none was measured.
pub fn memory_kb(procs: &[Proc]) -> Option<u64> {
    let mut total = 0u64;
    let mut found = false;
    for p in procs.iter().filter(|p| !p.zombie) {
        if let Some(kb) = process_memory_kb(p.pid) {
            found = true;
            total += kb;
        }
    }
    found.then_some(total)
}

/// Makes this process the reaper of its orphaned descendants
/// (`PR_SET_CHILD_SUBREAPER`): a job's process that leaves its session and
/// parent (setsid, double fork) is reparented here, not to init, so the
/// supervisor still finds it. False if the kernel refused.
pub fn become_subreaper() -> bool {
    // SAFETY: prctl with integer arguments only.
    #[allow(unsafe_code)]
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    r == 0
}

/// Reaps every ended child of this process without blocking.
pub fn reap_ended_children() {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: a pointer to a live local; WNOHANG never blocks.
        #[allow(unsafe_code)]
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r <= 0 {
            return;
        }
    }
}

fn process_memory_kb(pid: i32) -> Option<u64> {
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        && let Some(kb) = field(&text, "Pss:")
    {
        return Some(kb);
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field(&text, "VmRSS:")
}

/// Hands the memory the allocator holds free back to the system. A
/// driver's pass peaks with the history (each strategy call's record holds
/// the pages it read), and glibc kept those peaks: the soak's driver grew
/// with the trial count although its live heap did not (BENCHMARKS.md).
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim returns free pages of the allocator's own arenas
    // to the kernel; it touches no memory in use.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}
