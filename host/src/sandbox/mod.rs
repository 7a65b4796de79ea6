//! The sandbox: the only module that configures and drives wasmtime.
//!
//! The rest of the host asks it three things: *inspect* a component (what
//! it imports and exports, would we accept it), *load* it with grants (a
//! [`Strategy`] ready to call), and *call* it (or *replay* a recorded call).
//! Every call runs in a fresh store under [`Limits`] and comes back as a
//! [`CallRecord`]; a trap never unwinds into the host and the store is
//! dropped after every call.

pub mod cache;
pub mod surface;

pub use crate::limits::Limits;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

use crate::capabilities::{self, Answers, CallState};
use crate::contract::debugger::{Debugger, DebuggerPre};
use crate::contract::generator::{Generator, GeneratorPre};
use crate::strategy::data::{MemoryStore, StaticData, StrategyData};
use crate::strategy::record::{CallError, CallRecord, StrategyLog, Usage};
use crate::strategy::{CallInput, CallOutput, Grants, StrategySource, World, builtin, validate};
use surface::Refusal;

pub use crate::limits::{MAX_INSTANCES, MAX_MEMORY_BYTES};
/// Epoch tick; deadlines are rounded up to whole ticks.
const TICK: Duration = Duration::from_millis(1);

/// Paths of the test guests built by `build.rs` (for the test suite and
/// benchmarks; not part of the API).
#[doc(hidden)]
pub mod test_guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Use the pooling instance allocator (faster instantiation).
    pub pooling: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            cache_dir: cache::default_dir(),
            pooling: true,
        }
    }
}

/// What the host knows about a component without running it.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentInfo {
    pub source: String,
    pub sha256: String,
    pub size: u64,
    /// None when the exports match neither world.
    pub world: Option<World>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub sdk_version: Option<String>,
    pub accepted: bool,
    /// Why the host refuses it (empty when accepted).
    pub refusals: Vec<Refusal>,
    /// Optional capabilities it imports that the grants withhold: linked,
    /// and every call to them answers nothing (`capabilities/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ungranted: Vec<String>,
    /// True when this load compiled it; false when it came from the cache.
    #[serde(skip)]
    pub compiled: bool,
}

/// A component loaded under grants, ready to call.
pub struct Strategy {
    pub info: ComponentInfo,
    pub grants: Grants,
    pre: Pre,
}

enum Pre {
    Generator(GeneratorPre<CallState>),
    Debugger(DebuggerPre<CallState>),
}

impl std::fmt::Debug for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Strategy")
            .field("info", &self.info)
            .finish()
    }
}

/// Why a component could not be loaded. Each names the source.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read strategy {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("unknown built-in strategy `builtin:{name}`; the built-ins are: {known}")]
    UnknownBuiltin { name: String, known: String },
    #[error(
        "{strategy} is not a WebAssembly file (it does not start with the \\0asm magic); expected a component built for wasm32-wasip2"
    )]
    NotWasm { strategy: String },
    #[error(
        "{strategy} is a core WebAssembly module, not a component; build it with `cargo build --release --target wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule { strategy: String },
    #[error("{strategy} is not a valid component: {message}")]
    Invalid { strategy: String, message: String },
    #[error("{strategy} is refused:\n{}", render_refusals(.refusals))]
    Refused {
        strategy: String,
        refusals: Vec<Refusal>,
    },
}

