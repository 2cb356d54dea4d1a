//! The gateway is arranged by feature over a shared layer, and its modules do
//! not import each other in a circle (issue #14).
//!
//! How the check works: every `.rs` file under `src/` but `main.rs` (the binary,
//! a crate of its own) is cut into tokens by a small lexer that skips comments,
//! doc comments, string, byte-string, raw-string and char literals and
//! lifetimes. Every path that names a module of this crate becomes an edge from
//! the module of the file it is written in to the module it leads into:
//!
//! - `crate::a::b::Item` and `$crate::…` (macros), from the crate root;
//! - `super::…` and `self::…`, from the module the path is written in (inline
//!   modules such as `mod tests { use super::*; }` are tracked, so their `super`
//!   is their file);
//! - a child module by its bare name (`api::routes()` in `pilots/mod.rs`);
//! - every leaf of a `use` tree (`use crate::{shared::{page, state}, pilots}`).
//!
//! The target is the longest prefix of the path that is a module (a file, or an
//! inline module, which counts as its file); paths into other crates lead to no
//! module of ours and are ignored, and `mod x;` declarations are containment,
//! not imports. The graph must have no cycle at two granularities: files
//! (`pilots::api` → `pilots::ops` → `shared::state`) and top-level modules
//! (`pilots` → `shared`). The shared layer must import nothing but itself and
//! `config`. A failure names the cycle, or the offending import and its file.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The crate root, as a node name.
const ROOT: &str = "crate";

#[test]
fn no_gateway_module_imports_another_in_a_circle() {
    let graph = Graph::of(&gateway_sources());
    assert!(graph.edges.contains_key("pilots::api"), "the gateway's sources were read: {graph:?}");
    if let Some(cycle) = graph.cycle() {
        panic!("gateway modules import each other in a circle: {}", graph.explain(&cycle));
    }
    let top = graph.by_top_level();
    if let Some(cycle) = top.cycle() {
        panic!("top-level gateway modules import each other in a circle: {}", cycle.join(" → "));
    }
}

#[test]
fn the_shared_layer_imports_no_feature() {
    let graph = Graph::of(&gateway_sources());
    let allowed = |to: &str| top_level(to) == "shared" || top_level(to) == "config";
    let offending: Vec<String> = graph
        .edges
        .iter()
        .filter(|(from, _)| top_level(from) == "shared")
        .flat_map(|(from, to)| to.iter().filter(|t| !allowed(t)).map(move |t| (from.clone(), t.clone())))
        .map(|(from, to)| format!("{from} → {to} (`{}`)", graph.why[&(from.clone(), to.clone())]))
        .collect();
    assert!(offending.is_empty(), "the shared layer imports a feature: {}", offending.join(", "));
}

/// The check itself: it finds a cycle made of each kind of path, and no edge in
/// comments, strings, a test module's `super`, or another crate's paths.
#[test]
fn the_check_sees_cycles_and_only_real_imports() {
    let lib = ("lib.rs", "pub mod a; pub mod b; pub mod c;");
    let cyclic: [&[(&str, &str)]; 4] = [
        &[lib, ("a.rs", "use crate::b::Thing;"), ("b.rs", "pub fn f() { super::a::g(); }")],
        &[lib, ("a.rs", "use crate::{c, b::{self, x as y}};"), ("b.rs", "fn f() { $crate::a::g(); }")],
        &[
            lib,
            ("a/mod.rs", "pub mod inner; fn f() { inner::g() }"),
            ("a/inner.rs", "use crate::b::*;"),
            ("b.rs", "fn f() { crate::a::h() }"),
        ],
        // Through a name a `use` bound: a → b::inner (not b, which imports nothing) → a.
        &[
            lib,
            ("a.rs", "use crate::b as other; fn f() { other::inner::g() }"),
            ("b/mod.rs", "pub mod inner;"),
            ("b/inner.rs", "fn g() { crate::a::f() }"),
        ],
    ];
    for (i, files) in cyclic.iter().enumerate() {
        let graph = Graph::of(&sources(files));
        assert!(graph.cycle().is_some(), "case {i}: {graph:?}");
        assert!(graph.by_top_level().cycle().is_some(), "case {i}: {graph:?}");
    }
    let quiet = sources(&[
        lib,
        (
            "a.rs",
            "// crate::b::X\n/// [`crate::b`]\n/* crate::b /* nested */ crate::b */\n\
             const S: &str = \"crate::b::X\"; const R: &str = r#\"crate::b\"#; const C: char = '\"';\n\
             fn f<'b>(x: &'b str) -> &'b str { let _ = b'\"'; axum::b::f(); x }\n\
             #[cfg(test)] mod tests { use super::*; }",
        ),
        ("b.rs", "use crate::a::f;"),
    ]);
    let graph = Graph::of(&quiet);
    assert_eq!(graph.cycle(), None, "{graph:?}");
    assert_eq!(graph.edges.get("b").map(|t| t.len()), Some(1), "{graph:?}");
}

