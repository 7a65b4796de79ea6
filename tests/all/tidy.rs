//! The house rules of host/src, as tests (the way rust-analyzer's
//! `xtask/src/tidy.rs` keeps its architecture): the imports between its
//! top-level modules point one way (no cycle), the boundaries that
//! ARCHITECTURE.md states hold (who may name redb, wasmtime, the terminal),
//! and no file or function grows past what a reviewer can hold.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// One source file of host/src, without its `#[cfg(test)] mod tests`.
struct Source {
    /// Relative to host/src, e.g. `campaign/engine.rs`.
    path: String,
    /// The top-level module it belongs to (`campaign`, `llm`, …; the crate
    /// root files `lib.rs` and `main.rs` are `crate`).
    module: String,
    /// (line number, text) of the code lines, comments dropped.
    lines: Vec<(usize, String)>,
    /// Every line, for the size checks.
    total_lines: usize,
}

fn sources() -> Vec<Source> {
    let mut files = Vec::new();
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let rel = path
                .strip_prefix(src())
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            // A module's unit tests in their own file are test code.
            if rel.ends_with("/tests.rs") {
                return None;
            }
            let first = rel.split('/').next().unwrap();
            let module = match first.strip_suffix(".rs") {
                Some("lib" | "main") => "crate".to_string(),
                Some(m) => m.to_string(),
                None => first.to_string(),
            };
            let text = std::fs::read_to_string(&path).unwrap();
            let total_lines = text.lines().count();
            let mut lines = Vec::new();
            let mut previous = "";
            for (i, line) in text.lines().enumerate() {
                let t = line.trim_start();
                if previous == "#[cfg(test)]" && t.starts_with("mod tests") {
                    break;
                }
                previous = t;
                if t.starts_with("//") {
                    continue;
                }
                lines.push((i + 1, line.to_string()));
            }
            Some(Source {
                path: rel,
                module,
                lines,
                total_lines,
            })
        })
        .collect()
}

