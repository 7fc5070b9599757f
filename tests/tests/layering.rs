//! Dependencies point one way: no module of any crate imports, directly or
//! through others, a module that imports it back.
//!
//! Reads every crate's sources (not their tests): each `crate::…` and
//! `super::…` path is an edge from the module it is written in to the module
//! it names. An edge between two modules counts between their ancestors that
//! are siblings (children of the nearest common ancestor), so
//! `volume::cold → engine` is `volume → engine`, and `api::ui → api::state`
//! is `ui → state` within `api`. A module naming its own ancestor or
//! descendant (a parent composing its children, a child using its parent's
//! items) is composition, not a layer crossing, and is not an edge. Every
//! set of siblings must then be acyclic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: [&str; 6] = ["clock", "policy", "heatmap", "backends", "sim", "tiering"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are module `a::b`; `src/lib.rs` the root.
fn module_of(src: &Path, file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    match stem {
        "lib" if parts.is_empty() => {}
        "main" if parts.is_empty() => return None, // the binary is its own crate
        "mod" => {}
        // Test modules sit beside the code they test.
        "tests" => return None,
        s => parts.push(s.to_string()),
    }
    Some(parts)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its `#[cfg(test)]` module (at the end, by
/// this workspace's convention) and without comments.
fn code_of(text: &str) -> String {
    let cut = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..cut]
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the code names through `crate::` or `super::`, as written
/// (grouped `use` lists expanded), with the line it is on.
fn paths_named(code: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for anchor in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(anchor) {
            let start = from + i;
            from = start + anchor.len();
            // Part of a longer identifier (e.g. `my_crate::`)?
            if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
                continue;
            }
            let line = code[..start].matches('\n').count() + 1;
            let mut end = start;
            while end < bytes.len()
                && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b':')
            {
                end += 1;
            }
            let head = code[start..end].trim_end_matches(':').to_string();
            if end < bytes.len() && bytes[end] == b'{' {
                // A grouped list: each entry's first segment extends the head.
                let close = code[end..].find('}').map(|c| end + c).unwrap_or(end);
                for item in code[end + 1..close].split(',') {
                    let first = item
                        .trim()
                        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or_default();
                    if !first.is_empty() {
                        out.push((format!("{head}::{first}"), line));
                    }
                }
            } else {
                out.push((head, line));
            }
        }
    }
    out
}

/// The module a written path names: the longest prefix that is a module.
fn resolve(from: &[String], path: &str, modules: &BTreeSet<Vec<String>>) -> Vec<String> {
    let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<String> = Vec::new();
    match segs.first() {
        Some(&"crate") => {
            segs.remove(0);
        }
        Some(&"super") => {
            base = from.to_vec();
            while segs.first() == Some(&"super") {
                segs.remove(0);
                base.pop();
            }
        }
        _ => {}
    }
    let mut best = base.clone();
    let mut cur = base;
    for s in segs {
        cur.push(s.to_string());
        if modules.contains(&cur) {
            best = cur.clone();
        } else {
            break;
        }
    }
    best
}

/// An edge between two modules, lifted to siblings under their common
/// ancestor: `(parent, from child, to child)`, or None for ancestry.
fn lift(a: &[String], b: &[String]) -> Option<(Vec<String>, String, String)> {
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    if common == a.len() || common == b.len() {
        return None;
    }
    Some((a[..common].to_vec(), a[common].clone(), b[common].clone()))
}

type Evidence = BTreeMap<(String, String), String>;