// ---------------------------------------------------------------- sources

/// A source file: its path under `src/` and its text.
type Source = (PathBuf, String);
/// A module's path from the crate root (empty for the root).
type Module = Vec<String>;
/// A path (`crate::shared::page::render`), with the module it is written in.
type Found = (Module, Vec<String>);

fn gateway_sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(&src).unwrap().to_path_buf();
                if relative != Path::new("main.rs") {
                    out.push((relative, std::fs::read_to_string(&path).unwrap()));
                }
            }
        }
    }
    out
}

fn sources(files: &[(&str, &str)]) -> Vec<Source> {
    files.iter().map(|(p, t)| (PathBuf::from(p), (*t).to_owned())).collect()
}

/// `pilots/api.rs` → `pilots::api`; `pilots/mod.rs` → `pilots`; `lib.rs` → the root.
fn module_of(file: &Path) -> Module {
    let mut segments: Vec<String> =
        file.with_extension("").iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if matches!(segments.last().map(String::as_str), Some("mod" | "lib")) {
        segments.pop();
    }
    segments
}

fn name(module: &[String]) -> String {
    if module.is_empty() { ROOT.to_owned() } else { module.join("::") }
}

fn top_level(node: &str) -> &str {
    node.split("::").next().unwrap_or(node)
}

// ---------------------------------------------------------------- the graph

/// Which module imports which: node names like `pilots::api`, the root `crate`.
#[derive(Debug, Default)]
struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
    /// For each edge, a path that made it (for the failure message).
    why: BTreeMap<(String, String), String>,
}

impl Graph {
    /// The file-level graph of a crate's sources.
    fn of(files: &[Source]) -> Self {
        let mut file_of: BTreeMap<Module, Module> = BTreeMap::new();
        let mut aliases = BTreeMap::new();
        let mut found = Vec::new();
        for (path, text) in files {
            let module = module_of(path);
            file_of.insert(module.clone(), module.clone());
            let scanned = scan(&lex(text), &module);
            for m in scanned.inline {
                file_of.insert(m, module.clone());
            }
            for (at, name, path) in scanned.aliases {
                aliases.insert((at, name), path);
            }
            found.push((module, scanned.paths));
        }
        let mut graph = Self::default();
        for (file, paths) in found {
            let from = name(&file);
            graph.edges.entry(from.clone()).or_default();
            for (at, path) in paths {
                let Some(target) = resolve(&at, &path, &file_of, &aliases) else { continue };
                let to = name(&file_of[&target]);
                if to != from {
                    graph.why.entry((from.clone(), to.clone())).or_insert_with(|| path.join("::"));
                    graph.edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
        graph
    }

    /// The graph of top-level modules (`pilots::api` → `shared::page` is `pilots` → `shared`).
    fn by_top_level(&self) -> Self {
        let mut out = Self::default();
        for (from, to) in &self.edges {
            let from = top_level(from).to_owned();
            let set = out.edges.entry(from.clone()).or_default();
            set.extend(to.iter().map(|t| top_level(t).to_owned()).filter(|t| *t != from));
        }
        out
    }

    /// A cycle, as its nodes with the first repeated at the end; `None` if there is none.
    fn cycle(&self) -> Option<Vec<String>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Open,
            Done,
        }
        fn visit<'a>(
            g: &'a Graph,
            node: &'a str,
            marks: &mut BTreeMap<&'a str, Mark>,
            stack: &mut Vec<&'a str>,
        ) -> Option<Vec<String>> {
            marks.insert(node, Mark::Open);
            stack.push(node);
            for next in g.edges.get(node).into_iter().flatten() {
                match marks.get(next.as_str()) {
                    Some(Mark::Open) => {
                        let start = stack.iter().position(|n| *n == next.as_str()).unwrap_or(0);
                        let mut cycle: Vec<String> = stack[start..].iter().map(|n| (*n).to_owned()).collect();
                        cycle.push(next.clone());
                        return Some(cycle);
                    }
                    Some(Mark::Done) => {}
                    None => {
                        if let Some(cycle) = visit(g, next, marks, stack) {
                            return Some(cycle);
                        }
                    }
                }
            }
            stack.pop();
            marks.insert(node, Mark::Done);
            None
        }
        let mut marks = BTreeMap::new();
        for node in self.edges.keys() {
            if !marks.contains_key(node.as_str())
                && let Some(cycle) = visit(self, node, &mut marks, &mut Vec::new())
            {
                return Some(cycle);
            }
        }
        None
    }

