//! The dependency rules of docs/architecture.md, checked on the source: each test reads the
//! `crate::...` and `super::...` paths of the production code (comments and `#[cfg(test)]`
//! parts left out) and fails naming the file and line that breaks a rule.
//!
//! What the compiler already checks is checked here only at its root: the `smp-proto` crate
//! and the acme/onion/updater crates cannot use what they do not depend on, so the tests read
//! their `Cargo.toml` dependencies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One reference from a production source line to a top-level module of the crate.
#[derive(Debug, Clone)]
struct Ref {
    file: String,
    line: usize,
    target: String,
    text: String,
}

/// All `.rs` files under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The module path of a file under `src/` (`src/a/b.rs` and `src/a/b/mod.rs` are `[a, b]`).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

/// The production lines of a source file: comments blanked, `#[cfg(test)]` items removed
/// (line numbers kept), and the files of `#[cfg(test)] mod x;` declarations.
fn production_lines(text: &str, file: &Path) -> (Vec<String>, Vec<PathBuf>) {
    let mut out = Vec::new();
    let mut test_files = Vec::new();
    let mut skip_depth: Option<i32> = None;
    let mut pending_cfg_test = false;
    let mut path_attr: Option<String> = None;
    let dir = file.parent().expect("dir");
    let stem = file
        .file_stem()
        .expect("stem")
        .to_string_lossy()
        .into_owned();
    let mod_dir = if stem == "mod" || stem == "lib" || stem == "main" {
        dir.to_path_buf()
    } else {
        dir.join(&stem)
    };
    for raw in text.lines() {
        let trimmed = raw.trim_start();
        let code = if trimmed.starts_with("//") { "" } else { raw };
        if let Some(depth) = skip_depth.as_mut() {
            *depth += brace_delta(code);
            out.push(String::new());
            if *depth <= 0 && code.contains('}') {
                skip_depth = None;
            }
            continue;
        }
        let t = code.trim();
        if t == "#[cfg(test)]" {
            pending_cfg_test = true;
            out.push(String::new());
            continue;
        }
        if pending_cfg_test {
            if let Some(p) = t
                .strip_prefix("#[path = \"")
                .and_then(|r| r.strip_suffix("\"]"))
            {
                path_attr = Some(p.to_string());
                out.push(String::new());
                continue;
            }
            if t.starts_with("#[") {
                out.push(String::new());
                continue;
            }
            pending_cfg_test = false;
            if let Some(name) = t
                .trim_start_matches("pub ")
                .strip_prefix("mod ")
                .and_then(|r| r.strip_suffix(';'))
            {
                match path_attr.take() {
                    Some(p) => test_files.push(dir.join(p)),
                    None => {
                        test_files.push(mod_dir.join(format!("{name}.rs")));
                        test_files.push(mod_dir.join(name).join("mod.rs"));
                    }
                }
                out.push(String::new());
                continue;
            }
            let d = brace_delta(t);
            out.push(String::new());
            if d > 0 {
                skip_depth = Some(d);
            }
            continue;
        }
        out.push(code.to_string());
    }
    (out, test_files)
}

fn brace_delta(s: &str) -> i32 {
    s.chars().fold(0, |n, c| match c {
        '{' => n + 1,
        '}' => n - 1,
        _ => n,
    })
}

