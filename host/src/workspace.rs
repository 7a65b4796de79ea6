//! The workspace (`.reagent/`: the database, job folders, the wake socket)
//! and the driver that advances its campaigns: in the foreground until only
//! waiting is left, or once per `reagent wake`, handing the notice to a live
//! driver over a Unix socket when there is one.
//!
//! Wake protocol: a client connects to `.reagent/wake.sock`, writes
//! `wake\n`, and waits for `ok\n`, which the driver sends after a full pass
//! that started after the request. No answer (EOF) means the driver was
//! leaving: the client starts over, and may become the driver itself.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::campaign::engine::{Engine, Pass, Progress};
use crate::jobs::WakeCommand;
use crate::jobs::dispatch::Dispatch;
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::store::{Store, StoreError};

/// A `.reagent/` folder.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub dir: PathBuf,
}

impl Workspace {
    pub const DIR: &'static str = ".reagent";

    /// Creates `<dir>/.reagent` with its database, private to this user
    /// (folders 0700, the database 0600): it holds prompts, model
    /// exchanges and every strategy call. An existing workspace keeps its
    /// modes (its owner may share it on purpose); [`Workspace::exposure`]
    /// says when it is open to others.
    pub fn init(dir: &Path) -> anyhow::Result<Workspace> {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        let root = dir.join(Self::DIR);
        let fresh = !root.join("reagent.redb").exists();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root.join("jobs"))
            .with_context(|| format!("cannot create {}", root.display()))?;
        let ws = Workspace {
            dir: root.canonicalize()?,
        };
        drop(ws.open_store(Duration::from_secs(10))?);
        if fresh {
            for (path, mode) in [
                (ws.dir.clone(), 0o700),
                (ws.jobs_dir(), 0o700),
                (ws.db_path(), 0o600),
            ] {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .with_context(|| format!("cannot make {} private", path.display()))?;
            }
        }
        Ok(ws)
    }

    /// Why this workspace is not private to the user running this process,
    /// if it is not: `.reagent/` or its database readable or writable by
    /// group or others, or owned by someone else. The CLI prints it as a
    /// warning at every open.
    pub fn exposure(&self) -> Option<String> {
        use std::os::unix::fs::MetadataExt as _;
        // SAFETY: geteuid has no preconditions.
        #[allow(unsafe_code)]
        let me = unsafe { libc::geteuid() };
        for path in [self.dir.clone(), self.db_path()] {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let mode = meta.mode() & 0o777;
            if meta.uid() != me {
                return Some(format!(
                    "{} belongs to uid {}, not to you (uid {me}): whoever owns it can change what this workspace records",
                    path.display(),
                    meta.uid()
                ));
            }
            if mode & 0o077 != 0 {
                return Some(format!(
                    "{} is open to other users (mode {mode:03o}): they can read its prompts, model exchanges and call records{}; make the workspace private with `chmod -R go-rwx {}`",
                    path.display(),
                    if mode & 0o022 != 0 {
                        " and change them"
                    } else {
                        ""
                    },
                    self.dir.display()
                ));
            }
        }
        None
    }

    /// `explicit` (a project folder holding `.reagent`, or the `.reagent`
    /// folder itself), else `$REAGENT_WORKSPACE`, else the nearest
    /// `.reagent` from the current directory upwards.
    pub fn find(explicit: Option<&Path>) -> anyhow::Result<Workspace> {
        let from_env = std::env::var_os("REAGENT_WORKSPACE").map(PathBuf::from);
        if let Some(p) = explicit.map(Path::to_path_buf).or(from_env) {
            for candidate in [p.join(Self::DIR), p.clone()] {
                if candidate.join("reagent.redb").exists() {
                    return Ok(Workspace {
                        dir: candidate.canonicalize()?,
                    });
                }
            }
            bail!(
                "{} is not a reagent workspace (no .reagent/reagent.redb); create one with `reagent init {}`",
                p.display(),
                p.display()
            );
        }
        let cwd = std::env::current_dir()?;
        for dir in cwd.ancestors() {
            let candidate = dir.join(Self::DIR);
            if candidate.join("reagent.redb").exists() {
                return Ok(Workspace {
                    dir: candidate.canonicalize()?,
                });
            }
        }
        bail!(
            "no reagent workspace here or above {}; create one with `reagent init`, or pass --workspace DIR",
            cwd.display()
        )
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.join("reagent.redb")
    }

    pub fn jobs_dir(&self) -> PathBuf {
        self.dir.join("jobs")
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("wake.sock")
    }

    /// The workspace's governance policy file (Cedar).
    pub fn policy_path(&self) -> PathBuf {
        self.dir.join("policy.cedar")
    }

    /// The policy in force: `policy.cedar` if present, else the default.
    /// A malformed file is an error (with line and column), never ignored.
    pub fn policy(&self) -> anyhow::Result<crate::governance::policy::Policy> {
        let path = self.policy_path();
        if path.exists() {
            Ok(crate::governance::policy::Policy::load(&path)?)
        } else {
            Ok(crate::governance::policy::Policy::default_policy())
        }
    }

    /// The project folder (the parent of `.reagent`).
    pub fn project_dir(&self) -> PathBuf {
        self.dir
            .parent()
            .map_or_else(|| self.dir.clone(), Path::to_path_buf)
    }

    /// Opens the store, waiting up to `patience` while another process has it.
    /// While it waits it leaves a [`TURN_FILE`] asking a busy driver for a
    /// turn (without one, `reagent status` beside a driver of quick jobs
    /// waited ten seconds and more for a gap between passes).
    pub fn open_store(&self, patience: Duration) -> anyhow::Result<Store> {
        let start = Instant::now();
        let turn = self.dir.join(TURN_FILE);
        let mut asked = false;
        loop {
            match Store::open(&self.db_path()) {
                Ok(s) => {
                    if asked {
                        let _ = std::fs::remove_file(&turn);
                    }
                    return Ok(s);
                }
                Err(StoreError::Busy { .. }) if start.elapsed() < patience => {
                    asked = std::fs::write(&turn, b"").is_ok() || asked;
                    std::thread::sleep(Duration::from_millis(15));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A driver about to take the store again: when another process asked
    /// for a turn, wait long enough for it to get in (it polls every 15 ms).
    fn give_a_turn(&self) {
        let turn = self.dir.join(TURN_FILE);
        let start = Instant::now();
        while turn.exists() && start.elapsed() < Duration::from_millis(200) {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Left by a process killed while it waited, it would cost every
        // pass 200 ms: a live waiter writes it again at its next try.
        let _ = std::fs::remove_file(&turn);
    }

    /// Local jobs and Slurm jobs, chosen per job by its campaign's backend.
    pub fn backend(&self) -> Dispatch {
        Dispatch::new(self.jobs_dir())
    }

    pub fn wake_command(&self) -> anyhow::Result<WakeCommand> {
        Ok(WakeCommand {
            exe: std::env::current_exe().context("cannot find the reagent executable")?,
            workspace: self.dir.clone(),
        })
    }
}

/// Loads both strategies under their grants; each must be accepted.
pub fn inspect_strategies<'a>(
    s: &'a crate::spec::StrategiesConfig,
    sandbox: &Sandbox,
) -> anyhow::Result<
    Vec<(
        &'static str,
        &'a crate::strategy::StrategySource,
        crate::sandbox::ComponentInfo,
    )>,
> {
    let mut out = Vec::new();
    for (role, source) in [("generator", &s.generator), ("debugger", &s.debugger)] {
        let info = sandbox
            .inspect(source, &s.grants)
            .with_context(|| format!("{role} {source}"))?;
        if !info.accepted {
            bail!(
                "{role} {source} is refused: {}",
                info.refusals
                    .iter()
                    .map(|r| format!("{}: {}", r.import, r.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        out.push((role, source, info));
    }
    Ok(out)
}

/// The titles of the hypotheses the generator would propose first: the
/// same call the engine makes when the campaign starts validating (its
/// context, its seed, the insight records it is shown), made now on the
/// just-registered campaign. Empty when the generator cannot say.
pub fn preview_slate(store: &Store, sandbox: &Sandbox, id: u64) -> anyhow::Result<Vec<String>> {
    use crate::records::campaign::Stage;
    use crate::strategy::{CallInput, CallOutput};
    let view = crate::campaign::view::View::load(store, id)?;
    let spec = &view.row.spec;
    let Ok(generator) = sandbox.load(&spec.strategies.generator, &spec.strategies.grants) else {
        return Ok(Vec::new());
    };
    let left = view.left(Stage::Validate);
    let mut data = view.strategy_data();
    if spec.strategies.grants.insights {
        data.insights = crate::insights::served(store, spec, Some(id))?;
    }
    let (record, _) = sandbox.call(
        &generator,
        CallInput::Propose {
            context: view.context(Stage::Validate, 0, left),
            max: left,
        },
        std::sync::Arc::new(data),
        Default::default(),
        &spec.strategies.limits,
    );
    Ok(match record.outcome {
        Ok(CallOutput::Hypotheses(h)) => h.into_iter().map(|h| h.title).collect(),
        _ => Vec::new(),
    })
}

/// What a driver keeps across passes: loaded strategies, and campaign
/// views (valid while nobody else committed).
#[derive(Default)]
pub struct StrategyCache {
    strategies: crate::campaign::engine::LoadedStrategies,
    views: crate::campaign::engine::CachedViews,
}

impl StrategyCache {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Advances every active campaign (or just `only`) once. Under a workspace
/// quota every active campaign is advanced whatever `only` says (the quota
/// is shared), and launches wait until all have been: then free slots go
/// out by weighted fair share (`Engine::share_slots`).
pub fn pass(
    ws: &Workspace,
    store: &Store,
    sandbox: &Sandbox,
    only: Option<u64>,
    cache: &mut StrategyCache,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<Vec<(u64, Pass)>> {
    let quota = crate::quota::load(&ws.dir)?;
    let only = if quota.is_some() { None } else { only };
    let backend = ws.backend();
    let mut engine = Engine::new(store, sandbox, &backend, Some(ws.wake_command()?), |p| {
        progress(p)
    })
    .with_strategies(std::mem::take(&mut cache.strategies))
    .with_views(std::mem::take(&mut cache.views))
    .with_quota(quota);
    let mut out = Vec::new();
    for c in store.campaigns()? {
        if only.is_some_and(|id| id != c.id) || !c.state.is_active() {
            continue;
        }
        engine.resume_running(c.id)?;
        out.push((c.id, engine.advance(c.id)?));
    }
    for (id, in_flight) in engine.share_slots()? {
        if let Some((_, p)) = out.iter_mut().find(|(c, _)| *c == id) {
            p.in_flight = in_flight;
            p.changed = true;
            if let Some(c) = store.campaign(id)? {
                p.state = c.state;
            }
        }
    }
    let (strategies, views) = engine.into_parts();
    cache.strategies = strategies;
    cache.views = views;
    if out.iter().any(|(_, p)| p.changed) {
        poke_watchers(ws);
        if crate::export::load(&ws.dir)?.is_some() {
            crate::export::trigger(&ws.dir)?;
        }
    }
    // Someone to tell: spool what happened, and let a detached process
    // deliver it (never the driver: a slow receiver must not hold a pass).
    if let Some(cfg) = crate::notify::load(&ws.dir)? {
        crate::notify::collect(&ws.dir, store, &cfg, crate::store::now_ms())?;
        crate::notify::start_delivery(&ws.dir)?;
    }
    Ok(out)
}

/// Marks campaigns with jobs in flight as hibernating.
fn hibernate_all(ws: &Workspace, store: &Store, sandbox: &Sandbox) -> anyhow::Result<()> {
    let backend = ws.backend();
    let mut engine = Engine::new(store, sandbox, &backend, None, |_| {});
    for c in store.campaigns()? {
        if c.state.is_active() {
            engine.hibernate(c.id)?;
        }
    }
    Ok(())
}

/// The datagram socket `reagent serve` listens on for changes.
pub const WATCH_SOCKET: &str = "watch.sock";

/// Tells a live `reagent serve` that the workspace changed (it refreshes
/// the open pages). Best effort: nobody may be listening.
pub fn poke_watchers(ws: &Workspace) {
    let path = ws.dir.join(WATCH_SOCKET);
    if path.exists()
        && let Ok(sock) = std::os::unix::net::UnixDatagram::unbound()
    {
        let _ = sock.set_nonblocking(true);
        let _ = sock.send_to(b"changed", &path);
    }
}

/// The process's sandbox: one wasmtime engine, and the components it has
/// loaded kept for the process (`reagent run FILE` plans, previews and
/// drives with the same strategies; a Python one is ~35 ms from disk).
pub fn new_sandbox() -> anyhow::Result<&'static Sandbox> {
    static SANDBOX: std::sync::OnceLock<Sandbox> = std::sync::OnceLock::new();
    if let Some(s) = SANDBOX.get() {
        return Ok(s);
    }
    let s = Sandbox::new(SandboxConfig::default())?;
    Ok(SANDBOX.get_or_init(|| s))
}

/// In `.reagent/`: present while a process waits for the store a driver
/// holds (see [`Workspace::open_store`]).
const TURN_FILE: &str = "store.turn";

/// A bound wake socket that removes its file on drop, but only while the
/// file is still its own (another process may have replaced a stale one).
struct BoundSocket {
    listener: UnixListener,
    path: PathBuf,
    inode: u64,
}

impl BoundSocket {
    /// Binds `path`, replacing a stale socket file (one nobody answers on).
    fn bind(path: &Path) -> anyhow::Result<BoundSocket> {
        use std::os::unix::fs::MetadataExt as _;
        if UnixStream::connect(path).is_err() {
            let _ = std::fs::remove_file(path);
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        let inode = std::fs::metadata(path)?.ino();
        Ok(BoundSocket {
            listener,
            path: path.to_path_buf(),
            inode,
        })
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt as _;
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Wake notices that wait for the end of the next pass, at most this many.
/// Past it a notice is answered at once (a pass is due anyway) and closed,
/// so no number of clients can take the driver's file descriptors (a
/// hundred idle connections once left a job's status unreadable, "lost").
pub const MAX_WAITING_WAKES: usize = 16;
/// How long a connection may take to say `wake`; silence is closed.
const WAKE_READ_TIMEOUT: Duration = Duration::from_millis(100);

/// Reads one notice from a fresh connection: the stream if it said `wake`,
/// else `None` (and the connection is closed).
fn read_wake(stream: UnixStream) -> Option<UnixStream> {
    use std::io::Read as _;
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(WAKE_READ_TIMEOUT)).ok()?;
    let mut line = Vec::with_capacity(8);
    let mut byte = [0u8; 1];
    while line.len() < 8 {
        match (&stream).read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) => line.push(byte[0]),
            _ => return None,
        }
    }
    (line == b"wake").then_some(stream)
}

/// Adds a notice to those waiting for the next pass, or answers it now
/// when [`MAX_WAITING_WAKES`] already wait.
fn enqueue_wake(waiting: &mut Vec<UnixStream>, stream: UnixStream) {
    if waiting.len() < MAX_WAITING_WAKES {
        waiting.push(stream);
    } else {
        reply(vec![stream]);
    }
}

fn serve_pending(listener: &UnixListener, waiting: &mut Vec<UnixStream>) {
    while let Ok((stream, _)) = listener.accept() {
        if let Some(s) = read_wake(stream) {
            enqueue_wake(waiting, s);
        }
    }
}

fn reply(streams: Vec<UnixStream>) {
    for mut s in streams {
        let _ = s.write_all(b"ok\n");
    }
}

/// `reagent wake`: hand the notice to a live driver, or become the driver
/// for one pass (repeated while more notices arrive) and leave.
pub fn wake(ws: &Workspace, progress: &mut dyn FnMut(Progress)) -> anyhow::Result<()> {
    let sock = ws.socket_path();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(mut stream) = UnixStream::connect(&sock) {
            stream.set_read_timeout(Some(Duration::from_secs(300)))?;
            if stream.write_all(b"wake\n").is_ok() {
                let mut line = String::new();
                if BufReader::new(&stream).read_line(&mut line).is_ok() && line.trim() == "ok" {
                    return Ok(());
                }
            }
            // The driver left without answering: start over.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let store = match Store::open(&ws.db_path()) {
            Ok(s) => s,
            Err(StoreError::Busy { .. }) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        // We own the store: take the socket so later wakes reach us. (A
        // live driver would have answered the connect above.)
        let bound = match BoundSocket::bind(&sock) {
            Ok(b) => b,
            Err(_) => {
                // A driver appeared in between: hand over to it.
                drop(store);
                continue;
            }
        };
        let listener = &bound.listener;
        listener.set_nonblocking(true)?;
        let sandbox = new_sandbox()?;
        let mut cache = StrategyCache::new();
        let mut waiting = Vec::new();
        loop {
            pass(ws, &store, sandbox, None, &mut cache, progress)?;
            reply(std::mem::take(&mut waiting));
            serve_pending(listener, &mut waiting);
            if waiting.is_empty() {
                break;
            }
        }
        hibernate_all(ws, &store, sandbox)?;
        drop(bound);
        return Ok(());
    }
    bail!("timed out waking the workspace {}", ws.dir.display())
}

/// What `run` does once nothing more can be launched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Block on wake notices until the campaigns end.
    Foreground,
    /// Launch what can be launched and exit; job supervisors wake the host.
    Detach,
}

/// How a `run` ended.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd {
    /// The campaign's final pass.
    pub pass: Pass,
    /// `stop` was set (Ctrl-C, SIGTERM, SIGHUP): the driver stopped between
    /// passes and hibernated what it drives; running jobs go on under their
    /// supervisors and wake the workspace when they end.
    pub interrupted: bool,
}

/// How often a waiting foreground driver looks at its stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);
/// How often a foreground driver looks at running trials' curves when a
/// campaign stops losing trials early (detached campaigns look at wakes).
const STOPPING_POLL: Duration = Duration::from_millis(500);

/// How long an idle foreground driver waits for a wake notice: a few
/// seconds as a fallback (a wake that raced our start may have driven a
/// step without us), less until the next approval request falls due, and
/// often while a campaign with a `[stopping]` rule has trials running
/// (early stopping reads their curves).
fn idle_wait(store: &Store, in_flight: bool) -> anyhow::Result<Duration> {
    let mut wait = Duration::from_secs(10);
    if in_flight
        && store
            .campaigns()?
            .iter()
            .any(|c| c.state.is_active() && c.spec.stopping.is_some())
    {
        wait = wait.min(STOPPING_POLL);
    }
    let now = crate::store::now_ms();
    for a in store.approvals()? {
        if a.state == crate::governance::ApprovalState::Pending {
            let due = Duration::from_millis(a.expires_ms.saturating_sub(now) + 50);
            wait = wait.min(due);
        }
    }
    Ok(wait)
}

/// `reagent run`: drives campaign `id` (with its workspace peers) until it
/// ends (foreground), until only waiting is left (detach), or until `stop`
/// is set, checked between passes and while waiting.
pub fn run(
    ws: &Workspace,
    id: u64,
    mode: RunMode,
    progress: &mut dyn FnMut(Progress),
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<RunEnd> {
    let stopped = || stop.load(std::sync::atomic::Ordering::SeqCst);
    let sock = ws.socket_path();
    let sandbox = new_sandbox()?;
    let mut cache = StrategyCache::new();
    if mode == RunMode::Detach {
        let store = ws.open_store(Duration::from_secs(30))?;
        let passes = pass(ws, &store, sandbox, Some(id), &mut cache, progress)?;
        hibernate_all(ws, &store, sandbox)?;
        let c = store
            .campaign(id)?
            .with_context(|| format!("no campaign {id}"))?;
        let in_flight = passes
            .into_iter()
            .find(|(c, _)| *c == id)
            .map_or(0, |(_, p)| p.in_flight);
        return Ok(RunEnd {
            pass: Pass {
                state: c.state,
                in_flight,
                changed: false,
            },
            interrupted: false,
        });
    }

    // A `reagent wake` holds the socket for a moment and leaves; a
    // foreground `reagent run` keeps it.
    let start = Instant::now();
    let bound = loop {
        if UnixStream::connect(&sock).is_err()
            && let Ok(b) = BoundSocket::bind(&sock)
        {
            break b;
        }
        if start.elapsed() > Duration::from_secs(15) {
            bail!(
                "another reagent process is driving this workspace ({} answers); use `reagent status` to watch it",
                sock.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let listener = bound.listener.try_clone()?;
    let (tx, rx) = mpsc::channel::<UnixStream>();
    std::thread::spawn(move || {
        // Each connection is read here, at once: only notices that said
        // `wake` reach the driver, which answers and closes them.
        for stream in listener.incoming().flatten() {
            if let Some(s) = read_wake(stream)
                && tx.send(s).is_err()
            {
                return;
            }
        }
    });
    let mut waiting: Vec<UnixStream> = Vec::new();
    let result = loop {
        // Notices that came while the last pass ran are covered by the next
        // one: take them now and answer them after it. (Left in the channel
        // while passes kept finding work, each held a descriptor here and a
        // supervisor waiting there: a soak of quick jobs had 544 open.)
        while let Ok(s) = rx.try_recv() {
            enqueue_wake(&mut waiting, s);
        }
        ws.give_a_turn();
        let store = ws.open_store(Duration::from_secs(60))?;
        // Drive every active campaign of the workspace while we hold the
        // socket (their jobs' wakes come to us); stop when `id` ends.
        let passes = pass(ws, &store, sandbox, None, &mut cache, progress)?;
        reply(std::mem::take(&mut waiting));
        crate::jobs::release_freed_memory();
        let passes_in_flight = passes.iter().any(|(_, p)| p.in_flight > 0);
        let current = match passes.into_iter().find(|(c, _)| *c == id) {
            Some((_, p)) => p,
            None => {
                let c = store
                    .campaign(id)?
                    .with_context(|| format!("no campaign {id}"))?;
                Pass {
                    state: c.state,
                    in_flight: 0,
                    changed: false,
                }
            }
        };
        if !current.state.is_active() || stopped() {
            hibernate_all(ws, &store, sandbox)?;
            let pass = match store.campaign(id)? {
                Some(c) if stopped() && current.state.is_active() => Pass {
                    state: c.state,
                    ..current
                },
                _ => current,
            };
            break RunEnd {
                pass,
                interrupted: stopped() && current.state.is_active(),
            };
        }
        if current.changed {
            // Something moved: look again before sleeping.
            continue;
        }
        // Nothing to do but wait: let go of the store and block until a
        // job's supervisor wakes us.
        let wait = idle_wait(&store, passes_in_flight)?;
        drop(store);
        // Wait in slices, so a stop request is seen within STOP_POLL.
        let until = Instant::now() + wait;
        loop {
            let slice = until
                .saturating_duration_since(Instant::now())
                .min(STOP_POLL);
            match rx.recv_timeout(slice) {
                Ok(s) => enqueue_wake(&mut waiting, s),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the wake listener stopped"),
            }
            if !waiting.is_empty() || stopped() || Instant::now() >= until {
                break;
            }
        }
        while let Ok(s) = rx.try_recv() {
            enqueue_wake(&mut waiting, s);
        }
    };
    reply(waiting);
    drop(bound);
    Ok(result)
}
