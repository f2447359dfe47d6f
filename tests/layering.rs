//! The house's layering, kept by a test: each room of `src/` may use only
//! the rooms listed for it below (the same table is in the README's
//! architecture section). A room never imports a room above it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Room -> the rooms it may use. Lower rooms first.
const ALLOWED: &[(&str, &[&str])] = &[
    ("util", &[]),
    ("crypto", &[]),
    ("access", &[]),
    ("lifecycle", &[]),
    ("config", &["util"]),
    ("observability", &["config"]),
    ("store", &["config"]),
    ("cluster", &["config", "store", "util"]),
    (
        "registry",
        &["access", "cluster", "config", "store", "util"],
    ),
    (
        "auth",
        &[
            "access", "cluster", "config", "crypto", "registry", "store", "util",
        ],
    ),
    ("mcp", &["access", "util"]),
    ("relay", &["cluster", "config", "mcp", "util"]),
    (
        "federation",
        &[
            "cluster", "config", "crypto", "mcp", "registry", "store", "util",
        ],
    ),
    (
        "gateway",
        &["access", "config", "federation", "mcp", "registry", "util"],
    ),
    ("edge", &["auth", "cluster", "config", "util"]),
    (
        "api",
        &[
            "access",
            "auth",
            "cluster",
            "config",
            "crypto",
            "federation",
            "gateway",
            "lifecycle",
            "mcp",
            "observability",
            "registry",
            "store",
            "util",
        ],
    ),
    (
        "server",
        &[
            "api",
            "auth",
            "cluster",
            "config",
            "crypto",
            "edge",
            "federation",
            "gateway",
            "lifecycle",
            "mcp",
            "observability",
            "registry",
            "relay",
            "store",
            "util",
        ],
    ),
];

fn rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The rooms a file names through `crate::room` (paths and grouped uses).
fn rooms_used(text: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::x, b}`: the first segment of each top-level item.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        used.insert(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            used.insert(first_segment(&item));
        } else {
            used.insert(first_segment(rest));
        }
    }
    used.remove("");
    used
}

fn first_segment(s: &str) -> String {
    s.trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn no_room_uses_a_room_above_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(room, deps)| (*room, deps.iter().copied().collect()))
        .collect();
    let mut files = Vec::new();
    rs_files(&root, &mut files);
    let mut violations = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&root).unwrap();
        let room = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if room == "lib" || room == "main" {
            continue;
        }
        let Some(deps) = allowed.get(room.as_str()) else {
            violations.push(format!(
                "{}: room `{room}` is not in the table",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&f).unwrap();
        for used in rooms_used(&text) {
            if used != room && !deps.contains(used.as_str()) {
                violations.push(format!("{}: `{room}` uses `{used}`", rel.display()));
            }
        }
        if !["edge", "server", "api", "config"].contains(&room.as_str())
            && text.contains("mcpgate_proxy")
        {
            violations.push(format!(
                "{}: only the edge wiring knows the proxy crate",
                rel.display()
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "layering broken:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_scanner_sees_grouped_and_inline_paths() {
    let used = rooms_used("use crate::{a::X, b}; fn f() { crate::c::g(); }");
    assert_eq!(
        used.into_iter().collect::<Vec<_>>(),
        vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]
    );
}