/// `crate::X` references between top-level modules: (from, to) → the
/// first place each edge is made.
fn module_edges(sources: &[Source]) -> BTreeMap<(String, String), String> {
    let mut edges = BTreeMap::new();
    for s in sources {
        for (n, line) in &s.lines {
            let mut rest = line.as_str();
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != s.module && s.module != "crate" {
                    edges
                        .entry((s.module.clone(), name))
                        .or_insert_with(|| format!("{}:{n}: {}", s.path, line.trim()));
                }
            }
        }
    }
    edges
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(edges: &BTreeMap<(String, String), String>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
    let nodes: Vec<&String> = nodes.into_iter().collect();
    let index_of = |n: &String| nodes.iter().position(|m| *m == n).unwrap();
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (a, b) in edges.keys() {
        next[index_of(a)].push(index_of(b));
    }
    struct State {
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(v: usize, next: &[Vec<usize>], st: &mut State) {
        st.index[v] = Some(st.counter);
        st.low[v] = st.counter;
        st.counter += 1;
        st.stack.push(v);
        st.on_stack[v] = true;
        for &w in &next[v] {
            match st.index[w] {
                None => {
                    visit(w, next, st);
                    st.low[v] = st.low[v].min(st.low[w]);
                }
                Some(iw) if st.on_stack[w] => st.low[v] = st.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(st.low[v]) == st.index[v] {
            let mut component = Vec::new();
            while let Some(w) = st.stack.pop() {
                st.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                st.out.push(component);
            }
        }
    }
    let n = nodes.len();
    let mut st = State {
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        counter: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if st.index[v].is_none() {
            visit(v, &next, &mut st);
        }
    }
    st.out
        .into_iter()
        .map(|c| {
            let mut names: Vec<String> = c.into_iter().map(|i| nodes[i].clone()).collect();
            names.sort();
            names
        })
        .collect()
}

fn describe_cycles(edges: &BTreeMap<(String, String), String>) -> Vec<String> {
    cycles(edges)
        .into_iter()
        .map(|members| {
            let inside: Vec<String> = edges
                .iter()
                .filter(|((a, b), _)| members.contains(a) && members.contains(b))
                .map(|((a, b), at)| format!("  {a} -> {b}   ({at})"))
                .collect();
            format!(
                "import cycle among {}:\n{}",
                members.join(", "),
                inside.join("\n")
            )
        })
        .collect()
}

#[test]
fn imports_between_top_level_modules_point_one_way() {
    let problems = describe_cycles(&module_edges(&sources()));
    assert!(
        problems.is_empty(),
        "host/src's top-level modules import each other in a cycle; move the shared \
         types down a layer (ARCHITECTURE.md, \"Layers\"):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_cycle_check_names_a_cycle_and_the_lines_that_close_it() {
    let mut edges = BTreeMap::new();
    edges.insert(
        ("a".to_string(), "b".to_string()),
        "a.rs:1: use crate::b;".to_string(),
    );
    edges.insert(
        ("b".to_string(), "c".to_string()),
        "b.rs:2: use crate::c;".to_string(),
    );
    edges.insert(
        ("c".to_string(), "d".to_string()),
        "c.rs:3: use crate::d;".to_string(),
    );
    assert!(describe_cycles(&edges).is_empty());
    edges.insert(
        ("c".to_string(), "a".to_string()),
        "c.rs:9: use crate::a::X;".to_string(),
    );
    let found = describe_cycles(&edges);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("import cycle among a, b, c:"),
        "{}",
        found[0]
    );
    assert!(
        found[0].contains("c -> a   (c.rs:9: use crate::a::X;)"),
        "{}",
        found[0]
    );
    assert!(!found[0].contains("-> d"), "{}", found[0]);
}

/// Lines of `module`-external code that name `needle`.
fn naming(sources: &[Source], needle: &[&str], allowed: &[&str]) -> Vec<String> {
    sources
        .iter()
        .filter(|s| !allowed.contains(&s.module.as_str()))
        .flat_map(|s| {
            s.lines
                .iter()
                .filter(|(_, l)| needle.iter().any(|n| l.contains(n)))
                .map(move |(n, l)| format!("  {}:{n}: {}", s.path, l.trim()))
        })
        .collect()
}

#[test]
fn only_the_modules_architecture_names_touch_redb_wasmtime_and_the_terminal() {
    let sources = sources();
    let rules: [(&str, &[&str], &[&str]); 3] = [
        (
            "redb (the store owns the database)",
            &["redb::", "use redb"],
            &["store"],
        ),
        (
            "wasmtime (the strategy runtime: the generated contract, the limits \
             enforced per store, the capabilities and the sandbox)",
            &["wasmtime::", "wasmtime_wasi", "use wasmtime"],
            &["contract", "limits", "capabilities", "sandbox"],
        ),
        (
            "the terminal (only the CLI prints)",
            &["println!", "eprintln!", "print!(", "eprint!("],
            &["cli"],
        ),
    ];
    let mut problems = Vec::new();
    for (what, needle, allowed) in rules {
        let found = naming(&sources, needle, allowed);
        if !found.is_empty() {
            problems.push(format!(
                "{what}: only {} may; found in\n{}",
                allowed.join(", "),
                found.join("\n")
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The longest a file of host/src and a function in it may grow.
const MAX_FILE_LINES: usize = 900;
const MAX_FN_LINES: usize = 150;

/// What was over those limits when they came in, at its size then: it may
/// shrink but not grow, and leaves this list when it is under the limit
/// (the test says so). `path` for a file, `path:fn name` for a function.
const OVER_THE_LIMIT: &[(&str, usize)] = &[];

#[test]
fn no_file_or_function_grows_past_what_a_reviewer_can_hold() {
    let mut problems = Vec::new();
    for s in sources() {
        check(
            &mut problems,
            &s.path,
            s.total_lines,
            MAX_FILE_LINES,
            || format!("{}: {} lines", s.path, s.total_lines),
        );
        // A function runs from its `fn` line to the first line after it
        // that closes at the same indentation.
        let lines = &s.lines;
        for (i, (n, line)) in lines.iter().enumerate() {
            let t = line.trim_start();
            let is_fn = [
                "fn ",
                "pub fn ",
                "pub(crate) fn ",
                "pub(super) fn ",
                "async fn ",
            ]
            .iter()
            .any(|p| t.starts_with(p))
                && !t.ends_with(';');
            if !is_fn {
                continue;
            }
            let indent = line.len() - t.len();
            let close = " ".repeat(indent) + "}";
            if let Some((end, _)) = lines[i + 1..].iter().find(|(_, l)| l.trim_end() == close) {
                let len = end - n + 1;
                let name: String = t
                    .split("fn ")
                    .nth(1)
                    .unwrap_or("")
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                check(
                    &mut problems,
                    &format!("{}:fn {name}", s.path),
                    len,
                    MAX_FN_LINES,
                    || format!("{}:{n}: fn {name} is {len} lines", s.path),
                );
            }
        }
    }
    let seen = SEEN.with(|s| s.borrow().clone());
    for (what, _) in OVER_THE_LIMIT {
        if !seen.contains(*what) {
            problems.push(format!(
                "{what} is in OVER_THE_LIMIT but no longer over: take it off the list"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Flags `size` over `limit`, unless `what` is grandfathered at a size it
/// has not outgrown.
fn check(
    problems: &mut Vec<String>,
    what: &str,
    size: usize,
    limit: usize,
    describe: impl Fn() -> String,
) {
    if size <= limit {
        return;
    }
    SEEN.with(|s| s.borrow_mut().insert(what.to_string()));
    match OVER_THE_LIMIT.iter().find(|(w, _)| *w == what) {
        Some((_, was)) if size <= *was => {}
        Some((_, was)) => problems.push(format!(
            "{} (at most {limit}; it was {was} when the limit came in and may only shrink): split it by responsibility",
            describe()
        )),
        None => problems.push(format!(
            "{} (at most {limit}): split it by responsibility",
            describe()
        )),
    }
}

thread_local! {
    static SEEN: std::cell::RefCell<BTreeSet<String>> = const { std::cell::RefCell::new(BTreeSet::new()) };
}

/// Each interface and world of `wit/strategy.wit` as released, by name:
/// its text without comments and with whitespace collapsed, hashed.
fn wit_items() -> BTreeMap<String, String> {
    use sha2::Digest as _;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/strategy.wit");
    let text = std::fs::read_to_string(path).unwrap();
    let code: Vec<&str> = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect();
    let code = code.join("\n");
    let mut items = BTreeMap::new();
    let mut rest = code.as_str();
    while let Some(start) = ["interface ", "world "]
        .iter()
        .filter_map(|k| rest.find(k).map(|i| (i, *k)))
        .min()
    {
        let (i, keyword) = start;
        let after = &rest[i..];
        let name: String = after[keyword.len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '-')
            .collect();
        // The item runs to the brace that closes its first one.
        let open = after.find('{').unwrap();
        let mut depth = 0;
        let mut end = open;
        for (j, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        let body: String = after[..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        items.insert(
            format!("{} {name}", keyword.trim()),
            hex::encode(sha2::Sha256::digest(body.as_bytes()))[..16].to_string(),
        );
        rest = &after[end..];
    }
    items
}

/// `reagent:strategy@0.1.0` as released: a changed interface or world
/// breaks components built against it. Add new interfaces, worlds or
/// functions under a new package version instead (and add them here).
const RELEASED_WIT: &[(&str, &str)] = &[
    ("interface types", "816c9eccb95e35f2"),
    ("interface log", "5e82a6cd8c25ab6a"),
    ("interface history", "0bee80a11b335192"),
    ("interface insights", "331cb72ea0e004fa"),
    ("interface memory", "be8a178f0a523269"),
    ("interface llm", "87eb641e1627a580"),
    ("world generator", "3a72f62653beff8e"),
    ("world llm-client", "f8ce55d7cbcc72ea"),
    ("world debugger", "e4f78d194a10684e"),
];

#[test]
fn released_wit_interfaces_are_unchanged() {
    let now = wit_items();
    let mut problems = Vec::new();
    for (name, hash) in RELEASED_WIT {
        match now.get(*name) {
            None => problems.push(format!("{name} was released and is gone")),
            Some(h) if h != hash => problems.push(format!(
                "{name} changed (hash {h}, released {hash}): a released interface is never edited; add what you need under a new version"
            )),
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "{}\nnow: {now:?}", problems.join("\n"));
}

/// The WASI interfaces `capabilities/wasi.rs` links: `pkg::iface::add_to_linker`
/// calls, as `wasi:pkg/iface`.
fn linked_wasi() -> BTreeSet<String> {
    let text = std::fs::read_to_string(src().join("capabilities/wasi.rs")).unwrap();
    let mut out = BTreeSet::new();
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
        let Some(call) = line.find("::add_to_linker::<") else {
            continue;
        };
        let path: Vec<&str> = line[..call].split("::").collect();
        if let [.., package, interface] = path.as_slice() {
            let package = package.rsplit(' ').next().unwrap_or(package);
            out.insert(format!("wasi:{package}/{}", interface.replace('_', "-")));
        }
    }
    out
}

/// The WASI interfaces `sandbox/surface.rs` accepts (its `VIRTUAL_WASI`).
fn accepted_wasi() -> BTreeSet<String> {
    let text = std::fs::read_to_string(src().join("sandbox/surface.rs")).unwrap();
    let start = text
        .find("const VIRTUAL_WASI")
        .expect("VIRTUAL_WASI in surface.rs");
    let end = start + text[start..].find("];").unwrap();
    text[start..end]
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix('"').and_then(|l| l.strip_suffix("\",")))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_wasi_interfaces_the_surface_accepts_are_the_ones_the_linker_links() {
    let linked = linked_wasi();
    let accepted = accepted_wasi();
    assert!(
        linked.len() >= 18 && accepted.len() >= 18,
        "{linked:?} {accepted:?}"
    );
    let unlinked: Vec<_> = accepted.difference(&linked).collect();
    let unlisted: Vec<_> = linked.difference(&accepted).collect();
    assert!(
        unlinked.is_empty() && unlisted.is_empty(),
        "surface.rs accepts but wasi.rs does not link: {unlinked:?}; wasi.rs links but surface.rs does not accept: {unlisted:?}"
    );
}
