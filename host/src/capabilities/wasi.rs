//! The virtual WASI p2 a strategy sees: nothing in it.
//!
//! Linked: `wasi:io/{error,poll,streams}`, `wasi:clocks/{wall-clock,
//! monotonic-clock}`, `wasi:random/{random,insecure,insecure-seed}`,
//! `wasi:cli/{environment,exit,stdin,stdout,stderr,terminal-*}`.
//! Linked with nothing behind them (a componentize-py component's Python
//! runtime imports them whether or not the strategy uses them; see
//! [`add_inert_to_linker`]): `wasi:filesystem/{types,preopens}`,
//! `wasi:sockets/{network,instance-network,tcp,tcp-create-socket,udp,
//! udp-create-socket,ip-name-lookup}`. No preopened directory exists, so no
//! file descriptor can ever be obtained; creating a TCP or UDP socket
//! answers `access-denied` here, and name lookups are refused by the
//! context (`allow_ip_name_lookup(false)`), so no socket resource can ever
//! be created either.
//! Never linked: `wasi:http/*` and anything else — a component importing
//! them is refused at load (see `sandbox::surface`).
//!
//! The context grants nothing: no preopens, no env, no args, stdin closed;
//! stdout/stderr go to capped in-memory buffers that become the strategy
//! log; random bytes come from the call seed.
//!
//! Time is virtual, and so is waiting. The wall clock is fixed. The
//! monotonic clock ([`VirtualTime`]) starts at 0 for every call and advances
//! one microsecond per read. `wasi:clocks/monotonic-clock` is implemented
//! here rather than by wasmtime-wasi, whose timers sleep on the real clock
//! inside a host call, where the epoch deadline cannot interrupt them (a
//! strategy could hold the host for centuries, and count loop turns against
//! real time). Here a timer from `subscribe-duration`/`subscribe-instant`
//! is ready at once: checking it (`ready`, `block`, `poll`) moves the
//! virtual clock to its deadline, so `now()` after a "sleep" is consistent
//! and every run of the same call sees the same times.
//!
//! No pollable a strategy can obtain waits on anything real: the others are
//! stdin (closed: ready at once), stdout and stderr ([`CappedPipe`]: always
//! writable), so `poll`, `block` and the streams' `blocking-*` functions
//! never sleep.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream, WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::bindings::sync as p2;
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiView};

use super::CallState;

/// The fixed wall-clock time every strategy sees: 2020-01-01T00:00:00Z.
pub const VIRTUAL_WALL_CLOCK_SECS: u64 = 1_577_836_800;

/// Adds exactly the virtual WASI set to `linker`.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    type T = CallState;
    let l = linker;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<T, HasTable>(l, |t| {
        t.ctx().table
    })?;
    p2::io::poll::add_to_linker::<T, HasTable>(l, |t| t.ctx().table)?;
    p2::io::streams::add_to_linker::<T, HasTable>(l, |t| t.ctx().table)?;

    use wasmtime_wasi::p2::bindings::{cli, clocks, random};
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    // Our own timers, never wasmtime-wasi's (see the module docs).
    clocks::monotonic_clock::add_to_linker::<T, VirtualClock>(l, |t| VirtualClockView {
        time: &t.time,
        table: &mut t.table,
    })?;
    random::random::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    add_inert_to_linker(l)
}

/// The filesystem and socket interfaces, linked so that a component whose
/// language runtime imports them (componentize-py's Python) can be
/// instantiated, with nothing behind them. The only ways in — listing the
/// preopened directories and creating a socket — are ours and hand out
/// nothing; every other function of these interfaces is a method of a
/// resource (a descriptor, a socket, a lookup stream) that a strategy can
/// therefore never hold. `sockets/network`'s `network` resource exists but
/// carries no capability: name lookup is refused by the context, and the
/// sockets it would be passed to cannot be created.
fn add_inert_to_linker(l: &mut Linker<CallState>) -> wasmtime::Result<()> {
    type T = CallState;
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
    use wasmtime_wasi::p2::bindings::{filesystem, sockets};
    use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView as _};
    filesystem::preopens::add_to_linker::<T, NoAccess>(l, |t| Nothing(&mut t.table))?;
    p2::filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    sockets::tcp_create_socket::add_to_linker::<T, NoAccess>(l, |t| Nothing(&mut t.table))?;
    p2::sockets::udp_create_socket::add_to_linker::<T, NoAccess>(l, |t| Nothing(&mut t.table))?;
    sockets::instance_network::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::network::add_to_linker::<T, WasiSockets>(l, &Default::default(), T::sockets)?;
    sockets::ip_name_lookup::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    p2::sockets::tcp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    p2::sockets::udp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    Ok(())
}