/// The top-level modules a line names through `crate::` or `super::` paths.
fn targets(line: &str, module: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let b = line.as_bytes();
    let ident = |from: usize| -> String {
        line[from..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut i = 0;
    while let Some(pos) = line[i..].find("crate::") {
        let at = i + pos;
        let start = at + "crate::".len();
        let word_start = at == 0 || !(b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_');
        if word_start {
            if line[start..].starts_with('{') {
                // `crate::{a::x, b}`: the first identifier of each part at depth 1
                let mut depth = 0;
                let mut expect = true;
                for (k, c) in line[start..].char_indices() {
                    match c {
                        '{' => {
                            depth += 1;
                            expect = depth == 1;
                        }
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        ',' if depth == 1 => expect = true,
                        c if expect && depth == 1 && (c.is_alphanumeric() || c == '_') => {
                            out.push(ident(start + k));
                            expect = false;
                        }
                        _ => {}
                    }
                }
            } else {
                out.push(ident(start));
            }
        }
        i = start;
    }
    let mut i = 0;
    while let Some(pos) = line[i..].find("super::") {
        let at = i + pos;
        let word_start = at == 0 || !(b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_');
        let mut ups = 0;
        let mut j = at;
        while line[j..].starts_with("super::") {
            ups += 1;
            j += "super::".len();
        }
        if word_start && ups >= module.len() {
            // climbs to the crate root: the next name is a top-level module
            out.push(ident(j));
        }
        i = j;
    }
    out.retain(|t| !t.is_empty() && t != "self");
    out
}

/// Every reference between different top-level modules in the production code of `src/`.
fn crate_refs() -> Vec<Ref> {
    let src = Path::new(ROOT).join("src");
    let files = rust_files(&src);
    let mut texts = BTreeMap::new();
    let mut test_only = BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read source");
        let (lines, tests) = production_lines(&text, f);
        test_only.extend(tests);
        texts.insert(f.clone(), lines);
    }
    let mut refs = Vec::new();
    for (f, lines) in texts {
        if test_only.contains(&f) {
            continue;
        }
        let rel = f.strip_prefix(&src).expect("under src");
        let module = module_path(rel);
        let Some(top) = module.first().cloned() else {
            continue; // lib.rs, main.rs: the crate map
        };
        for (n, l) in lines.iter().enumerate() {
            for t in targets(l, &module) {
                if t != top {
                    refs.push(Ref {
                        file: format!("src/{}", rel.display()),
                        line: n + 1,
                        target: t,
                        text: l.trim().to_string(),
                    });
                }
            }
        }
    }
    refs
}

/// The references made by the files of top-level module `module`.
fn from_module<'a>(refs: &'a [Ref], module: &str) -> impl Iterator<Item = &'a Ref> {
    let prefix = format!("src/{module}/");
    let file = format!("src/{module}.rs");
    refs.iter()
        .filter(move |r| r.file.starts_with(&prefix) || r.file == file)
}

fn report(bad: Vec<String>, rule: &str) {
    assert!(bad.is_empty(), "{rule}:\n{}", bad.join("\n"));
}

fn show(r: &Ref) -> String {
    format!("{}:{}: {}", r.file, r.line, r.text)
}

#[test]
fn the_parser_sees_imports_and_skips_tests_and_comments() {
    let f = Path::new("/x/src/server/session.rs");
    let text = "use crate::store::Store;\n// crate::web in a comment\nuse super::super::client::X;\n#[cfg(test)]\nmod tests {\n    use crate::cli::Y;\n}\nuse crate::{clock::now, sync};\n";
    let (lines, _) = production_lines(text, f);
    let module = vec!["server".to_string(), "session".to_string()];
    let all: Vec<String> = lines.iter().flat_map(|l| targets(l, &module)).collect();
    assert_eq!(all, ["store", "client", "clock", "sync"]);
}

#[test]
fn the_client_imports_nothing_from_the_server() {
    // The client is a library of its own: the proxy role, tests and the benchmark use it, so
    // it may use the wire (protocol, crypto, transport) and the leaves, nothing that serves.
    let allowed = ["protocol", "crypto", "transport", "clock", "sync"];
    let refs = crate_refs();
    let bad = from_module(&refs, "client")
        .filter(|r| !allowed.contains(&r.target.as_str()))
        .map(show)
        .collect();
    report(
        bad,
        "src/client may import only protocol, crypto, transport, clock and sync",
    );
}

#[test]
fn the_store_knows_no_sessions() {
    // Stores hold queues and messages; who is connected is the server's business.
    let forbidden = [
        "server",
        "client",
        "transport",
        "net",
        "control",
        "web",
        "app",
        "service",
        "cli",
        "names",
        "updates",
    ];
    let refs = crate_refs();
    let bad = from_module(&refs, "store")
        .filter(|r| forbidden.contains(&r.target.as_str()))
        .map(show)
        .collect();
    report(
        bad,
        "src/store must not import sessions, connections or services",
    );
}

#[test]
fn the_leaves_import_no_service() {
    // clock, sync, service and net are shared by everything, so they import (almost) nothing.
    let refs = crate_refs();
    let rules: [(&str, &[&str]); 4] = [
        ("clock", &[]),
        ("sync", &[]),
        ("service", &["sync"]),
        ("net", &["config"]),
    ];
    let mut bad = Vec::new();
    for (m, allowed) in rules {
        bad.extend(
            from_module(&refs, m)
                .filter(|r| !allowed.contains(&r.target.as_str()))
                .map(show),
        );
    }
    report(bad, "a shared leaf imports a module above it");
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let refs = crate_refs();
    let mut graph: BTreeMap<String, BTreeMap<String, Vec<&Ref>>> = BTreeMap::new();
    for r in &refs {
        let from = r.file["src/".len()..]
            .split(['/', '.'])
            .next()
            .unwrap_or_default()
            .to_string();
        graph
            .entry(from)
            .or_default()
            .entry(r.target.clone())
            .or_default()
            .push(r);
    }
    // a cycle exists iff some edge a -> b has b reaching a
    let reaches = |from: &str, to: &str| -> bool {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(n) = stack.pop() {
            if n == to {
                return true;
            }
            if seen.insert(n.clone()) {
                if let Some(next) = graph.get(&n) {
                    stack.extend(next.keys().cloned());
                }
            }
        }
        false
    };
    let mut bad = Vec::new();
    for (a, edges) in &graph {
        for (b, at) in edges {
            if reaches(b, a) {
                bad.push(format!(
                    "{a} -> {b} (closing a cycle back to {a}), first at {}",
                    show(at[0])
                ));
            }
        }
    }
    report(bad, "import cycles between top-level modules of src/");
}

/// The `[dependencies]` names of a crate's manifest.
fn dependencies(manifest: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(manifest).expect("manifest");
    let mut out = Vec::new();
    let mut in_deps = false;
    for (n, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            in_deps = t == "[dependencies]";
            continue;
        }
        if in_deps {
            if let Some((name, _)) = t.split_once('=') {
                if !t.starts_with('#') {
                    out.push((n + 1, name.trim().to_string()));
                }
            }
        }
    }
    out
}

