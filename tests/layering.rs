//! The crate's dependency rules, read from its source: imports point down only (DESIGN §3)
//! and no two files import each other, directly or through others. A new `use` that breaks
//! either fails here with the files named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which top-level modules each top-level module may use (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    ("domain", &[]),
    ("api", &[]),
    ("metrics", &[]),
    ("conn", &["metrics"]),
    ("model", &["api", "domain"]),
    ("report", &["domain"]),
    (
        "intake",
        &[
            "admin", "api", "conn", "domain", "metrics", "model", "report",
        ],
    ),
    ("dns", &["api", "domain"]),
    ("checks", &["api", "domain", "model"]),
    ("admin", &["metrics"]),
    (
        "serve",
        &["admin", "api", "conn", "domain", "metrics", "model"],
    ),
    (
        "controller",
        &[
            "admin", "api", "checks", "dns", "domain", "metrics", "model", "report",
        ],
    ),
    (
        "cli",
        &[
            "admin",
            "api",
            "checks",
            "conn",
            "controller",
            "dns",
            "domain",
            "intake",
            "metrics",
            "model",
            "report",
            "serve",
        ],
    ),
];

/// Module path (`controller::status`) → its file.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts
                .last()
                .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
            {
                parts.pop();
            }
            out.insert(parts, path);
        }
    }
    out
}

/// The code that imports: without comments (doc links are not imports) and without the
/// trailing `#[cfg(test)] mod tests { ... }`, whose `super::` means the file's own module.
fn code_of(source: &str) -> String {
    let code = match source.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &source[..i],
        None => source,
    };
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path this file names through `crate::` or `super::`, as module paths (items are
/// resolved to the longest module prefix later). Handles `use a::{b, c::d}` one level deep.
fn referenced(module: &[String], source: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let text = source;
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = text[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            // Must start a path (not `foo_crate::`).
            if at > 0 {
                let prev = text.as_bytes()[at - 1];
                if prev.is_ascii_alphanumeric() || prev == b'_' || prev == b':' {
                    continue;
                }
            }
            let base: Vec<String> = if start == "crate::" {
                Vec::new()
            } else {
                // `super` is the parent module (of `a/b.rs` and of `a/b/mod.rs` alike).
                let mut m = module.to_vec();
                m.pop();
                m
            };
            let rest = &text[from..];
            let path_end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let mut path: Vec<String> = base.clone();
            path.extend(
                rest[..path_end]
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
            if rest[path_end..].starts_with('{') {
                let close = rest[path_end..]
                    .find('}')
                    .map_or(rest.len(), |c| path_end + c);
                for item in rest[path_end + 1..close].split(',') {
                    let head: String = item
                        .trim()
                        .split("::")
                        .next()
                        .unwrap_or_default()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    let mut p = path.clone();
                    if !head.is_empty() && head != "self" {
                        p.push(head);
                    }
                    out.push(p);
                }
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The module a path lies in: its longest prefix that is a module.
fn resolve(path: &[String], known: &BTreeMap<Vec<String>, PathBuf>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| known.contains_key(p))
}

fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    let mut edges = BTreeMap::new();
    for (module, file) in &known {
        let source = std::fs::read_to_string(file).expect("read file");
        let deps: BTreeSet<Vec<String>> = referenced(module, &code_of(&source))
            .iter()
            .filter_map(|p| resolve(p, &known))
            .filter(|m| m != module && !m.is_empty())
            .collect();
        edges.insert(module.clone(), deps);
    }
    edges
}

fn name(m: &[String]) -> String {
    m.join("::")
}

#[test]
fn imports_point_down_only() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (module, deps) in graph() {
        let Some(top) = module.first() else { continue };
        let Some(may) = allowed.get(top.as_str()) else {
            wrong.push(format!(
                "{} is not in ALLOWED: give it a layer",
                name(&module)
            ));
            continue;
        };
        for dep in deps {
            let dep_top = dep[0].as_str();
            if dep_top != top && !may.contains(&dep_top) {
                wrong.push(format!("{} uses {}", name(&module), name(&dep)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_files_depend_on_each_other() {
    let edges = graph();
    // Depth-first search; a back edge closes a cycle.
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        path: &mut Vec<Vec<String>>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(node.clone(), 1);
        path.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                0 => visit(next, edges, state, path, cycles),
                1 => {
                    let from = path.iter().position(|p| p == next).unwrap_or(0);
                    let mut ring: Vec<String> = path[from..].iter().map(|p| name(p)).collect();
                    ring.push(name(next));
                    cycles.push(ring.join(" -> "));
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(node.clone(), 2);
    }
    let mut state = BTreeMap::new();
    let mut cycles = Vec::new();
    for node in edges.keys() {
        if !state.contains_key(node) {
            visit(node, &edges, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_reader_finds_the_imports_it_checks() {
    // The rules above are only as good as the parser: it must see these known edges.
    let edges = graph();
    let has = |from: &str, to: &str| {
        let key: Vec<String> = from.split("::").map(str::to_owned).collect();
        let to: Vec<String> = to.split("::").map(str::to_owned).collect();
        edges.get(&key).is_some_and(|d| d.contains(&to))
    };
    assert!(
        has("controller::reconcile", "controller::status"),
        "use super::{{..}}"
    );
    assert!(
        has("controller::status", "controller::rollout"),
        "use super::rollout::.."
    );
    assert!(has("checks::run", "model::desired"), "use crate::model::..");
    assert!(has("dns::registry", "api"), "use crate::api::{{..}}");
    assert!(!has("domain::record", "controller"), "no false edges");
}
