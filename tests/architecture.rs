//! The layering the README promises, checked on the source: data flows one way
//! (receive -> decode -> match -> record -> derive -> export), a module imports only
//! earlier stages and leaf helpers, nothing imports an exporter, no two modules import
//! each other (directly or round a longer circle), and the product never imports the
//! load generator.
//!
//! It reads every `crate::` path in `src/` (use lines, grouped `use crate::{..}` and
//! inline paths; comments and `#[cfg(test)] mod tests` blocks are skipped) and maps each
//! module to a unit and each unit to a stage. A component's `config` submodule
//! (`pipeline::config`) belongs to the config unit, not to its component.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Stages in data-flow order. Wiring (the binary, the app that starts everything, the
/// tools) may import anything; nothing but wiring may import wiring.
const STAGES: &[(&str, &[&str])] = &[
    (
        "leaf",
        &[
            "span",
            "span_record",
            "labels",
            "duration",
            "clock",
            "hist",
            "telemetry",
            "catalogue",
            "checkpoint",
            "internal_events",
            "rng",
            "distinct",
            "sampling",
            "pool",
            "mix",
            "proto",
        ],
    ),
    ("config", &["config_reader", "predicate", "config"]),
    ("receive", &["receiver", "tls"]),
    ("decode", &["decode"]),
    (
        "match",
        &["journey", "users", "value", "metric_input", "experience"],
    ),
    (
        "record",
        &[
            "ingest",
            "pipeline",
            "window",
            "snapshot",
            "signals",
            "traces",
            "completion",
            "versions",
            "metric_requests",
            "partial",
            "owners",
        ],
    ),
    (
        "derive",
        &[
            "sli",
            "slo",
            "incidents",
            "deployments",
            "score",
            "history",
            "published",
            "deriver",
            "kstate",
        ],
    ),
    ("export", &["export", "api", "ui"]),
    (
        "wiring",
        &[
            "app", "admin", "reload", "main", "cli", "gate", "loadgen", "lib", "rules", "openslo",
        ],
    ),
];

/// Edges another branch removes; each must still exist (so the entry is deleted when
/// the edge goes) and is allowed until then.
const PENDING: &[(&str, &str, &str)] = &[];

const EXPORT: &str = "export";
const WIRING: &str = "wiring";
const LEAF: &str = "leaf";

fn stage_of(unit: &str) -> Option<(usize, &'static str)> {
    STAGES
        .iter()
        .enumerate()
        .find(|(_, (_, units))| units.contains(&unit))
        .map(|(i, (name, _))| (i, *name))
}

