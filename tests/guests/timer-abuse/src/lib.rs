//! Tries to hold the host, or to read real time, through the WASI timers
//! (`wasi:clocks/monotonic-clock` pollables and `wasi:io/poll`). The mode is
//! the campaign name:
//!
//! - `sleep-20s` (and any unknown name): one 20 s timer, then `block`;
//! - `sleep-forever`: a timer ~584 years out, then `block`;
//! - `many-timers`: `poll` over 501 timers of 1 s or more, 64 times;
//! - `sleep-loop`: `std::thread::sleep(500 ms)` forty times (20 s);
//! - `turns`: counts loop turns until a 50 ms timer is ready, and returns
//!   the count, so a test can see whether the output depends on real time;
//! - `stdio`: the other pollable sources: reads stdin to its end and writes
//!   and flushes 1 MiB to stdout and stderr (blocking reads and writes).
//!
//! Every mode returns one hypothesis whose title reports what it saw,
//! including how far the monotonic clock moved.
//!
//! The imports are declared by hand with the canonical ABI (the SDK does not
//! expose WASI); the names are the ones wasi-libc itself links.
use std::time::Duration;

use reagent_sdk::{Context, Generator, Hypothesis};

#[link(wasm_import_module = "wasi:clocks/monotonic-clock@0.2.0")]
unsafe extern "C" {
    #[link_name = "now"]
    fn clock_now() -> i64;
    #[link_name = "subscribe-duration"]
    fn subscribe_duration(nanos: i64) -> i32;
    #[link_name = "subscribe-instant"]
    fn subscribe_instant(at: i64) -> i32;
}

#[link(wasm_import_module = "wasi:io/poll@0.2.0")]
unsafe extern "C" {
    #[link_name = "[method]pollable.block"]
    fn pollable_block(p: i32);
    #[link_name = "[method]pollable.ready"]
    fn pollable_ready(p: i32) -> i32;
    #[link_name = "poll"]
    fn poll_list(ptr: *const i32, len: usize, ret: *mut [usize; 2]);
    #[link_name = "[resource-drop]pollable"]
    fn pollable_drop(p: i32);
}

/// An owned `pollable` handle.
struct Pollable(i32);

impl Pollable {
    fn after(nanos: u64) -> Pollable {
        Pollable(unsafe { subscribe_duration(nanos as i64) })
    }
    fn at(instant: u64) -> Pollable {
        Pollable(unsafe { subscribe_instant(instant as i64) })
    }
    fn block(&self) {
        unsafe { pollable_block(self.0) }
    }
    fn ready(&self) -> bool {
        unsafe { pollable_ready(self.0) != 0 }
    }
}

impl Drop for Pollable {
    fn drop(&mut self) {
        unsafe { pollable_drop(self.0) }
    }
}

fn now() -> u64 {
    unsafe { clock_now() as u64 }
}

/// `wasi:io/poll.poll`: the indexes of the ready pollables.
fn poll(list: &[Pollable]) -> Vec<u32> {
    let handles: Vec<i32> = list.iter().map(|p| p.0).collect();
    let mut ret = [0usize; 2];
    unsafe {
        poll_list(handles.as_ptr(), handles.len(), &mut ret);
        let (ptr, len) = (ret[0] as *mut u32, ret[1]);
        let ready = std::slice::from_raw_parts(ptr, len).to_vec();
        if len > 0 {
            std::alloc::dealloc(
                ptr.cast(),
                std::alloc::Layout::from_size_align(len * 4, 4).unwrap(),
            );
        }
        ready
    }
}

struct TimerAbuse;

impl Generator for TimerAbuse {
    fn propose(ctx: &Context, _max: u32) -> Vec<Hypothesis> {
        let start = now();
        let report = match ctx.campaign.as_str() {
            "sleep-forever" => {
                Pollable::after(u64::MAX).block();
                "woke".to_string()
            }
            "many-timers" => {
                let mut fired = 0usize;
                for round in 0..64u64 {
                    let base = now();
                    let mut timers: Vec<Pollable> = (1..=500u64)
                        .map(|i| Pollable::after(1_000_000_000 + i * 1_000_000 + round))
                        .collect();
                    timers.push(Pollable::at(base + 3_600_000_000_000));
                    fired += poll(&timers).len();
                }
                format!("fired={fired}")
            }
            "sleep-loop" => {
                for _ in 0..40 {
                    std::thread::sleep(Duration::from_millis(500));
                }
                "slept".to_string()
            }
            "stdio" => {
                use std::io::{Read as _, Write as _};
                let mut input = Vec::new();
                let read = std::io::stdin().read_to_end(&mut input);
                let chunk = [b'x'; 4096];
                for _ in 0..256 {
                    let _ = std::io::stdout().write_all(&chunk);
                    let _ = std::io::stdout().flush();
                    let _ = std::io::stderr().write_all(&chunk);
                }
                format!("stdin={}", read.map_or(-1, |n| n as i64))
            }
            "turns" => {
                let timer = Pollable::after(50_000_000);
                let mut turns = 0u64;
                let mut x = 0u64;
                while !timer.ready() {
                    turns += 1;
                    for i in 0..1_000u64 {
                        x = std::hint::black_box(x ^ i);
                    }
                }
                format!("turns={turns}")
            }
            _ => {
                Pollable::after(20_000_000_000).block();
                "slept".to_string()
            }
        };
        let moved = now().saturating_sub(start);
        let knob = &ctx.knobs[0];
        vec![
            Hypothesis::new(format!("{report} clock={moved}"))
                .set(knob.name.clone(), knob.from_unit(0.9)),
        ]
    }
}

reagent_sdk::export_generator!(TimerAbuse);