    /// `a → b (crate::b::X) → a (super::a::Y)`.
    fn explain(&self, cycle: &[String]) -> String {
        let mut out = cycle[0].clone();
        for pair in cycle.windows(2) {
            let why = self.why.get(&(pair[0].clone(), pair[1].clone())).map_or("", String::as_str);
            out.push_str(&format!(" → {} (`{why}`)", pair[1]));
        }
        out
    }
}

/// The module a path leads into, if it is one of this crate's: the longest
/// prefix of its absolute form that is a module. A path that starts with a name
/// a `use` bound (`ops::get_pilot` after `use crate::pilots::ops`) is read
/// through that `use`.
fn resolve(
    at: &[String],
    path: &[String],
    modules: &BTreeMap<Module, Module>,
    aliases: &BTreeMap<(Module, String), Vec<String>>,
) -> Option<Module> {
    let mut path = path.to_vec();
    for _ in 0..4 {
        let first = path.first()?;
        let child = [at, std::slice::from_ref(first)].concat();
        if matches!(first.as_str(), "crate" | "$crate" | "self" | "super") || modules.contains_key(&child) {
            break;
        }
        let full = aliases.get(&(at.to_vec(), first.clone()))?;
        path = full.iter().chain(&path[1..]).cloned().collect();
    }
    let mut segments = path.iter().map(String::as_str).peekable();
    let mut absolute: Module = match *segments.peek()? {
        "crate" | "$crate" => {
            segments.next();
            Vec::new()
        }
        "self" | "super" => {
            let mut here = at.to_vec();
            while let Some(s @ ("self" | "super")) = segments.peek().copied() {
                if s == "super" {
                    here.pop()?;
                }
                segments.next();
            }
            here
        }
        child => {
            let mut here = at.to_vec();
            here.push(child.to_owned());
            if !modules.contains_key(&here) {
                return None;
            }
            here.pop();
            here
        }
    };
    // `use a::{self, b}` gives `a::self`: the module itself.
    absolute.extend(segments.filter(|s| *s != "self").map(str::to_owned));
    (0..=absolute.len()).rev().map(|n| absolute[..n].to_vec()).find(|m| modules.contains_key(m))
}

// ---------------------------------------------------------------- tokens

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Open(char),
    Close(char),
    Punct(char),
}

