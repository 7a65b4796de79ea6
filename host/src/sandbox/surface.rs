//! The capability surface of a component: what it imports and exports, and
//! whether the host accepts it.

use serde::Serialize;

use crate::strategy::{Grants, World};

/// Interfaces of the empty virtual WASI (see `capabilities::wasi`).
const VIRTUAL_WASI: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    // Linked with nothing behind them (no preopened directory, no socket
    // can be created, name lookup refused): a componentize-py (Python)
    // component's runtime imports them. See `capabilities::wasi`.
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// One import the host will not provide, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub import: String,
    pub reason: String,
}

fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((iface, version)) => (iface, Some(version)),
        None => (name, None),
    }
}

fn version_ok(version: Option<&str>, major_minor: &str) -> bool {
    version.is_some_and(|v| v == major_minor || v.starts_with(&format!("{major_minor}.")))
}

/// Checks every import against the surface for `world` (grants do not
/// refuse: an ungranted optional capability answers nothing).
pub fn refusals(world: World, imports: &[String]) -> Vec<Refusal> {
    let mut out = Vec::new();
    for import in imports {
        let (iface, version) = split_version(import);
        let refuse = |reason: String| Refusal {
            import: import.clone(),
            reason,
        };
        if VIRTUAL_WASI.contains(&iface) {
            if !version_ok(version, "0.2") {
                out.push(refuse("only WASI 0.2.x is provided".into()));
            }
            continue;
        }
        if let Some(name) = iface.strip_prefix("reagent:strategy/") {
            if !version_ok(version, "0.1") {
                out.push(refuse(
                    "this host provides reagent:strategy@0.1.x; rebuild with a matching reagent-sdk"
                        .into(),
                ));
                continue;
            }
            let reason = match (name, world) {
                ("types" | "log" | "history", _) => None,
                // Optional capabilities are accepted without their grant:
                // each call then answers nothing (insights: an empty page;
                // memory: nothing kept, `set` an error; llm: an error), so
                // one component serves any grant set and nothing ungranted
                // is reached (capabilities/{insights,memory,llm}.rs).
                ("insights" | "memory" | "llm", World::Generator) => None,
                ("llm", World::Debugger) => Some("`llm` is not part of the debugger world".into()),
                (_, World::Debugger) if matches!(name, "insights" | "memory") => {
                    Some(format!("`{name}` is not part of the debugger world"))
                }
                _ => Some("not an interface of reagent:strategy@0.1.0".into()),
            };
            if let Some(reason) = reason {
                out.push(refuse(reason));
            }
            continue;
        }
        let reason = if iface.starts_with("wasi:filesystem/") {
            "strategies get no filesystem access".to_string()
        } else if iface.starts_with("wasi:sockets/") || iface.starts_with("wasi:http/") {
            "strategies get no network access".to_string()
        } else {
            "not part of the strategy surface (reagent:strategy imports and the virtual WASI set)"
                .to_string()
        };
        out.push(refuse(reason));
    }
    out
}

/// The optional capabilities among `imports` that `grants` withhold
/// (`insights`, `memory`, `llm`), by name.
pub fn ungranted(imports: &[String], grants: &Grants) -> Vec<String> {
    let mut out: Vec<String> = imports
        .iter()
        .filter_map(|i| split_version(i).0.strip_prefix("reagent:strategy/"))
        .filter(|name| match *name {
            "insights" => !grants.insights,
            "memory" => !grants.memory,
            "llm" => !grants.llm,
            _ => false,
        })
        .map(str::to_string)
        .collect();
    out.dedup();
    out
}

/// The world a component implements, judged by its exports.
pub fn world_of(exports: &[String]) -> Result<World, String> {
    let has = |name: &str| exports.iter().any(|e| e == name);
    match (has("propose"), has("diagnose")) {
        (true, false) => Ok(World::Generator),
        (false, true) => Ok(World::Debugger),
        (true, true) => {
            Err("it exports both `propose` and `diagnose`; a strategy implements one world".into())
        }
        (false, false) => Err(format!(
            "it is a component of another world: it exports [{}], but a strategy exports \
             `propose` (world reagent:strategy/generator) or `diagnose` (world reagent:strategy/debugger)",
            exports.join(", ")
        )),
    }
}

/// The SDK version embedded by reagent-sdk, if the component has one.
pub fn sdk_version(wasm: &[u8]) -> Option<String> {
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let Ok(wasmparser::Payload::CustomSection(section)) = payload
            && section.name() == "reagent-sdk-version"
        {
            return String::from_utf8(section.data().to_vec()).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_virtual_wasi_set_and_granted_reagent_imports_pass() {
        let imports = names(&[
            "wasi:io/poll@0.2.6",
            "wasi:cli/stdout@0.2.0",
            "reagent:strategy/types@0.1.0",
            "reagent:strategy/history@0.1.0",
            "reagent:strategy/memory@0.1.0",
        ]);
        assert!(refusals(World::Generator, &imports).is_empty());
    }

    #[test]
    fn http_unknown_wasi_unknown_and_wrong_version_imports_are_each_named() {
        let imports = names(&[
            "wasi:http/outgoing-handler@0.2.0",
            "wasi:filesystem/types@0.3.0",
            "wasi:sockets/tcp@0.3.0-rc",
            "wasi:keyvalue/store@0.2.0",
            "evil:exfil/send@1.0.0",
            "reagent:strategy/history@0.2.0",
        ]);
        let refused = refusals(World::Generator, &imports);
        let refused: Vec<&str> = refused.iter().map(|r| r.import.as_str()).collect();
        assert_eq!(
            refused,
            imports.iter().map(String::as_str).collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_inert_filesystem_and_socket_interfaces_of_python_components_pass() {
        // What a componentize-py 0.25.1 component imports beyond the Rust
        // guests' set; linked with nothing behind them (capabilities/wasi.rs).
        let imports = names(&[
            "wasi:filesystem/types@0.2.9",
            "wasi:filesystem/preopens@0.2.9",
            "wasi:sockets/network@0.2.9",
            "wasi:sockets/instance-network@0.2.9",
            "wasi:sockets/udp@0.2.9",
            "wasi:sockets/udp-create-socket@0.2.9",
            "wasi:sockets/tcp@0.2.9",
            "wasi:sockets/tcp-create-socket@0.2.9",
            "wasi:sockets/ip-name-lookup@0.2.9",
        ]);
        assert!(refusals(World::Generator, &imports).is_empty());
        assert!(refusals(World::Debugger, &imports).is_empty());
    }

    #[test]
    fn a_debugger_may_not_import_memory_or_llm() {
        let imports = names(&[
            "reagent:strategy/memory@0.1.0",
            "reagent:strategy/llm@0.1.0",
        ]);
        assert_eq!(refusals(World::Debugger, &imports).len(), 2);
    }

    #[test]
    fn a_generator_may_import_llm_with_or_without_the_grant() {
        // Without the grant every call answers an error (capabilities/llm.rs).
        let imports = names(&["reagent:strategy/llm@0.1.0"]);
        assert!(refusals(World::Generator, &imports).is_empty());
    }

    #[test]
    fn world_is_judged_by_exports() {
        assert_eq!(world_of(&names(&["propose"])), Ok(World::Generator));
        assert_eq!(world_of(&names(&["diagnose"])), Ok(World::Debugger));
        assert!(
            world_of(&names(&["wasi:cli/run@0.2.0"]))
                .unwrap_err()
                .contains("another world")
        );
    }
}