/// The unit a module path belongs to: the YAML reader (`config::yaml`, `config::decode`)
/// is its own unit, below the rule language and every component config; otherwise
/// `a::config::..`, `a::b::config::..` (a sub-component's, `receiver::kafka::config`) and
/// `config::..` are config, anything else its first segment.
fn unit_of(path: &[String]) -> String {
    let first_two: Vec<&str> = path.iter().take(2).map(String::as_str).collect();
    if matches!(first_two[..], ["config", "yaml"] | ["config", "decode"]) {
        return "config_reader".into();
    }
    if path.iter().take(3).any(|s| s == "config") {
        return "config".into();
    }
    path.first().cloned().unwrap_or_else(|| "lib".into())
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src/ is readable") {
        let p = e.expect("a directory entry").path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` -> [a, b]; `src/a/mod.rs` -> [a]; `src/lib.rs` -> [lib].
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("a file under src/");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().map(String::as_str) == Some("mod") {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its unit-test module.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_end(s: &str) -> usize {
    s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len())
}

/// The paths after `prefix` (`crate::` or `super::`), grouped imports expanded one level.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        out.extend(path_at(rest));
    }
    out
}

/// Reads `a::b::{c, d::e}` at the start of `s` into [a, b, c] and [a, b, d, e].
fn path_at(s: &str) -> Vec<Vec<String>> {
    let mut segs = Vec::new();
    let mut s = s;
    loop {
        if let Some(inner) = s.strip_prefix('{') {
            return group(&segs, inner);
        }
        let n = ident_end(s);
        if n == 0 {
            break;
        }
        segs.push(s[..n].to_string());
        s = &s[n..];
        match s.strip_prefix("::") {
            Some(r) => s = r,
            None => break,
        }
    }
    if segs.is_empty() {
        vec![]
    } else {
        vec![segs]
    }
}

/// The items of `{a, b::c}` (`inner` starts after the brace), each behind `prefix`.
fn group(prefix: &[String], inner: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                out.extend(item(prefix, &inner[start..i]));
                return out;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.extend(item(prefix, &inner[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    out
}

fn item(prefix: &[String], s: &str) -> Vec<Vec<String>> {
    let s = s.trim();
    if s.is_empty() || s == "self" {
        return vec![prefix.to_vec()];
    }
    path_at(s)
        .into_iter()
        .map(|p| prefix.iter().cloned().chain(p).collect())
        .collect()
}

/// `text` with every comment, string and char literal turned into spaces (line breaks
/// kept), so that only the code's own braces are left to count.
fn blank_literals(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, s: &[char]| {
        out.extend(s.iter().map(|&x| if x == '\n' { '\n' } else { ' ' }));
    };
    let ident = |x: char| x.is_alphanumeric() || x == '_';
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(i + k).copied();
        let end = if at(0) == Some('/') && at(1) == Some('/') {
            let n = c[i..]
                .iter()
                .position(|&x| x == '\n')
                .unwrap_or(c.len() - i);
            i + n
        } else if at(0) == Some('/') && at(1) == Some('*') {
            let (mut j, mut depth) = (i + 2, 1);
            while j < c.len() && depth > 0 {
                if c[j] == '/' && c.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 1;
                } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 1;
                }
                j += 1;
            }
            j
        } else if (at(0) == Some('r') || (at(0) == Some('b') && at(1) == Some('r')))
            && (i == 0 || !ident(c[i - 1]))
            && {
                let k = if at(0) == Some('b') { 2 } else { 1 };
                let h = c[i + k..].iter().take_while(|&&x| x == '#').count();
                c.get(i + k + h) == Some(&'"')
            }
        {
            // r"..", r#".."#, br"..": no escapes, closed by the quote and as many hashes.
            let k = if at(0) == Some('b') { 2 } else { 1 };
            let h = c[i + k..].iter().take_while(|&&x| x == '#').count();
            let mut j = i + k + h + 1;
            while j < c.len()
                && !(c[j] == '"' && c[j + 1..].iter().take(h).filter(|&&x| x == '#').count() == h)
            {
                j += 1;
            }
            (j + 1 + h).min(c.len())
        } else if at(0) == Some('"') {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            (j + 1).min(c.len())
        } else if at(0) == Some('\'') && at(1) == Some('\\') {
            // '\n', '\'', '\u{..}'
            let n = c[i + 3..]
                .iter()
                .position(|&x| x == '\'')
                .map_or(0, |p| p + 1);
            i + 3 + n
        } else if at(0) == Some('\'') && at(2) == Some('\'') {
            i + 3
        } else {
            out.push(c[i]);
            i += 1;
            continue;
        };
        blank(&mut out, &c[i..end.min(c.len())]);
        i = end.min(c.len());
    }
    out
}

/// Each `super::` path of `code` with the inline modules (`mod name { .. }`) open where
/// it is, outermost first. `code` has its literals blanked ([`blank_literals`]): every
/// brace left is the code's.
fn super_paths(code: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let b = code.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut pending: Option<String> = None;
    let mut depth = 0;
    let mut i = 0;
    while i < b.len() {
        let after_ident = i > 0 && (is_ident(b[i - 1]) || b[i - 1] == b':');
        match b[i] {
            b'{' => {
                depth += 1;
                if let Some(name) = pending.take() {
                    open.push((name, depth));
                }
            }
            b'}' => {
                if open.last().is_some_and(|(_, d)| *d == depth) {
                    open.pop();
                }
                depth = depth.saturating_sub(1);
            }
            b';' => pending = None,
            _ if !after_ident && code[i..].starts_with("mod ") => {
                let rest = code[i + 4..].trim_start();
                let name = &rest[..ident_end(rest)];
                if rest[name.len()..].trim_start().starts_with('{') {
                    pending = Some(name.to_string());
                }
            }
            _ if !after_ident && code[i..].starts_with("super::") => {
                let scope = open.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
                for p in path_at(&code[i + "super::".len()..]) {
                    out.push((scope.clone(), p));
                }
                i += "super::".len();
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The crate paths the `super::` paths of the file of `module` name. `super` is the
/// parent of the module it is written in: of `a/b.rs` (and `a/b/mod.rs`) it is `a`, but
/// inside `mod m { .. }` of that file it is `a::b`; `super::super::` goes up again.
fn super_targets(module: &[String], code: &str) -> Vec<Vec<String>> {
    // lib.rs is the crate root itself, not a module `lib`.
    let file: &[String] = if module == ["lib"] { &[] } else { module };
    super_paths(code)
        .into_iter()
        .map(|(scope, path)| {
            let mut base: Vec<String> = file.iter().cloned().chain(scope).collect();
            base.pop();
            let mut path = path.as_slice();
            while let Some(rest) = path.strip_prefix(&["super".to_string()]) {
                base.pop();
                path = rest;
            }
            base.into_iter().chain(path.iter().cloned()).collect()
        })
        .collect()
}

/// unit -> units it imports, and for each edge one file that makes it.
fn import_graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 20, "found only {} files in src/", files.len());
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for f in &files {
        let module = module_path(&src, f);
        if module.last().map(String::as_str) == Some("tests") {
            continue;
        }
        let from = unit_of(&module);
        let text = std::fs::read_to_string(f).expect("a readable source file");
        let code = code_of(&text);
        let mut targets = paths_after(&code, "crate::");
        // `crate::` paths count in strings too (`#[serde(with = "crate::..")]`); the
        // inline modules around a `super::` are found by braces, which strings hide.
        targets.extend(super_targets(&module, &code_of(&blank_literals(&text))));
        let entry = graph.entry(from.clone()).or_default();
        for t in targets {
            let to = unit_of(&t);
            if to != from {
                let shown = f.strip_prefix(&src).unwrap_or(f).display().to_string();
                entry.entry(to).or_insert(shown);
            }
        }
    }
    graph
}