/// A cycle among one parent's children, if any, as a list of names.
fn find_cycle(edges: &Evidence) -> Option<Vec<String>> {
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges.keys() {
        graph.entry(a).or_default().push(b);
        graph.entry(b).or_default();
    }
    // 0 unvisited, 1 on the stack, 2 done.
    let mut state: BTreeMap<&str, u8> = graph.keys().map(|k| (*k, 0)).collect();
    fn visit<'a>(
        n: &'a str,
        graph: &BTreeMap<&'a str, Vec<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(n, 1);
        stack.push(n);
        for &m in &graph[n] {
            match state[m] {
                1 => {
                    let i = stack.iter().position(|&s| s == m).unwrap_or(0);
                    let mut c: Vec<String> = stack[i..].iter().map(|s| s.to_string()).collect();
                    c.push(m.to_string());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    let nodes: Vec<&str> = graph.keys().copied().collect();
    for n in nodes {
        if state[n] == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, &graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// Every cycle found in a crate, described with the lines that make it.
fn cycles_in(krate: &str) -> Vec<String> {
    let src = workspace().join(krate).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules = BTreeSet::new();
    let mut sources = Vec::new();
    for f in files {
        if let Some(m) = module_of(&src, &f) {
            modules.insert(m.clone());
            sources.push((m, f));
        }
    }
    let mut by_parent: BTreeMap<Vec<String>, Evidence> = BTreeMap::new();
    for (m, f) in &sources {
        let text = std::fs::read_to_string(f).expect("read source");
        for (path, line) in paths_named(&code_of(&text)) {
            let to = resolve(m, &path, &modules);
            if let Some((parent, a, b)) = lift(m, &to) {
                let rel = f
                    .strip_prefix(workspace())
                    .unwrap_or(f)
                    .display()
                    .to_string();
                by_parent
                    .entry(parent)
                    .or_default()
                    .entry((a, b))
                    .or_insert(format!("{rel}:{line} names {path}"));
            }
        }
    }
    let mut out = Vec::new();
    for (parent, edges) in &by_parent {
        if let Some(c) = find_cycle(edges) {
            let why: Vec<String> = c
                .windows(2)
                .map(|w| {
                    edges
                        .get(&(w[0].clone(), w[1].clone()))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect();
            out.push(format!(
                "{krate}::{}: {} ({})",
                parent.join("::"),
                c.join(" -> "),
                why.join("; ")
            ));
        }
    }
    out
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let mut all = Vec::new();
    for k in CRATES {
        all.extend(cycles_in(k));
    }
    assert!(all.is_empty(), "import cycles:\n{}", all.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle_when_there_is_one() {
    // The same machinery on a made-up pair: a -> b -> a is found, a -> b alone is not.
    let mut edges = Evidence::new();
    edges.insert(("a".into(), "b".into()), "x".into());
    assert_eq!(find_cycle(&edges), None);
    edges.insert(("b".into(), "a".into()), "y".into());
    assert_eq!(
        find_cycle(&edges),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    // Paths resolve to the longest module prefix, grouped lists expand, and
    // parent/child references are composition.
    let modules: BTreeSet<Vec<String>> = [
        vec![],
        vec!["volume".to_string()],
        vec!["volume".into(), "cold".into()],
        vec!["engine".into()],
    ]
    .into_iter()
    .collect();
    let from = vec!["volume".to_string(), "cold".to_string()];
    assert_eq!(
        resolve(&from, "crate::engine::FetchFailure", &modules),
        vec!["engine".to_string()]
    );
    assert_eq!(
        resolve(&from, "super::Volume", &modules),
        vec!["volume".to_string()]
    );
    assert_eq!(
        lift(&from, &["engine".to_string()]),
        Some((vec![], "volume".into(), "engine".into()))
    );
    assert_eq!(lift(&from, &["volume".to_string()]), None);
    let named = paths_named("use crate::{engine::Engine, volume};\nlet x = crate::engine::f();");
    assert!(named.contains(&("crate::engine".into(), 1)), "{named:?}");
    assert!(named.contains(&("crate::volume".into(), 1)), "{named:?}");
    assert!(named.contains(&("crate::engine::f".into(), 2)), "{named:?}");
}

fn manifest(krate: &str) -> toml::Table {
    let text = std::fs::read_to_string(workspace().join(krate).join("Cargo.toml"))
        .expect("read Cargo.toml");
    toml::from_str(&text).expect("parse Cargo.toml")
}

fn dependencies(krate: &str) -> toml::Table {
    manifest(krate)
        .get("dependencies")
        .and_then(|d| d.as_table())
        .cloned()
        .unwrap_or_default()
}

fn without_default_features(dep: &toml::Value) -> bool {
    dep.get("default-features").and_then(|v| v.as_bool()) == Some(false)
}

#[test]
fn the_pure_crates_depend_on_nothing_that_does_io() {
    // policy: heatmap's pure code, serde and thiserror, nothing else.
    let policy = dependencies("policy");
    let names: BTreeSet<&str> = policy.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["heatmap", "serde", "thiserror"]));
    assert!(
        without_default_features(&policy["heatmap"]),
        "policy takes heatmap without its store"
    );
    // heatmap without its default `store` feature needs only serde: every
    // other dependency (RocksDB, the clock, locks, logging) is optional.
    for (name, dep) in dependencies("heatmap") {
        let optional = dep.get("optional").and_then(|v| v.as_bool()) == Some(true);
        assert!(
            name == "serde" || optional,
            "heatmap's {name} is not behind the store feature"
        );
    }
    // sim: never the daemon crate, nor the runtime or the database.
    let sim = dependencies("sim");
    for daemon_side in ["tiering", "tokio", "rocksdb", "backends", "clock"] {
        assert!(
            !sim.contains_key(daemon_side),
            "sim depends on {daemon_side}"
        );
    }
    assert!(
        without_default_features(&sim["heatmap"]),
        "sim takes heatmap without its store"
    );
}
