//! The crate's layers import in one direction only: a module uses its own layer or lower ones,
//! never a higher one. Read from the source: every `crate::` path (and every `super::` path that
//! leaves the file's layer) of every file under src/, comments left out. See docs/architecture.md.

use std::path::{Path, PathBuf};

/// The layers, lowest first. A file belongs to the layer of the first folder (or file) under
/// src/; `locked` is the one helper at the crate root, usable everywhere.
const LAYERS: &[(&str, &[&str])] = &[
    ("model", &["model", "locked"]),
    ("rules", &["rules"]),
    ("state", &["state"]),
    ("adapters and alerts", &["adapters", "alerts"]),
    ("reconcile", &["reconcile"]),
    ("app", &["app"]),
    ("cli", &["cli"]),
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under src/: `src/rules/scope.rs` is `[rules, scope]`,
/// `src/reconcile/mod.rs` is `[reconcile]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("a file under src/");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code of a file without its comments (line comments, doc comments included).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string ("http://…") is kept: good enough for paths.
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The top-level modules a file's code reaches through `crate::` and `super::` paths, with the
/// line each is on.
fn imports(module: &[String], code: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            // `kube_reloader::…` or `some_crate::…` is not this crate's root.
            let before = rest[..at].chars().last();
            let after = &rest[at + "crate::".len()..];
            rest = after;
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = after.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for item in group.split(',') {
                    found.push((ident_at(item.trim()), n + 1));
                }
            } else {
                found.push((ident_at(after), n + 1));
            }
        }
        let mut rest = line;
        while let Some(at) = rest.find("super::") {
            let before = rest[..at].chars().last();
            let mut after = &rest[at..];
            rest = &rest[at + "super::".len()..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            // From a file's module: each `super::` goes one level up.
            let mut depth = module.len();
            while let Some(tail) = after.strip_prefix("super::") {
                depth = depth.saturating_sub(1);
                after = tail;
            }
            rest = after;
            let target = if depth == 0 {
                ident_at(after)
            } else {
                module[0].clone()
            };
            found.push((target, n + 1));
        }
    }
    found
}

/// Every import against the order, as `file:line: layer imports higher layer`.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for file in files {
        let module = module_path(src, &file);
        let Some(top) = module.first() else { continue };
        // The crate root and the binary sit above every layer.
        if top == "lib" || top == "main" {
            continue;
        }
        let shown = file
            .strip_prefix(src.parent().unwrap_or(src))
            .unwrap_or(&file);
        let Some(own) = rank(top) else {
            bad.push(format!(
                "{}: module `{top}` is in no layer; put it in a layer's folder (tests/layers.rs lists them)",
                shown.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("a readable source file");
        for (target, line) in imports(&module, &code(&text)) {
            match rank(&target) {
                Some(r) if r > own => bad.push(format!(
                    "{}:{line}: {} ({top}) imports crate::{target}, of the higher layer {}",
                    shown.display(),
                    LAYERS[own].0,
                    LAYERS[r].0
                )),
                // `*`, `self` or an item of the file's own root module.
                _ => {}
            }
        }
    }
    bad
}

#[test]
fn imports_run_from_higher_layers_to_lower_ones_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = violations(&src);
    assert!(
        bad.is_empty(),
        "imports against the layers (model < rules < state < adapters, alerts < reconcile < app < cli):\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_check_sees_an_upward_import() {
    let module = vec!["rules".to_string(), "optin".to_string()];
    let code = code("use crate::cli::parse_duration; // crate::app in a comment\n");
    let found = imports(&module, &code);
    assert_eq!(found, [("cli".to_string(), 1)]);
    let up = imports(&module, "use super::super::state::index;");
    assert_eq!(up, [("state".to_string(), 1)]);
    assert_eq!(imports(&module, "use kube_reloader::app::x;"), []);
    assert!(rank("cli") > rank("rules"));
}