fn render_refusals(refusals: &[Refusal]) -> String {
    refusals
        .iter()
        .map(|r| format!("  - {}: {}", r.import, r.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The result of replaying a recorded call.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub identical: bool,
    pub differences: Vec<String>,
    pub replayed: CallRecord,
}

/// One engine, its linkers, its compile cache and its epoch ticker.
pub struct Sandbox {
    engine: Engine,
    generator_linker: Linker<CallState>,
    debugger_linker: Linker<CallState>,
    cache: Option<cache::CompileCache>,
    /// Components this sandbox compiled or loaded, by the sha256 of their
    /// wasm: `plan`, the slate preview and the engine of one `reagent run`
    /// load the same strategies, and a Python one costs ~10 ms from disk.
    loaded: std::sync::Mutex<std::collections::HashMap<String, Component>>,
    /// Component files read, by path: (their stat stamp, bytes, sha256).
    files: std::sync::Mutex<FileMemo>,
    ticker: Ticker,
}

type FileMemo = std::collections::HashMap<std::path::PathBuf, ([i64; 7], Arc<[u8]>, String)>;

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("cache", &self.cache)
            .finish()
    }
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> anyhow::Result<Sandbox> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            // Determinism: the same inputs give the same bits on any machine.
            .cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true)
            .max_wasm_stack(1 << 20);
        if config.pooling {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(256)
                .total_core_instances(1024)
                .total_memories(256)
                .total_tables(512)
                .max_memory_size(MAX_MEMORY_BYTES as usize)
                .max_core_instances_per_component(MAX_INSTANCES)
                .max_memories_per_component(MAX_INSTANCES)
                .max_tables_per_component(MAX_INSTANCES)
                .table_elements(100_000)
                // Reuse a slot's first pages by zeroing them rather than
                // unmapping: most strategies touch a few MiB per call, and
                // page faults on a fresh mapping cost more than memset.
                .linear_memory_keep_resident(4 << 20)
                .table_keep_resident(64 << 10);
            // Where the kernel has PAGEMAP_SCAN (6.7+), reset only the pages
            // a call dirtied instead of the first 4 MiB: a Python strategy's
            // call was ~13% faster in one measurement (BENCHMARKS.md).
            pool.pagemap_scan(wasmtime::Enabled::Auto);
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine =
            Engine::new(&wasm).map_err(|e| anyhow::anyhow!("cannot start wasmtime: {e}"))?;

        let mut generator_linker = Linker::new(&engine);
        capabilities::wasi::add_to_linker(&mut generator_linker)
            .map_err(|e| anyhow::anyhow!("linking WASI: {e}"))?;
        Generator::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut generator_linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("linking the generator world: {e}"))?;
        crate::contract::llm::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut generator_linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("linking the llm import: {e}"))?;

        let mut debugger_linker = Linker::new(&engine);
        capabilities::wasi::add_to_linker(&mut debugger_linker)
            .map_err(|e| anyhow::anyhow!("linking WASI: {e}"))?;
        Debugger::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut debugger_linker, |s| s)
            .map_err(|e| anyhow::anyhow!("linking the debugger world: {e}"))?;

        let cache = config
            .cache_dir
            .map(|dir| cache::CompileCache::new(dir, &engine));
        let ticker = Ticker::start(engine.clone());
        Ok(Sandbox {
            engine,
            generator_linker,
            debugger_linker,
            cache,
            loaded: Default::default(),
            files: Default::default(),
            ticker,
        })
    }

    /// A component's bytes and their sha256. A file read before by this
    /// sandbox and unchanged since (same device, inode, size, modification
    /// and change times) is not read and hashed again.
    fn read(&self, source: &StrategySource) -> Result<(Arc<[u8]>, String), LoadError> {
        use std::os::unix::fs::MetadataExt as _;
        let path = match source {
            StrategySource::Builtin(name) => {
                let b = builtin::find(name).ok_or_else(|| LoadError::UnknownBuiltin {
                    name: name.clone(),
                    known: builtin::names(),
                })?;
                return Ok((Arc::from(b.wasm), hex::encode(Sha256::digest(b.wasm))));
            }
            StrategySource::File(path) => path,
        };
        let err = |source| LoadError::Read {
            path: path.display().to_string(),
            source,
        };
        let stamp = |m: &std::fs::Metadata| {
            [
                m.dev() as i64,
                m.ino() as i64,
                m.size() as i64,
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            ]
        };
        let before = std::fs::metadata(path).map_err(err)?;
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((key, bytes, sha256)) = files.get(path)
            && *key == stamp(&before)
        {
            return Ok((Arc::clone(bytes), sha256.clone()));
        }
        let bytes: Arc<[u8]> = Arc::from(std::fs::read(path).map_err(err)?);
        let sha256 = hex::encode(Sha256::digest(&bytes));
        // Kept only when the file did not change while it was read.
        if let Ok(after) = std::fs::metadata(path)
            && stamp(&after) == stamp(&before)
        {
            files.insert(
                path.clone(),
                (stamp(&after), Arc::clone(&bytes), sha256.clone()),
            );
        }
        Ok((bytes, sha256))
    }

    fn compile(
        &self,
        label: &str,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<(Component, bool), LoadError> {
        if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
            return Err(LoadError::NotWasm {
                strategy: label.to_string(),
            });
        }
        if bytes[4..8] == [1, 0, 0, 0] {
            return Err(LoadError::CoreModule {
                strategy: label.to_string(),
            });
        }
        let remember = |component: &Component| {
            self.loaded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(sha256.to_string(), component.clone());
        };
        if let Some(c) = self
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sha256)
        {
            return Ok((c.clone(), false));
        }
        if let Some(cache) = &self.cache
            && let Some(component) = cache.load(&self.engine, sha256)
        {
            remember(&component);
            return Ok((component, false));
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| LoadError::Invalid {
            strategy: label.to_string(),
            message: format!("{e:#}"),
        })?;
        if let Some(cache) = &self.cache {
            cache.store(sha256, &component);
        }
        remember(&component);
        Ok((component, true))
    }

    fn describe(
        &self,
        label: &str,
        (bytes, sha256): (&[u8], String),
        component: &Component,
        grants: &Grants,
        compiled: bool,
    ) -> ComponentInfo {
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let (world, mut refusals) = match surface::world_of(&exports) {
            Ok(world) => (Some(world), surface::refusals(world, &imports)),
            Err(reason) => (
                None,
                vec![Refusal {
                    import: "(exports)".into(),
                    reason,
                }],
            ),
        };
        refusals.dedup();
        let ungranted = surface::ungranted(&imports, grants);
        ComponentInfo {
            source: label.to_string(),
            sha256,
            size: bytes.len() as u64,
            world,
            imports,
            exports,
            sdk_version: surface::sdk_version(bytes),
            accepted: refusals.is_empty(),
            refusals,
            ungranted,
            compiled,
        }
    }

    /// Reads and compiles a component and describes its surface. Succeeds
    /// for any valid component, accepted or not: see `info.accepted`.
    pub fn inspect(
        &self,
        source: &StrategySource,
        grants: &Grants,
    ) -> Result<ComponentInfo, LoadError> {
        let (bytes, sha256) = self.read(source)?;
        let label = source.to_string();
        let (component, compiled) = self.compile(&label, &bytes, &sha256)?;
        Ok(self.describe(&label, (&bytes, sha256), &component, grants, compiled))
    }

    /// Loads a component under `grants`, refusing it when it imports
    /// anything outside its world's surface or the grants.
    pub fn load(&self, source: &StrategySource, grants: &Grants) -> Result<Strategy, LoadError> {
        let (bytes, sha256) = self.read(source)?;
        let label = source.to_string();
        let (component, compiled) = self.compile(&label, &bytes, &sha256)?;
        let info = self.describe(&label, (&bytes, sha256), &component, grants, compiled);
        if !info.accepted {
            return Err(LoadError::Refused {
                strategy: label,
                refusals: info.refusals,
            });
        }
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            strategy: label.clone(),
            message: format!("{e:#}"),
        };
        let pre = match info.world {
            Some(World::Generator) => {
                let pre = self
                    .generator_linker
                    .instantiate_pre(&component)
                    .map_err(invalid)?;
                Pre::Generator(GeneratorPre::new(pre).map_err(invalid)?)
            }
            Some(World::Debugger) => {
                let pre = self
                    .debugger_linker
                    .instantiate_pre(&component)
                    .map_err(invalid)?;
                Pre::Debugger(DebuggerPre::new(pre).map_err(invalid)?)
            }
            None => unreachable!("a component without a world is never accepted"),
        };
        Ok(Strategy {
            info,
            grants: *grants,
            pre,
        })
    }

    /// Calls the strategy once with live data. Returns the record and the
    /// strategy's memory store as the call left it.
    pub fn call(
        &self,
        strategy: &Strategy,
        input: CallInput,
        data: Arc<dyn StrategyData>,
        memory: MemoryStore,
        limits: &Limits,
    ) -> (CallRecord, MemoryStore) {
        let validation_data = Arc::clone(&data);
        self.run(
            strategy,
            input,
            Answers::Live(data),
            memory,
            limits,
            validation_data.as_ref(),
        )
    }

    /// Re-runs a recorded call, answering every import from the recording,
    /// and reports whether the outcome and host calls are bit-identical.
    pub fn replay(&self, strategy: &Strategy, record: &CallRecord) -> ReplayReport {
        let mut differences = Vec::new();
        if strategy.info.sha256 != record.component_sha256 {
            differences.push(format!(
                "component differs: recorded {}, replaying {}",
                record.component_sha256, strategy.info.sha256
            ));
        }
        let answers = Answers::Replay(record.host_calls.iter().cloned().collect::<VecDeque<_>>());
        // Validation already ran on the recorded output; replay compares
        // the raw output hash, so parents need no live data here.
        let (mut replayed, _) = self.run_inner(
            strategy,
            record.input.clone(),
            answers,
            MemoryStore::default(),
            &record.limits,
            None,
        );
        if replayed.output_sha256 != record.output_sha256 {
            differences.push(format!(
                "output differs: recorded sha256 {:?}, replayed {:?}",
                record.output_sha256, replayed.output_sha256
            ));
        }
        if replayed.host_calls.len() != record.host_calls.len() {
            differences.push(format!(
                "the strategy made {} host calls; the recording has {}",
                replayed.host_calls.len(),
                record.host_calls.len()
            ));
        }
        if let (Err(a), Err(b)) = (&record.outcome, &replayed.outcome)
            && a.kind() != b.kind()
        {
            differences.push(format!(
                "error differs: recorded {}, replayed {}",
                a.kind(),
                b.kind()
            ));
        }
        if let Err(e @ CallError::ReplayDiverged { .. }) = &replayed.outcome {
            differences.push(e.to_string());
        }
        if replayed.usage.fuel != record.usage.fuel {
            differences.push(format!(
                "fuel differs: recorded {}, replayed {}",
                record.usage.fuel, replayed.usage.fuel
            ));
        }
        // Validation needs live data; trust the recorded verdict when the
        // raw output is identical.
        if differences.is_empty() {
            replayed.outcome = record.outcome.clone();
        }
        ReplayReport {
            identical: differences.is_empty(),
            differences,
            replayed,
        }
    }

    fn run(
        &self,
        strategy: &Strategy,
        input: CallInput,
        answers: Answers,
        memory: MemoryStore,
        limits: &Limits,
        data: &dyn StrategyData,
    ) -> (CallRecord, MemoryStore) {
        self.run_inner(strategy, input, answers, memory, limits, Some(data))
    }

    fn run_inner(
        &self,
        strategy: &Strategy,
        input: CallInput,
        answers: Answers,
        memory: MemoryStore,
        limits: &Limits,
        validation_data: Option<&dyn StrategyData>,
    ) -> (CallRecord, MemoryStore) {
        let started = Instant::now();
        let stdout = capabilities::wasi::CappedPipe::new(limits.max_stdio_bytes as usize);
        let stderr = capabilities::wasi::CappedPipe::new(limits.max_stdio_bytes as usize);
        let time = capabilities::wasi::VirtualTime::default();
        let wasi = capabilities::wasi::context(
            input.context().seed,
            stdout.clone(),
            stderr.clone(),
            time.clone(),
        );
        let mut state = CallState::new(wasi, time, limits.clone(), answers, memory);
        state.llm_granted = strategy.grants.llm;
        state.insights_granted = strategy.grants.insights;
        state.memory_granted = strategy.grants.memory;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let fuel_set = store.set_fuel(limits.fuel).is_ok();
        let ticks = limits.deadline_ms.div_ceil(TICK.as_millis() as u64).max(1) + 1;
        store.set_epoch_deadline(ticks);
        // The deadline is for the strategy's own time: time the host spent
        // waiting on the language-model endpoint is given back.
        let deadline = Duration::from_millis(limits.deadline_ms);
        store.epoch_deadline_callback(move |ctx| {
            let own = started.elapsed().saturating_sub(ctx.data().waited);
            if own >= deadline {
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            let left = (deadline - own).as_millis() as u64;
            Ok(wasmtime::UpdateDeadline::Continue(
                left.div_ceil(TICK.as_millis() as u64).max(1),
            ))
        });

        let raw: Result<CallOutput, wasmtime::Error> = {
            let _active = self.ticker.active();
            match (&strategy.pre, &input) {
                (Pre::Generator(pre), CallInput::Propose { context, max }) => pre
                    .instantiate(&mut store)
                    .and_then(|g| g.call_propose(&mut store, context, *max))
                    .map(CallOutput::Hypotheses),
                (Pre::Debugger(pre), CallInput::Diagnose { context, failure }) => pre
                    .instantiate(&mut store)
                    .and_then(|d| d.call_diagnose(&mut store, context, failure))
                    .map(CallOutput::Diagnosis),
                _ => Err(wasmtime::Error::msg(format!(
                    "a {} cannot answer a {} call",
                    strategy.info.world.map_or("component", World::name),
                    input.world().export()
                ))),
            }
        };
        let fuel_left = if fuel_set {
            store.get_fuel().unwrap_or(0)
        } else {
            0
        };
        let state = store.into_data();
        let usage = Usage {
            fuel: limits.fuel.saturating_sub(fuel_left),
            peak_memory_bytes: state.limiter.peak_memory as u64,
            host_calls: state.host_calls,
            wall_us: started.elapsed().as_micros() as u64,
        };

        let mut output_sha256 = None;
        let outcome = match raw {
            Err(err) => Err(classify(&err, &state, limits)),
            Ok(output) => {
                // Every string counts, choice values included; the output
                // also counts against the call's byte budget.
                let size = validate::output_bytes(&output);
                let used = state.boundary_bytes.saturating_add(size);
                if size > limits.max_output_bytes {
                    Err(CallError::OutputTooLarge {
                        size,
                        limit: limits.max_output_bytes,
                    })
                } else if used > limits.max_call_bytes {
                    Err(CallError::ByteBudget {
                        used,
                        limit: limits.max_call_bytes,
                    })
                } else {
                    output_sha256 = Some(hex::encode(Sha256::digest(
                        serde_json::to_vec(&output).unwrap_or_default(),
                    )));
                    let empty = StaticData::default();
                    let data = validation_data.unwrap_or(&empty);
                    let verdict = match (&output, &input) {
                        (CallOutput::Hypotheses(h), CallInput::Propose { context, max }) => {
                            if validation_data.is_some() {
                                validate::hypotheses(context, *max, h, data)
                            } else {
                                Ok(())
                            }
                        }
                        (CallOutput::Diagnosis(d), CallInput::Diagnose { context, .. }) => {
                            validate::diagnosis(context, d)
                        }
                        _ => Err("the output does not match the call".into()),
                    };
                    verdict
                        .map(|()| output)
                        .map_err(|reason| CallError::InvalidOutput { reason })
                }
            }
        };

        let (out, out_dropped) = stdout.take_text();
        let (err, err_dropped) = stderr.take_text();
        let mut log: StrategyLog = state.log;
        log.stdout = out;
        log.stderr = err;
        log.dropped_stdio_bytes = out_dropped + err_dropped;
        let record = CallRecord {
            component_sha256: strategy.info.sha256.clone(),
            world: input.world(),
            input,
            limits: limits.clone(),
            host_calls: state.transcript,
            outcome,
            output_sha256,
            usage,
            log,
        };
        (record, state.memory)
    }
}

