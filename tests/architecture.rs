//! The layer rule of docs/architecture.md: every module of src/ imports only from its own layer's
//! core or from layers below it, so that no dependency cycle can come back.
//!
//! The test reads every file of src/ (without the `#[cfg(test)]` parts: unit tests may use any
//! module), collects the top-level module of each `crate::x` path (in `use` lines, in expressions
//! and in doc links alike, `crate::{a, b}` groups included), and fails naming the file and the
//! offending import. (`super::` paths stay inside a top-level module by convention: reach another
//! top-level module through `crate::`.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, bottom first. A module may import any module of a lower layer; within a layer
/// only the core (layer 0) modules may import each other.
const LAYERS: &[&[&str]] = &[
    &["isa", "rng", "model", "overlaps", "init", "grid"],
    &["population"],
    &["ode", "simulators"],
    &["analysis"],
    &["config"],
    &["studies"],
    &["cli"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Whether `from` may import `to` (both top-level modules).
fn allowed(from: &str, to: &str) -> Result<(), String> {
    if from == to {
        return Ok(());
    }
    let (Some(lf), Some(lt)) = (layer(from), layer(to)) else {
        return Err(format!(
            "`{from}` or `{to}` is in no layer: add it to LAYERS in tests/architecture.rs and to docs/architecture.md"
        ));
    };
    if lt < lf || (lt == 0 && lf == 0) {
        Ok(())
    } else {
        Err(format!("{from} (layer {lf}) may not import {to} (layer {lt})"))
    }
}

/// The text of a file without its `#[cfg(test)]` items (everything from the first one on, as
/// unit-test modules come last), and the names of the out-of-line modules declared under
/// `#[cfg(test)]` (`#[cfg(test)] mod tests;`), whose files are skipped.
fn non_test_text(text: &str) -> (&str, Vec<String>) {
    let cut = text.find("#[cfg(test)]").unwrap_or(text.len());
    let mut test_mods = vec![];
    let mut rest = &text[cut..];
    while let Some(i) = rest.find("#[cfg(test)]") {
        rest = rest[i + "#[cfg(test)]".len()..].trim_start();
        if let Some(decl) = rest.strip_prefix("mod ") {
            let name: String = decl.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if decl[name.len()..].trim_start().starts_with(';') {
                test_mods.push(name);
            }
        }
    }
    (&text[..cut], test_mods)
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Top-level modules named by the `crate::` paths of `text`.
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        // Skip identifiers that merely end in "crate" (e.g. `hdsgd_crate::`).
        if text[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = ident(item.trim());
                if !name.is_empty() && name != "self" {
                    out.insert(name.to_string());
                }
            }
        } else {
            out.insert(ident(rest).to_string());
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

/// (path relative to src/, top-level module) of every non-test file.
fn sources(src: &Path) -> Vec<(PathBuf, String)> {
    let mut out = vec![];
    let mut stack = vec![src.to_path_buf()];
    let mut skipped: BTreeSet<PathBuf> = BTreeSet::new();
    let mut files = vec![];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    for p in &files {
        let text = std::fs::read_to_string(p).unwrap();
        let (_, test_mods) = non_test_text(&text);
        let dir = if p.file_name().unwrap() == "mod.rs" {
            p.parent().unwrap().to_path_buf()
        } else {
            p.with_extension("")
        };
        for m in test_mods {
            skipped.insert(dir.join(format!("{m}.rs")));
            skipped.insert(dir.join(m).join("mod.rs"));
        }
    }
    for p in files {
        if skipped.contains(&p) {
            continue;
        }
        let rel = p.strip_prefix(src).unwrap().to_path_buf();
        let parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        let top = parts[0].trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        out.push((rel, top));
    }
    out
}

fn violations(src: &Path) -> Vec<String> {
    let mut bad = vec![];
    for (rel, top) in sources(src) {
        let text = std::fs::read_to_string(src.join(&rel)).unwrap();
        let (text, _) = non_test_text(&text);
        for to in imports(text) {
            if let Err(why) = allowed(&top, &to) {
                bad.push(format!("src/{}: imports `crate::{to}`: {why}", rel.display()));
            }
        }
    }
    bad
}

#[test]
fn imports_follow_the_layer_order() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = violations(&src);
    assert!(
        bad.is_empty(),
        "imports against the layer order (docs/architecture.md):\n  {}",
        bad.join("\n  ")
    );
}

#[test]
fn every_top_level_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(rest) = line
            .trim()
            .strip_prefix("pub mod ")
            .or_else(|| line.trim().strip_prefix("mod "))
        {
            let name = ident(rest);
            assert!(
                layer(name).is_some(),
                "module `{name}` of lib.rs is in no layer of tests/architecture.rs"
            );
        }
    }
}

#[test]
fn the_checker_sees_what_it_must() {
    let text = "use crate::model::Model;\nuse crate::{config::Experiment, rng};\n/// [`crate::studies::run`]\nfn f() { crate::cli::main(); }\n#[cfg(test)]\nmod tests { use crate::cli; }\n";
    let (body, _) = non_test_text(text);
    let found: Vec<String> = imports(body).into_iter().collect();
    assert_eq!(found, ["cli", "config", "model", "rng", "studies"]);
    assert!(allowed("analysis", "config").is_err());
    assert!(allowed("config", "analysis").is_ok());
    assert!(allowed("ode", "simulators").is_err());
    assert!(allowed("init", "rng").is_ok());
    assert!(allowed("simulators", "nowhere").is_err());
    let (_, test_mods) = non_test_text("pub mod factor;\n#[cfg(test)]\nmod tests;\n");
    assert_eq!(test_mods, ["tests"]);
}