/// The host side of the filesystem and socket constructors: no directory,
/// no socket. (It holds the table only to drop what it is handed back.)
struct Nothing<'a>(&'a mut ResourceTable);

struct NoAccess;

impl HasData for NoAccess {
    type Data<'a> = Nothing<'a>;
}

impl wasmtime_wasi::p2::bindings::filesystem::preopens::Host for Nothing<'_> {
    fn get_directories(
        &mut self,
    ) -> wasmtime::Result<Vec<(Resource<wasmtime_wasi::filesystem::Descriptor>, String)>> {
        Ok(Vec::new())
    }
}

type SocketErrorCode = wasmtime_wasi::p2::bindings::sockets::network::ErrorCode;

// Required by the socket constructors' bindings for turning their errors
// into `error-code`s; the only errors here are our own `access-denied`s.
impl wasmtime_wasi::p2::bindings::sockets::network::Host for Nothing<'_> {
    fn convert_error_code(
        &mut self,
        error: wasmtime_wasi::p2::SocketError,
    ) -> wasmtime::Result<SocketErrorCode> {
        error.downcast()
    }

    fn network_error_code(
        &mut self,
        _err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<SocketErrorCode>> {
        Ok(None)
    }
}

impl wasmtime_wasi::p2::bindings::sockets::network::HostNetwork for Nothing<'_> {
    fn drop(&mut self, network: Resource<wasmtime_wasi::p2::Network>) -> wasmtime::Result<()> {
        self.0.delete(network)?;
        Ok(())
    }
}
type AddressFamily = wasmtime_wasi::p2::bindings::sockets::network::IpAddressFamily;

impl wasmtime_wasi::p2::bindings::sockets::tcp_create_socket::Host for Nothing<'_> {
    fn create_tcp_socket(
        &mut self,
        _family: AddressFamily,
    ) -> wasmtime_wasi::p2::SocketResult<Resource<wasmtime_wasi::p2::TcpSocket>> {
        Err(SocketErrorCode::AccessDenied.into())
    }
}

impl p2::sockets::udp_create_socket::Host for Nothing<'_> {
    fn create_udp_socket(
        &mut self,
        _family: AddressFamily,
    ) -> wasmtime_wasi::p2::SocketResult<Resource<wasmtime_wasi::p2::UdpSocket>> {
        Err(SocketErrorCode::AccessDenied.into())
    }
}

struct HasTable;

impl HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// Builds the empty WASI context for one call; `time` is the call's
/// virtual monotonic clock (also given to [`CallState`]).
pub fn context(seed: u64, stdout: CappedPipe, stderr: CappedPipe, time: VirtualTime) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdin(std::io::empty())
        .stdout(stdout)
        .stderr(stderr)
        .wall_clock(VirtualWallClock)
        .monotonic_clock(time)
        .secure_random(wasmtime_wasi::Deterministic::new(seed_bytes(seed, 0x5EC)))
        .insecure_random(wasmtime_wasi::Deterministic::new(seed_bytes(seed, 0x1A5)))
        .insecure_random_seed(u128::from(seed) << 64 | u128::from(seed ^ 0x9E37_79B9_7F4A_7C15))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    builder.build()
}

/// 1 KiB of bytes derived from `seed` (SplitMix64); the generator cycles
/// through them, which is plenty for hash-map seeds and the like.
fn seed_bytes(seed: u64, salt: u64) -> Vec<u8> {
    let mut state = seed ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut out = Vec::with_capacity(1024);
    while out.len() < 1024 {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

struct VirtualWallClock;

impl HostWallClock for VirtualWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::from_secs(VIRTUAL_WALL_CLOCK_SECS)
    }
}

/// The virtual monotonic clock of one call, in nanoseconds, shared by the
/// call's timers. Starts at 0; each read returns the time and then moves
/// it one microsecond on; a timer that is checked moves it to the timer's
/// deadline. It never goes back and saturates at `u64::MAX`.
#[derive(Debug, Clone, Default)]
pub struct VirtualTime(Arc<AtomicU64>);

/// How far the virtual monotonic clock moves per read.
const READ_STEP_NS: u64 = 1_000;

impl VirtualTime {
    /// The time now, moving the clock one step on.
    fn read(&self) -> u64 {
        let step = |t: u64| Some(t.saturating_add(READ_STEP_NS));
        match self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, step)
        {
            Ok(t) | Err(t) => t,
        }
    }

    /// The time now, without moving the clock.
    fn peek(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Moves the clock to `deadline` unless it is already past it.
    fn advance_to(&self, deadline: u64) {
        self.0.fetch_max(deadline, Ordering::Relaxed);
    }
}