/// Maps a wasmtime error to the limit or fault that caused it.
fn classify(err: &wasmtime::Error, state: &CallState, limits: &Limits) -> CallError {
    if let Some(fault) = &state.fault {
        return fault.clone();
    }
    if let Some(hit) = &state.limiter.hit {
        return CallError::from(hit.clone());
    }
    let backtrace = err
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .map(|bt| bt.to_string())
        .unwrap_or_default();
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => CallError::OutOfFuel { limit: limits.fuel },
            Trap::Interrupt => CallError::Deadline {
                limit_ms: limits.deadline_ms,
            },
            Trap::StackOverflow => CallError::StackOverflow,
            other => CallError::Trap {
                message: other.to_string(),
                backtrace,
            },
        };
    }
    let message = format!("{err:#}");
    if message.contains("count too high") || message.contains("maximum concurrent") {
        return CallError::InstanceLimit {
            limit: u64::from(limits.max_instances),
        };
    }
    CallError::Trap { message, backtrace }
}

/// Advances the engine's epoch while calls are running, and sleeps on a
/// condition variable when none are, so an idle host burns no CPU.
struct Ticker {
    shared: Arc<TickerShared>,
    thread: Option<JoinHandle<()>>,
}

struct TickerShared {
    state: Mutex<TickerState>,
    wake: Condvar,
    stop: AtomicBool,
}