#[test]
fn every_module_has_a_stage() {
    let graph = import_graph();
    let mut unknown: BTreeSet<String> = BTreeSet::new();
    for (from, to) in &graph {
        for u in std::iter::once(from).chain(to.keys()) {
            if stage_of(u).is_none() {
                unknown.insert(u.clone());
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "modules with no stage in tests/architecture.rs: {unknown:?}"
    );
}

#[test]
fn imports_point_to_earlier_stages_only() {
    let graph = import_graph();
    let mut bad = Vec::new();
    for (from, tos) in &graph {
        let Some((fs, fname)) = stage_of(from) else {
            continue;
        };
        for (to, file) in tos {
            let Some((ts, tname)) = stage_of(to) else {
                continue;
            };
            if fname == WIRING || is_pending(from, to) {
                continue;
            }
            if tname == WIRING {
                bad.push(format!(
                    "{file}: {from} ({fname}) imports {to}, which is wiring"
                ));
            } else if fname == LEAF && tname != LEAF {
                bad.push(format!("{file}: leaf {from} imports {to} ({tname})"));
            } else if ts > fs {
                bad.push(format!(
                    "{file}: {from} ({fname}) imports {to} from the later stage {tname}"
                ));
            } else if tname == EXPORT {
                bad.push(format!("{file}: {from} imports the exporter {to}"));
            }
        }
    }
    assert!(bad.is_empty(), "layering broken:\n{}", bad.join("\n"));
}

fn is_pending(from: &str, to: &str) -> bool {
    PENDING.iter().any(|(f, t, _)| *f == from && *t == to)
}

#[test]
fn pending_exceptions_still_exist() {
    let graph = import_graph();
    let gone: Vec<String> = PENDING
        .iter()
        .filter(|(f, t, _)| !graph.get(*f).is_some_and(|m| m.contains_key(*t)))
        .map(|(f, t, why)| format!("{f} -> {t} ({why})"))
        .collect();
    assert!(
        gone.is_empty(),
        "these imports are gone; delete their PENDING entries: {gone:?}"
    );
}

#[test]
fn no_import_circles() {
    let graph = import_graph();
    // Depth-first search; a grey node met again closes a circle.
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        found: &mut Vec<String>,
    ) {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for to in graph.get(n).into_iter().flat_map(|m| m.keys()) {
            match state.get(to.as_str()).copied().unwrap_or(0) {
                0 => visit(to, graph, state, stack, found),
                1 => {
                    let at = stack.iter().position(|s| s == to).unwrap_or(0);
                    let mut circle = stack[at..].to_vec();
                    circle.push(to.clone());
                    found.push(circle.join(" -> "));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
    }
    let mut state = BTreeMap::new();
    let mut found = Vec::new();
    for n in graph.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            visit(n, &graph, &mut state, &mut Vec::new(), &mut found);
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_product_never_imports_the_load_generator() {
    let graph = import_graph();
    let users: Vec<String> = graph
        .iter()
        .filter(|(from, tos)| {
            !matches!(from.as_str(), "loadgen" | "main" | "cli")
                && tos.contains_key("loadgen")
                && !is_pending(from, "loadgen")
        })
        .map(|(from, tos)| format!("{from} ({})", tos["loadgen"]))
        .collect();
    assert!(
        users.is_empty(),
        "product modules import loadgen: {users:?}"
    );
}

/// The reader itself: a grouped import and a `super::` path resolve to their units, so
/// the checks above cannot pass by reading nothing.
#[test]
fn the_reader_finds_grouped_and_component_config_imports() {
    let code = code_of(
        "use crate::{window::Counts, pipeline::config::Pipeline};\n// crate::export::x\nfn f() { crate::labels::sanitize_label(\"a\"); }\n",
    );
    let units: Vec<String> = paths_after(&code, "crate::")
        .iter()
        .map(|p| unit_of(p))
        .collect();
    assert_eq!(units, ["window", "config", "labels"]);
    let graph = import_graph();
    assert!(
        graph["window"].contains_key("hist"),
        "{:?}",
        graph["window"]
    );
    assert!(graph["journey"].contains_key("config"));
}

/// The `super::` resolver: a path in an inline module is relative to that module, not
/// to the file's parent (issue: `mod m { use super::x; }` in `export/prometheus.rs` was
/// read as `export::x`, and in `lib.rs`'s `mod proto` as nothing of the crate).
#[test]
fn super_resolves_against_the_inline_module_it_is_written_in() {
    let m = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    let code = code_of(&blank_literals(concat!(
        "use super::config::Exporters;\n",
        "pub mod inner {\n",
        "    const OPEN: char = '{';\n",
        "    const CLOSE: &[u8] = b\"}}\"; // }\n",
        "    fn f() { if true { let _ = format!(\"{}\", 1); } }\n",
        "    /* } */ const R: &str = r#\"}\"#;\n",
        "    use super::labels;\n",
        "    mod deeper { use super::super::otlp::{a, b::c}; }\n",
        "    use super::deeper::x;\n",
        "}\n",
        "mod outlined;\n",
        "use super::hist;\n",
    )));
    assert_eq!(
        super_targets(&m("export::prometheus"), &code),
        [
            m("export::config::Exporters"),
            m("export::prometheus::labels"),
            m("export::prometheus::otlp::a"),
            m("export::prometheus::otlp::b::c"),
            m("export::prometheus::deeper::x"),
            m("export::hist"),
        ]
    );
    let lib = code_of("pub mod proto {\n    use super::window::Counts;\n}\n");
    assert_eq!(super_targets(&m("lib"), &lib), [m("window::Counts")]);
    let units: Vec<String> = super_targets(&m("export::prometheus"), &code)
        .iter()
        .map(|p| unit_of(p))
        .collect();
    // `export::config::..` is the component config unit (see `unit_of`).
    assert_eq!(
        units,
        ["config", "export", "export", "export", "export", "export"]
    );
}

/// The counters as `telemetry.rs` declares them: the paths from a `Telemetry` value to
/// each field typed `AtomicU64` or `[AtomicU64; N]`, through the structs it holds that are
/// declared there too (`kafka.errors_reported`).
fn declared_counters(telemetry: &str) -> Vec<String> {
    let mut structs: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut rest = telemetry;
    while let Some(i) = rest.find("pub struct ") {
        rest = &rest[i + "pub struct ".len()..];
        let name = &rest[..ident_end(rest)];
        let Some(body) = rest.find('{').and_then(|o| {
            let body = &rest[o + 1..];
            body.find("\n}").map(|c| &body[..c])
        }) else {
            continue;
        };
        let fields = body
            .lines()
            .map(|l| l.trim().trim_start_matches("pub "))
            .filter(|l| !l.starts_with("//"))
            .filter_map(|l| l.split_once(": "))
            .map(|(f, ty)| (f.to_string(), ty.trim_end_matches(',').to_string()))
            .collect();
        structs.insert(name.to_string(), fields);
    }
    fn walk(
        name: &str,
        prefix: &str,
        structs: &BTreeMap<String, Vec<(String, String)>>,
        out: &mut Vec<String>,
    ) {
        for (field, ty) in structs.get(name).into_iter().flatten() {
            if ty == "AtomicU64" || ty.starts_with("[AtomicU64;") {
                out.push(format!("{prefix}{field}"));
            } else if structs.contains_key(ty.as_str()) && ty != name {
                walk(ty, &format!("{prefix}{field}."), structs, out);
            }
        }
    }
    let mut out = Vec::new();
    walk("Telemetry", "", &structs, &mut out);
    out
}

/// The names that hold a `Telemetry`: those declared with that type (`tel: &Telemetry`,
/// `tel: Arc<crate::telemetry::Telemetry>`) and `let` aliases of them (`let t = &sh.tel;`).
fn telemetry_bindings(codes: &[String]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for code in codes {
        let mut at = 0;
        while let Some(i) = code[at..].find("Telemetry") {
            let end = at + i + "Telemetry".len();
            let mut before = &code[..at + i];
            at = end;
            if code[end..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
            {
                continue;
            }
            loop {
                let t = before.trim_end();
                let t = ["crate::telemetry::", "std::sync::Arc<", "Arc<", "&", "mut"]
                    .iter()
                    .find_map(|p| t.strip_suffix(p));
                match t {
                    Some(t) => before = t,
                    None => break,
                }
            }
            let Some(decl) = before.trim_end().strip_suffix(':') else {
                continue;
            };
            if decl.ends_with(':') {
                continue;
            }
            let decl = decl.trim_end();
            let start = decl
                .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
                .map_or(0, |p| p + 1);
            if start < decl.len() {
                names.insert(decl[start..].to_string());
            }
        }
    }
    // Aliases, to a fixed point (an alias of an alias).
    loop {
        let before = names.len();
        for code in codes {
            for stmt in code.split(';') {
                let Some((lhs, rhs)) = stmt
                    .trim()
                    .strip_prefix("let ")
                    .and_then(|s| s.split_once('='))
                else {
                    continue;
                };
                let lhs = lhs.trim().trim_start_matches("mut ").trim();
                let rhs = rhs
                    .trim()
                    .trim_start_matches('&')
                    .trim_end_matches(".clone()");
                let last = rhs.rsplit('.').next().unwrap_or(rhs).trim();
                if names.contains(last) && ident_end(lhs) == lhs.len() && !lhs.is_empty() {
                    names.insert(lhs.to_string());
                }
            }
        }
        if names.len() == before {
            return names;
        }
    }
}

/// The statements of `code` that bump a counter: `<binding>.<counter>` (an index
/// allowed), then `.add(` or `.fetch_add(`, white space and line breaks ignored. A field
/// of the same name on another value (`counts.errors.add(1)`) is not a counter.
fn counter_bumps(code: &str, bindings: &BTreeSet<String>, counters: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for stmt in code.split(';') {
        let flat: String = stmt.chars().filter(|c| !c.is_whitespace()).collect();
        let hit = bindings.iter().any(|b| {
            counters.iter().any(|c| {
                let needle = format!("{b}.{c}");
                flat.match_indices(&needle).any(|(i, _)| {
                    let ok_before = flat[..i]
                        .chars()
                        .last()
                        .is_none_or(|p| !(p.is_alphanumeric() || p == '_'));
                    let mut after = &flat[i + needle.len()..];
                    if after.starts_with('[') {
                        after = after.find(']').map_or("", |e| &after[e + 1..]);
                    }
                    ok_before && (after.starts_with(".add(") || after.starts_with(".fetch_add("))
                })
            })
        });
        if hit {
            out.push(stmt.trim().to_string());
        }
    }
    out
}

/// A counter moves only in an internal event's `emit()`, which also logs: no counter
/// without its log line. Finds, outside internal_events.rs, a counter that
/// telemetry.rs declares bumped through a name that holds a `Telemetry`.
#[test]
fn counters_are_bumped_only_by_internal_events() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let telemetry = std::fs::read_to_string(src.join("telemetry.rs")).expect("telemetry.rs");
    let counters = declared_counters(&code_of(&telemetry));
    assert!(counters.len() >= 15, "read {counters:?} from telemetry.rs");
    assert!(
        counters.iter().any(|c| c == "kafka.errors_reported"),
        "{counters:?}"
    );
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    files.sort();
    let codes: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            let name = f.strip_prefix(&src).unwrap_or(f).display().to_string();
            (
                name,
                code_of(&std::fs::read_to_string(f).expect("a source file")),
            )
        })
        .collect();
    let all: Vec<String> = codes.iter().map(|(_, c)| c.clone()).collect();
    let bindings = telemetry_bindings(&all);
    assert!(bindings.contains("tel"), "{bindings:?}");
    let mut bumps = Vec::new();
    for (name, code) in &codes {
        if name == "internal_events.rs" || name == "telemetry.rs" {
            continue;
        }
        for b in counter_bumps(code, &bindings, &counters) {
            bumps.push(format!("{name}: {b}"));
        }
    }
    assert!(
        bumps.is_empty(),
        "counters bumped outside an internal event:\n{}",
        bumps.join("\n")
    );
}

/// The counter check's reader: it finds bumps split over lines, through an index, an
/// alias or a nested struct, and not a same-named field of something else.
#[test]
fn the_counter_check_reads_declarations_not_names() {
    let telemetry = "pub struct Telemetry {\n    pub errors: AtomicU64,\n    pub refused: [AtomicU64; 3],\n    pub invalid: std::sync::Mutex<u64>,\n    pub kafka: KafkaState,\n}\npub struct KafkaState {\n    pub errors: AtomicU64,\n}\n";
    let counters = declared_counters(telemetry);
    assert_eq!(counters, ["errors", "refused", "kafka.errors"]);
    let code = code_of(
        "fn f(tel: &crate::telemetry::Telemetry, counts: &Counts) {\n    counts.errors.fetch_add(1, Relaxed);\n    tel.refused[r.index()]\n        .fetch_add(1, Relaxed);\n    let t = &self.tel;\n    t.kafka.errors.add(2);\n    tel.errors.load(Relaxed);\n}\n",
    );
    let bindings = telemetry_bindings(std::slice::from_ref(&code));
    assert_eq!(
        bindings.iter().map(String::as_str).collect::<Vec<_>>(),
        ["t", "tel"]
    );
    assert_eq!(
        counter_bumps(&code, &bindings, &counters),
        [
            "tel.refused[r.index()]\n        .fetch_add(1, Relaxed)",
            "t.kafka.errors.add(2)"
        ]
    );
}