impl HostMonotonicClock for VirtualTime {
    fn resolution(&self) -> u64 {
        READ_STEP_NS
    }
    fn now(&self) -> u64 {
        self.read()
    }
}

/// A timer: ready as soon as it is checked, which moves the virtual clock
/// to its deadline. Nothing here ever waits on real time.
struct Timer {
    deadline: u64,
    time: VirtualTime,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Timer {
    async fn ready(&mut self) {
        self.time.advance_to(self.deadline);
    }
}

/// `wasi:clocks/monotonic-clock` on the call's [`VirtualTime`].
struct VirtualClock;

impl HasData for VirtualClock {
    type Data<'a> = VirtualClockView<'a>;
}

struct VirtualClockView<'a> {
    time: &'a VirtualTime,
    table: &'a mut ResourceTable,
}

impl VirtualClockView<'_> {
    fn timer(&mut self, deadline: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let timer = self.table.push(Timer {
            deadline,
            time: self.time.clone(),
        })?;
        wasmtime_wasi::p2::subscribe(self.table, timer)
    }
}

impl monotonic_clock::Host for VirtualClockView<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(self.time.read())
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(READ_STEP_NS)
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.timer(when)
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let deadline = self.time.peek().saturating_add(duration);
        self.timer(deadline)
    }
}

/// An output stream that keeps the first `cap` bytes and counts the rest.
/// Writing never fails: a chatty strategy loses output, not its call.
#[derive(Clone)]
pub struct CappedPipe {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default, Debug, Clone)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub dropped: u64,
    cap: usize,
}

impl CappedPipe {
    pub fn new(cap: usize) -> Self {
        CappedPipe {
            inner: Arc::new(Mutex::new(Captured {
                cap,
                ..Captured::default()
            })),
        }
    }

    pub fn take(&self) -> Captured {
        std::mem::take(&mut *self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The captured bytes as text that still fits the cap. Invalid UTF-8
    /// becomes U+FFFD (three bytes for one), so decoding can grow the text:
    /// what no longer fits is dropped, and counted with the rest.
    pub fn take_text(&self) -> (String, u64) {
        let Captured {
            bytes,
            dropped,
            cap,
        } = self.take();
        let mut text = String::with_capacity(bytes.len().min(cap));
        let mut used = 0usize;
        'chunks: for chunk in bytes.utf8_chunks() {
            for ch in chunk.valid().chars() {
                if text.len() + ch.len_utf8() > cap {
                    break 'chunks;
                }
                text.push(ch);
                used += ch.len_utf8();
            }
            let bad = chunk.invalid().len();
            if bad > 0 {
                if text.len() + char::REPLACEMENT_CHARACTER.len_utf8() > cap {
                    break;
                }
                text.push(char::REPLACEMENT_CHARACTER);
                used += bad;
            }
        }
        (text, dropped + (bytes.len() - used) as u64)
    }

    fn push(&self, data: &[u8]) {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = c.cap.saturating_sub(c.bytes.len());
        let kept = room.min(data.len());
        c.bytes.extend_from_slice(&data[..kept]);
        c.dropped += (data.len() - kept) as u64;
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only the p3 bindings use this, and they are never linked.
        Box::new(tokio::io::sink())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::CappedPipe;

    fn text_of(cap: usize, writes: &[&[u8]]) -> (String, u64) {
        let pipe = CappedPipe::new(cap);
        for w in writes {
            pipe.push(w);
        }
        pipe.take_text()
    }

    #[test]
    fn decoded_text_never_passes_the_cap_and_every_byte_is_accounted_for() {
        // Ten invalid bytes: lossy decoding would make 30 bytes of U+FFFD.
        let (text, dropped) = text_of(10, &[&[0xff; 10]]);
        assert_eq!(text, "\u{fffd}".repeat(3));
        assert_eq!(dropped, 7);
        // A three-byte character cut by the cap is dropped, not half-kept.
        let (text, dropped) = text_of(4, &["ab€".as_bytes()]);
        assert_eq!(text, "ab");
        assert_eq!(dropped, 3);
        // Bytes past the cap are counted alongside what decoding dropped.
        let (text, dropped) = text_of(3, &[b"hello"]);
        assert_eq!((text.as_str(), dropped), ("hel", 2));
        // Valid text is kept whole.
        let (text, dropped) = text_of(64, &["héllo\n".as_bytes()]);
        assert_eq!((text.as_str(), dropped), ("héllo\n", 0));
    }
}