/// Tokens of Rust source, without comments, literals and lifetimes.
fn lex(text: &str) -> Vec<Tok> {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            loop {
                if at(i) == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if at(i) == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else if i >= chars.len() {
                    break;
                } else {
                    i += 1;
                }
            }
        } else if c == '"' {
            i = skip_string(&chars, i + 1);
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{1F600}') or a lifetime/label ('a, 'static).
            if at(i + 1) == '\\' {
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
                while at(i).is_alphanumeric() || at(i) == '_' {
                    i += 1;
                }
            }
        } else if c.is_alphabetic() || c == '_' || (c == '$' && at(i + 1).is_alphabetic()) {
            let start = i;
            i += 1;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            match (word.as_str(), at(i)) {
                // Raw strings: r"…", r#"…"#, br"…"; byte, C strings and byte chars.
                ("r" | "br" | "cr", '"' | '#') if raw_string_at(&chars, i) => i = skip_raw_string(&chars, i),
                ("b" | "c", '"') => i = skip_string(&chars, i + 1),
                ("b", '\'') => {
                    i += if at(i + 1) == '\\' { 4 } else { 2 };
                    while i < chars.len() && chars[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                }
                // A raw identifier, r#type.
                ("r", '#') => {}
                _ => out.push(Tok::Ident(word)),
            }
        } else if c.is_ascii_digit() {
            while at(i).is_alphanumeric() || at(i) == '_' || (at(i) == '.' && at(i + 1).is_ascii_digit()) {
                i += 1;
            }
        } else if c == ':' && at(i + 1) == ':' {
            out.push(Tok::Sep);
            i += 2;
        } else if matches!(c, '{' | '(' | '[') {
            out.push(Tok::Open(c));
            i += 1;
        } else if matches!(c, '}' | ')' | ']') {
            out.push(Tok::Close(c));
            i += 1;
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

/// Past the closing quote of a string whose first character is at `i`.
fn skip_string(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// Whether `#`s then `"` start at `i` (after an `r` prefix).
fn raw_string_at(chars: &[char], mut i: usize) -> bool {
    while chars.get(i) == Some(&'#') {
        i += 1;
    }
    chars.get(i) == Some(&'"')
}

/// Past a raw string whose `#`s (or quote) start at `i`.
fn skip_raw_string(chars: &[char], mut i: usize) -> usize {
    let mut hashes = 0;
    while chars.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    i += 1;
    while i < chars.len() {
        if chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
            return i + 1 + hashes;
        }
        i += 1;
    }
    i
}

// ---------------------------------------------------------------- paths

/// What a file holds: its inline modules, every path with the module it is
/// written in, and the names its `use`s bind (in that module) to which paths.
struct Scanned {
    inline: Vec<Module>,
    paths: Vec<Found>,
    aliases: Vec<(Module, String, Vec<String>)>,
}

/// Finds a file's inline modules, paths and `use` names.
fn scan(tokens: &[Tok], file: &[String]) -> Scanned {
    let ident = |i: usize| match tokens.get(i) {
        Some(Tok::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let mut inline = Vec::new();
    let mut paths = Vec::new();
    let mut aliases = Vec::new();
    // The modules open at this point, with the brace depth each closes at.
    let mut open: Vec<(Module, usize)> = vec![(file.to_vec(), 0)];
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let here = open.last().map(|(m, _)| m.clone()).unwrap_or_default();
        match &tokens[i] {
            Tok::Ident(word) if word == "mod" => {
                if let (Some(child), Some(Tok::Open('{'))) = (ident(i + 1), tokens.get(i + 2)) {
                    let mut module = here.clone();
                    module.push(child.to_owned());
                    inline.push(module.clone());
                    depth += 1;
                    open.push((module, depth));
                    i += 3;
                    continue;
                }
                i += 1;
            }
            Tok::Ident(word) if word == "use" => {
                let mut leaves = Vec::new();
                i = use_tree(tokens, i + 1, Vec::new(), &mut leaves);
                for (path, bound) in leaves {
                    if let Some(name) = bound {
                        aliases.push((here.clone(), name, path.clone()));
                    }
                    paths.push((here.clone(), path));
                }
            }
            Tok::Ident(word) if i == 0 || tokens[i - 1] != Tok::Sep => {
                let mut path = vec![word.clone()];
                let mut j = i + 1;
                while let (Some(Tok::Sep), Some(next)) = (tokens.get(j), ident(j + 1)) {
                    path.push(next.to_owned());
                    j += 2;
                }
                // A lone `crate`, `super` or `self` is a visibility (`pub(crate)`) or
                // a receiver, not an import.
                if path.len() > 1 {
                    paths.push((here, path));
                }
                i = j;
            }
            Tok::Open('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Close('}') => {
                if open.len() > 1 && open.last().is_some_and(|(_, d)| *d == depth) {
                    open.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    Scanned { inline, paths, aliases }
}

/// A leaf of a use tree: its full path, and the name it binds (none for a glob).
type Leaf = (Vec<String>, Option<String>);

/// Reads a use tree from `i` (after `use`, or inside a group) and adds each of
/// its leaves; returns the index after it.
fn use_tree(tokens: &[Tok], mut i: usize, mut prefix: Vec<String>, leaves: &mut Vec<Leaf>) -> usize {
    if tokens.get(i) == Some(&Tok::Sep) {
        i += 1;
    }
    loop {
        match tokens.get(i) {
            Some(Tok::Ident(word)) => {
                prefix.push(word.clone());
                i += 1;
                if tokens.get(i) == Some(&Tok::Sep) {
                    i += 1;
                    continue;
                }
                let mut bound =
                    if word == "self" { prefix.iter().rev().nth(1).cloned() } else { Some(word.clone()) };
                if let (Some(Tok::Ident(w)), Some(Tok::Ident(alias))) = (tokens.get(i), tokens.get(i + 1))
                    && w == "as"
                {
                    bound = Some(alias.clone());
                    i += 2;
                }
                leaves.push((prefix, bound));
                return i;
            }
            Some(Tok::Open('{')) => {
                i += 1;
                while let Some(tok) = tokens.get(i) {
                    match tok {
                        Tok::Close('}') => return i + 1,
                        Tok::Punct(',') => i += 1,
                        _ => i = use_tree(tokens, i, prefix.clone(), leaves),
                    }
                }
                return i;
            }
            Some(Tok::Punct('*')) => {
                leaves.push((prefix, None));
                return i + 1;
            }
            _ => return i + 1,
        }
    }
}