/// Calls in progress, and whether the ticker thread is awake. The thread
/// stays awake for `LINGER` after the last call so a burst of calls does not
/// pay a thread wake-up each.
#[derive(Default)]
struct TickerState {
    active: usize,
    awake: bool,
}

const LINGER: Duration = Duration::from_millis(50);

struct ActiveCall<'a>(&'a TickerShared);

impl Drop for ActiveCall<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        state.active -= 1;
    }
}

impl Ticker {
    fn start(engine: Engine) -> Ticker {
        let shared = Arc::new(TickerShared {
            state: Mutex::new(TickerState::default()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("reagent-epoch".into())
            .spawn(move || {
                let shared = thread_shared;
                let mut idle_since: Option<Instant> = None;
                loop {
                    {
                        let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                        if state.active > 0 {
                            idle_since = None;
                        } else {
                            let since = *idle_since.get_or_insert_with(Instant::now);
                            if since.elapsed() >= LINGER {
                                state.awake = false;
                                while state.active == 0 && !shared.stop.load(Ordering::Acquire) {
                                    state =
                                        shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                                }
                                state.awake = true;
                                idle_since = None;
                            }
                        }
                    }
                    if shared.stop.load(Ordering::Acquire) {
                        return;
                    }
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .expect("cannot start the epoch thread");
        Ticker {
            shared,
            thread: Some(thread),
        }
    }

    fn active(&self) -> ActiveCall<'_> {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.active += 1;
        if !state.awake {
            self.shared.wake.notify_all();
        }
        ActiveCall(&self.shared)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