#[test]
fn protocol_and_pure_crypto_do_no_io() {
    // The compiler keeps the smp-proto crate free of what it does not depend on; this keeps
    // the dependency list free of runtimes and the source free of std's I/O. The one thing
    // taken from the system is randomness (`crypto::random`, OsRng): key generation needs it,
    // and the command core takes an RNG parameter, so tests still seed it.
    let proto = Path::new(ROOT).join("proto");
    let mut bad: Vec<String> = dependencies(&proto.join("Cargo.toml"))
        .into_iter()
        .filter(|(_, d)| {
            ["tokio", "tokio-util", "futures", "async-std", "mio"].contains(&d.as_str())
        })
        .map(|(n, d)| format!("proto/Cargo.toml:{n}: depends on {d}"))
        .collect();
    for f in rust_files(&proto.join("src")) {
        let text = std::fs::read_to_string(&f).expect("read");
        let (lines, _) = production_lines(&text, &f);
        for (n, l) in lines.iter().enumerate() {
            for io in [
                "std::fs",
                "std::net",
                "std::thread",
                "SystemTime::now",
                "Instant::now",
                "std::env",
            ] {
                if l.contains(io) {
                    bad.push(format!(
                        "{}:{}: {io}: {}",
                        f.strip_prefix(ROOT).unwrap_or(&f).display(),
                        n + 1,
                        l.trim()
                    ));
                }
            }
        }
    }
    report(bad, "smp-proto must do no I/O and read no clock");
}

#[test]
fn acme_onion_and_updater_know_nothing_of_smp() {
    let mut bad = Vec::new();
    for c in ["acme", "onion", "updater"] {
        let dir = Path::new(ROOT).join(c);
        for (n, d) in dependencies(&dir.join("Cargo.toml")) {
            if d.starts_with("smp-") || d.starts_with("smp_") {
                bad.push(format!("{c}/Cargo.toml:{n}: depends on {d}"));
            }
        }
        for f in rust_files(&dir.join("src")) {
            let text = std::fs::read_to_string(&f).expect("read");
            let (lines, _) = production_lines(&text, &f);
            for (n, l) in lines.iter().enumerate() {
                if l.contains("smp_server") || l.contains("smp_proto") {
                    bad.push(format!(
                        "{}:{}: {}",
                        f.strip_prefix(ROOT).unwrap_or(&f).display(),
                        n + 1,
                        l.trim()
                    ));
                }
            }
        }
    }
    report(
        bad,
        "the acme, onion and updater crates must not use SMP crates",
    );
}
