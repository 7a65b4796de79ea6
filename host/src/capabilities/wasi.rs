//! The virtual WASI p2 a strategy sees: nothing in it.
//!
//! Linked: `wasi:io/{error,poll,streams}`, `wasi:clocks/{wall-clock,
//! monotonic-clock}`, `wasi:random/{random,insecure,insecure-seed}`,
//! `wasi:cli/{environment,exit,stdin,stdout,stderr,terminal-*}`.
//! Never linked: `wasi:filesystem/*`, `wasi:sockets/*`, `wasi:http/*` — a
//! component importing them is refused at load (see `sandbox::imports`).
//!
//! The context grants nothing: no preopens, no env, no args, stdin closed;
//! stdout/stderr go to capped in-memory buffers that become the strategy
//! log; clocks are virtual (a fixed wall time, a monotonic counter that
//! advances one microsecond per read); random bytes come from the call seed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream, WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::p2::bindings::sync as p2;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiView};

/// The fixed wall-clock time every strategy sees: 2020-01-01T00:00:00Z.
pub const VIRTUAL_WALL_CLOCK_SECS: u64 = 1_577_836_800;

/// Adds exactly the virtual WASI set to `linker`.
pub fn add_to_linker<T: WasiView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let l = linker;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<T, HasTable>(l, |t| {
        t.ctx().table
    })?;
    p2::io::poll::add_to_linker::<T, HasTable>(l, |t| t.ctx().table)?;
    p2::io::streams::add_to_linker::<T, HasTable>(l, |t| t.ctx().table)?;

    use wasmtime_wasi::p2::bindings::{cli, clocks, random};
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
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
    Ok(())
}

struct HasTable;

impl HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// Builds the empty WASI context for one call.
pub fn context(seed: u64, stdout: CappedPipe, stderr: CappedPipe) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdin(std::io::empty())
        .stdout(stdout)
        .stderr(stderr)
        .wall_clock(VirtualWallClock)
        .monotonic_clock(VirtualMonotonicClock::default())
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

#[derive(Default)]
struct VirtualMonotonicClock {
    reads: std::sync::atomic::AtomicU64,
}

impl HostMonotonicClock for VirtualMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000
    }
    fn now(&self) -> u64 {
        1_000
            * self
                .reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
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
