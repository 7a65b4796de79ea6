//! The built-in strategies, compiled from `strategies/` by the build script
//! and embedded in the binary.

/// A strategy shipped inside the `reagent` binary.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    pub name: &'static str,
    pub summary: &'static str,
    pub wasm: &'static [u8],
}

pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "three-phase",
        summary: "generator: single changes, then combinations of what helped, then model-guided local search",
        wasm: include_bytes!(concat!(env!("OUT_DIR"), "/three_phase.wasm")),
    },
    Builtin {
        name: "researcher",
        summary: "generator: proposals led by past campaigns' insights (and a language model when granted, its answers checked), then three-phase",
        wasm: include_bytes!(concat!(env!("OUT_DIR"), "/researcher.wasm")),
    },
    Builtin {
        name: "runbook",
        summary: "debugger: classifies OOM, divergence, time limits, infra errors; retries, shrinks, or excludes",
        wasm: include_bytes!(concat!(env!("OUT_DIR"), "/runbook.wasm")),
    },
];

/// The built-in called `name`.
pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// `builtin:a, builtin:b` for error messages.
pub fn names() -> String {
    BUILTINS
        .iter()
        .map(|b| format!("builtin:{}", b.name))
        .collect::<Vec<_>>()
        .join(", ")
}
