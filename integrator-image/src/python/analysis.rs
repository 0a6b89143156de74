//! Module analysis for the `schema`, `testStub` and `docs` steps: a module's
//! docstring, public symbols and imports, and the documents made from them.

use std::collections::{BTreeSet, HashSet};

use serde::Serialize;
use serde_json::{json, Value};
use tree_sitter::Node;

use super::moves::package_of_path;
use super::{dotted_text, parse, text, PythonError};

/// What kind of public name a symbol is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SymbolKind {
    /// `def` (also `async def`).
    Function,
    /// `class`.
    Class,
    /// An UPPER_CASE module-level assignment.
    Constant,
    /// Any other module-level assignment.
    Variable,
    /// A name listed in `__all__` that the module imports rather than defines.
    Reexport,
}

impl SymbolKind {
    /// The name used in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            SymbolKind::Function => "function",
            SymbolKind::Class => "class",
            SymbolKind::Constant => "constant",
            SymbolKind::Variable => "variable",
            SymbolKind::Reexport => "reexport",
        }
    }

    /// Whether a value of this kind must be callable.
    pub fn is_callable(self) -> bool {
        matches!(self, SymbolKind::Function | SymbolKind::Class)
    }
}

/// One public name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Symbol {
    /// The name; `sub.name` for a name of a package's submodule `sub`.
    pub name: String,
    /// Its kind.
    pub kind: SymbolKind,
    /// The first paragraph of its docstring.
    pub doc: Option<String>,
}

/// What a module offers and needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModuleInfo {
    /// The module docstring (cleaned like `inspect.cleandoc`).
    pub docstring: Option<String>,
    /// Public names: `__all__`'s order when present, else source order; a package's
    /// submodules follow, sorted by submodule.
    pub symbols: Vec<Symbol>,
    /// Imported modules (dotted; relative ones resolved when the path is known),
    /// sorted, without duplicates.
    pub imports: Vec<String>,
}

/// Analyzes one file's source. Relative imports stay relative (`.core`).
pub fn analyze(source: &str) -> Result<ModuleInfo, PythonError> {
    analyze_file("<source>", source, None)
}

/// Analyzes a module given as all its `.py` files (repository-relative path, text):
/// one file for a single-file module at `module_path`, or the files under the
/// package directory `module_path`. Imports inside the module itself are left out.
pub fn analyze_module(
    module_path: &str,
    files: &[(String, String)],
) -> Result<ModuleInfo, PythonError> {
    let root = module_path.trim_matches('/');
    let own = root.trim_end_matches(".py").replace('/', ".");
    let mut parts: Vec<(String, ModuleInfo)> = Vec::new();
    for (path, source) in files {
        if !path.ends_with(".py") {
            continue;
        }
        let pkg = package_of_path(path);
        let info = analyze_file(path, source, pkg.as_deref())?;
        let sub = if path == root {
            String::new()
        } else {
            let rel = path
                .strip_prefix(root)
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(path);
            let rel = rel.strip_suffix(".py").unwrap_or(rel);
            let rel = rel.strip_suffix("__init__").unwrap_or(rel);
            rel.trim_end_matches('/').replace('/', ".")
        };
        parts.push((sub, info));
    }
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = ModuleInfo::default();
    let mut imports = BTreeSet::new();
    for (sub, info) in parts {
        for import in info.imports {
            let inside = import == own
                || (import.starts_with(own.as_str())
                    && import.as_bytes().get(own.len()) == Some(&b'.'));
            if !inside {
                imports.insert(import);
            }
        }
        if sub.is_empty() {
            out.docstring = info.docstring;
            // The top file's names come first.
            let rest = std::mem::take(&mut out.symbols);
            out.symbols = info.symbols;
            out.symbols.extend(rest);
        } else if !sub.split('.').any(|p| p.starts_with('_')) {
            out.symbols.extend(info.symbols.into_iter().map(|s| Symbol {
                name: format!("{sub}.{}", s.name),
                ..s
            }));
        }
    }
    // A package re-exporting a submodule's name (`from .core import f` and `f` in
    // `__all__`) documents it with the submodule's kind and docstring.
    let found: Vec<Option<(SymbolKind, Option<String>)>> = out
        .symbols
        .iter()
        .map(|s| {
            if s.kind != SymbolKind::Reexport {
                return None;
            }
            out.symbols
                .iter()
                .find(|o| {
                    o.kind != SymbolKind::Reexport
                        && o.name
                            .rsplit_once('.')
                            .is_some_and(|(_, last)| last == s.name)
                })
                .map(|o| (o.kind, o.doc.clone()))
        })
        .collect();
    for (symbol, found) in out.symbols.iter_mut().zip(found) {
        if let Some((kind, doc)) = found {
            symbol.kind = kind;
            symbol.doc = doc;
        }
    }
    out.imports = imports.into_iter().collect();
    Ok(out)
}

fn analyze_file(
    path: &str,
    source: &str,
    package: Option<&str>,
) -> Result<ModuleInfo, PythonError> {
    let tree = parse(source, path)?;
    let root = tree.root_node();
    let mut defs: Vec<Symbol> = Vec::new();
    let mut defined: HashSet<String> = HashSet::new();
    let mut imported_names: HashSet<String> = HashSet::new();
    let mut all: Option<Vec<String>> = None;
    let mut imports = BTreeSet::new();

    // Top-level statements, looking into if/try/with blocks but not functions.
    let mut stack = vec![root];
    let mut statements = Vec::new();
    while let Some(node) = stack.pop() {
        let mut cursor = node.walk();
        let children: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
        for child in children.into_iter().rev() {
            match child.kind() {
                "if_statement" | "elif_clause" | "else_clause" | "try_statement"
                | "except_clause" | "finally_clause" | "with_statement" | "block" => {
                    stack.push(child)
                }
                _ => statements.push(child),
            }
        }
    }
    statements.sort_by_key(|n| n.start_byte());

    let mut add = |defs: &mut Vec<Symbol>, name: &str, kind: SymbolKind, doc: Option<String>| {
        if defined.insert(name.to_owned()) {
            defs.push(Symbol {
                name: name.to_owned(),
                kind,
                doc,
            });
        }
    };
    for stmt in statements {
        let stmt = if stmt.kind() == "decorated_definition" {
            match stmt.child_by_field_name("definition") {
                Some(d) => d,
                None => continue,
            }
        } else {
            stmt
        };
        match stmt.kind() {
            "function_definition" | "class_definition" => {
                let Some(name) = stmt.child_by_field_name("name") else {
                    continue;
                };
                let kind = if stmt.kind() == "class_definition" {
                    SymbolKind::Class
                } else {
                    SymbolKind::Function
                };
                let doc = stmt
                    .child_by_field_name("body")
                    .and_then(|b| docstring_of(b, source))
                    .map(|d| first_paragraph(&d));
                add(&mut defs, text(name, source), kind, doc);
            }
            "expression_statement" => {
                let mut cursor = stmt.walk();
                for expr in stmt.named_children(&mut cursor) {
                    if !matches!(expr.kind(), "assignment" | "augmented_assignment") {
                        continue;
                    }
                    let Some(left) = expr.child_by_field_name("left") else {
                        continue;
                    };
                    if left.kind() != "identifier" {
                        continue;
                    }
                    let name = text(left, source);
                    if name == "__all__" {
                        let listed = expr
                            .child_by_field_name("right")
                            .map(|r| string_list(r, source))
                            .unwrap_or_default();
                        if expr.kind() == "augmented_assignment" {
                            all.get_or_insert_with(Vec::new).extend(listed);
                        } else {
                            all = Some(listed);
                        }
                        continue;
                    }
                    let kind = if is_constant_name(name) {
                        SymbolKind::Constant
                    } else {
                        SymbolKind::Variable
                    };
                    add(&mut defs, name, kind, None);
                }
            }
            "import_statement" | "import_from_statement" => {
                collect_imports(stmt, source, package, &mut imports, &mut imported_names)
            }
            _ => {}
        }
    }
    // Imports inside functions count as imports too.
    collect_nested_imports(root, source, package, &mut imports);

    let symbols = match all {
        Some(names) => {
            let mut seen = HashSet::new();
            names
                .into_iter()
                .filter(|n| seen.insert(n.clone()))
                .map(|n| match defs.iter().find(|d| d.name == n) {
                    Some(d) => d.clone(),
                    None => Symbol {
                        name: n,
                        kind: SymbolKind::Reexport,
                        doc: None,
                    },
                })
                .collect()
        }
        None => defs
            .into_iter()
            .filter(|d| !d.name.starts_with('_'))
            .collect(),
    };
    Ok(ModuleInfo {
        docstring: docstring_of(root, source),
        symbols,
        imports: imports.into_iter().collect(),
    })
}

fn collect_imports(
    stmt: Node<'_>,
    source: &str,
    package: Option<&str>,
    imports: &mut BTreeSet<String>,
    names: &mut HashSet<String>,
) {
    let mut cursor = stmt.walk();
    let items: Vec<Node<'_>> = stmt.children_by_field_name("name", &mut cursor).collect();
    if stmt.kind() == "import_statement" {
        for item in items {
            let dotted = if item.kind() == "aliased_import" {
                item.child_by_field_name("name")
            } else {
                Some(item)
            };
            if let Some(d) = dotted {
                imports.insert(dotted_text(d, source));
            }
            let bound = item.child_by_field_name("alias").unwrap_or(item);
            names.insert(text(bound, source).to_owned());
        }
        return;
    }
    let Some(module) = stmt.child_by_field_name("module_name") else {
        return;
    };
    let name = if module.kind() == "relative_import" {
        let raw: String = text(module, source)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let level = raw.bytes().take_while(|b| *b == b'.').count();
        let rest = &raw[level..];
        match package {
            Some(pkg) => {
                let mut parts: Vec<&str> = if pkg.is_empty() {
                    Vec::new()
                } else {
                    pkg.split('.').collect()
                };
                if level - 1 > parts.len() {
                    raw.clone()
                } else {
                    parts.truncate(parts.len() - (level - 1));
                    if !rest.is_empty() {
                        parts.push(rest);
                    }
                    parts.join(".")
                }
            }
            None => raw.clone(),
        }
    } else {
        dotted_text(module, source)
    };
    if !name.is_empty() {
        imports.insert(name);
    }
    for item in items {
        let bound = item
            .child_by_field_name("alias")
            .or_else(|| item.child_by_field_name("name"))
            .unwrap_or(item);
        names.insert(text(bound, source).to_owned());
    }
}

fn collect_nested_imports(
    root: Node<'_>,
    source: &str,
    package: Option<&str>,
    imports: &mut BTreeSet<String>,
) {
    let mut names = HashSet::new();
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        let mut cursor = node.walk();
        for child in node.named_children(&mut cursor) {
            match child.kind() {
                "import_statement" | "import_from_statement" => {
                    collect_imports(child, source, package, imports, &mut names)
                }
                "expression_statement" => {}
                _ => stack.push(child),
            }
        }
    }
}

fn is_constant_name(name: &str) -> bool {
    name.bytes().any(|b| b.is_ascii_uppercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The plain strings of a list or tuple display (`["a", "b"]`).
fn string_list(node: Node<'_>, source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = node.walk();
    for item in node.named_children(&mut cursor) {
        if item.kind() == "string" {
            if let Some(s) = string_value(item, source) {
                out.push(s);
            }
        }
    }
    out
}

/// The docstring of a module or a block: its first statement, when that is a string.
fn docstring_of(body: Node<'_>, source: &str) -> Option<String> {
    let mut cursor = body.walk();
    let first = body
        .named_children(&mut cursor)
        .find(|n| n.kind() != "comment")?;
    if first.kind() != "expression_statement" || first.named_child_count() != 1 {
        return None;
    }
    let string = first.named_child(0)?;
    if string.kind() != "string" {
        return None;
    }
    string_value(string, source).map(|s| cleandoc(&s))
}

/// The value of a plain string literal (no f-string interpolation), with the
/// common escapes undone unless it is raw.
fn string_value(node: Node<'_>, source: &str) -> Option<String> {
    let raw = text(node, source);
    let prefix_len = raw.find(['"', '\'']).unwrap_or(0);
    let prefix = raw[..prefix_len].to_ascii_lowercase();
    if prefix.contains('f') || prefix.contains('b') {
        return None;
    }
    let body = &raw[prefix_len..];
    let quote = if body.starts_with("\"\"\"") || body.starts_with("'''") {
        &body[..3]
    } else {
        body.get(..1)?
    };
    let inner = body.strip_prefix(quote)?.strip_suffix(quote)?;
    if prefix.contains('r') {
        return Some(inner.to_owned());
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('\'') => out.push('\''),
            Some('"') => out.push('"'),
            Some('\n') => {}
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Some(out)
}

/// Like Python's `inspect.cleandoc`: strips the common indentation of the lines
/// after the first, and blank lines at both ends.
fn cleandoc(doc: &str) -> String {
    let expanded = doc.replace('\t', "        ");
    let lines: Vec<&str> = expanded.lines().collect();
    let margin = lines
        .iter()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if i == 0 {
            out.push(line.trim_start().to_owned());
        } else {
            out.push(line.get(margin..).unwrap_or("").trim_end().to_owned());
        }
    }
    while out.first().is_some_and(|l| l.trim().is_empty()) {
        out.remove(0);
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    out.join("\n")
}

/// The first paragraph of a docstring, on one line.
pub fn first_paragraph(doc: &str) -> String {
    doc.lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where a module's schema document goes.
pub fn schema_path(name: &str) -> String {
    format!("schemas/modules/{name}.json")
}

/// Where the JSON Schema of the module documents goes.
pub fn schema_schema_path() -> &'static str {
    "schemas/module.schema.json"
}

/// The dotted module name a repository path stands for (`a/b.py`, `a/b` → `a.b`).
fn dotted_of(path: &str) -> String {
    let p = path.trim_matches('/');
    let p = p.strip_suffix(".py").unwrap_or(p);
    let p = p.strip_suffix("/__init__").unwrap_or(p);
    p.replace('/', ".")
}

/// The schema document of a module (follows [`schema_json_schema`]).
pub fn schema_document(
    name: &str,
    old_path: &str,
    new_path: &str,
    info: &ModuleInfo,
    dependencies: &[String],
) -> Value {
    let mut deps: Vec<&String> = dependencies.iter().collect();
    deps.sort();
    deps.dedup();
    json!({
        "name": name,
        "oldPath": old_path,
        "newPath": new_path,
        "dottedName": dotted_of(new_path),
        "oldDottedName": dotted_of(old_path),
        "docstring": info.docstring.as_deref().map(first_paragraph),
        "publicSymbols": info.symbols.iter().map(|s| json!({
            "name": s.name,
            "kind": s.kind.as_str(),
            "doc": s.doc,
        })).collect::<Vec<_>>(),
        "imports": info.imports,
        "dependencies": deps,
    })
}

/// The JSON Schema (draft 2020-12) of the module documents.
pub fn schema_json_schema() -> Value {
    let dotted = json!({"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)*$"});
    let path = json!({"type": "string", "minLength": 1, "pattern": "^[^/].*$"});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://lapidary.dev/schemas/module.schema.json",
        "title": "lapidary module",
        "description": "A module integrated by lapidary: where it was, where it is, what it offers and needs.",
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "oldPath", "newPath", "dottedName", "oldDottedName", "docstring",
                     "publicSymbols", "imports", "dependencies"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$",
                     "description": "The module's name in the IntegrationRun."},
            "oldPath": path.clone(),
            "newPath": path,
            "dottedName": dotted.clone(),
            "oldDottedName": dotted,
            "docstring": {"type": ["string", "null"],
                          "description": "First paragraph of the module docstring."},
            "publicSymbols": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["name", "kind", "doc"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "kind": {"enum": ["function", "class", "constant", "variable", "reexport"]},
                        "doc": {"type": ["string", "null"]}
                    }
                }
            },
            "imports": {"type": "array", "items": {"type": "string", "minLength": 1},
                        "uniqueItems": true},
            "dependencies": {"type": "array", "items": {"type": "string"}, "uniqueItems": true}
        }
    })
}

/// A generated smoke test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestStub {
    /// Where the test goes (`tests/lapidary/test_<name>.py`).
    pub path: String,
    /// The test.
    pub text: String,
    /// Package files `python3 -m unittest` needs to discover it (`tests/__init__.py`,
    /// `tests/lapidary/__init__.py`): write each only when it does not exist.
    pub package_files: Vec<(String, String)>,
}

fn python_ident(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn py_str(s: &str) -> String {
    // JSON string syntax is valid Python for the identifiers written here.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// A `unittest` smoke test that imports the module by its new dotted name and
/// checks each public name exists (and callables are callable).
pub fn test_stub(name: &str, dotted_new_name: &str, info: &ModuleInfo) -> TestStub {
    let ident = python_ident(name);
    let class: String = ident
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect();
    let mut names = String::new();
    for s in &info.symbols {
        names.push_str(&format!(
            "    ({}, {}),\n",
            py_str(&s.name),
            if s.kind.is_callable() {
                "True"
            } else {
                "False"
            }
        ));
    }
    let text = format!(
        r#""""Smoke test for module `{name}` (`{dotted_new_name}`), generated by lapidary."""

import importlib
import unittest

MODULE = {module}
# (public name, must be callable); `sub.name` lives in submodule `sub`.
PUBLIC_NAMES = [
{names}]


class Test{class}Smoke(unittest.TestCase):
    def test_module_imports(self):
        importlib.import_module(MODULE)

    def test_public_names(self):
        for name, is_callable in PUBLIC_NAMES:
            with self.subTest(name=name):
                owner, _, attr = name.rpartition(".")
                module = importlib.import_module(MODULE + "." + owner if owner else MODULE)
                self.assertTrue(hasattr(module, attr), MODULE + " has no " + name)
                if is_callable:
                    self.assertTrue(callable(getattr(module, attr)), name + " is not callable")


if __name__ == "__main__":
    unittest.main()
"#,
        module = py_str(dotted_new_name),
    );
    TestStub {
        path: format!("tests/lapidary/test_{ident}.py"),
        text,
        package_files: vec![
            ("tests/__init__.py".to_owned(), String::new()),
            (
                "tests/lapidary/__init__.py".to_owned(),
                "\"\"\"Smoke tests generated by lapidary.\"\"\"\n".to_owned(),
            ),
        ],
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// A Markdown page for the module from its docstrings (`docs/modules/<name>.md`).
pub fn docs_page(name: &str, dotted_new_name: &str, info: &ModuleInfo) -> (String, String) {
    let mut page = format!("# `{name}`\n\nModule `{dotted_new_name}`.\n\n");
    if let Some(doc) = &info.docstring {
        page.push_str(doc.trim());
        page.push_str("\n\n");
    }
    page.push_str("## Public symbols\n\n");
    if info.symbols.is_empty() {
        page.push_str("_No public symbols._\n");
    } else {
        page.push_str("| Name | Kind | Summary |\n| --- | --- | --- |\n");
        for s in &info.symbols {
            page.push_str(&format!(
                "| `{}` | {} | {} |\n",
                s.name,
                s.kind.as_str(),
                md_cell(s.doc.as_deref().unwrap_or(""))
            ));
        }
    }
    if !info.imports.is_empty() {
        page.push_str("\n## Imports\n\n");
        for i in &info.imports {
            page.push_str(&format!("- `{i}`\n"));
        }
    }
    (format!("docs/modules/{name}.md"), page)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#""""Folds memories.

More detail here.
"""
import os
from . import core
from .core import helper as _helper

SCALE = 3
_private = 1
counter = 0


def fold(x):
    """Folds x.

    Second paragraph.
    """
    return x


class Folder:
    '''A folder.'''


@decorator
def decorated():
    pass


def _hidden():
    pass

try:
    import fast
    def accel():
        """Accelerated."""
except ImportError:
    pass
"#;

    #[test]
    fn finds_public_symbols_in_source_order() {
        let info = analyze(SAMPLE).unwrap();
        assert_eq!(
            info.docstring.as_deref(),
            Some("Folds memories.\n\nMore detail here.")
        );
        let names: Vec<(&str, SymbolKind)> = info
            .symbols
            .iter()
            .map(|s| (s.name.as_str(), s.kind))
            .collect();
        assert_eq!(
            names,
            vec![
                ("SCALE", SymbolKind::Constant),
                ("counter", SymbolKind::Variable),
                ("fold", SymbolKind::Function),
                ("Folder", SymbolKind::Class),
                ("decorated", SymbolKind::Function),
                ("accel", SymbolKind::Function),
            ]
        );
        assert_eq!(info.symbols[2].doc.as_deref(), Some("Folds x."));
        assert_eq!(info.symbols[3].doc.as_deref(), Some("A folder."));
        assert_eq!(info.imports, vec![".", ".core", "fast", "os"]);
    }

    #[test]
    fn honours_dunder_all() {
        let src = "from .core import g\n__all__ = ['f', 'g']\n__all__ += ['X']\ndef f():\n    pass\ndef h():\n    pass\nX = 1\n";
        let info = analyze(src).unwrap();
        let names: Vec<(&str, SymbolKind)> = info
            .symbols
            .iter()
            .map(|s| (s.name.as_str(), s.kind))
            .collect();
        assert_eq!(
            names,
            vec![
                ("f", SymbolKind::Function),
                ("g", SymbolKind::Reexport),
                ("X", SymbolKind::Constant)
            ]
        );
    }

    #[test]
    fn combines_a_package() {
        let files = vec![
            (
                "lukhas/memory/fold/__init__.py".to_owned(),
                "\"\"\"Fold.\"\"\"\nfrom .core import g\nfrom lukhas.memory.fold import core\n__all__ = ['g']\n".to_owned(),
            ),
            (
                "lukhas/memory/fold/core.py".to_owned(),
                "import candidate.bridge.api\nfrom ..other import x\ndef g():\n    \"\"\"G.\"\"\"\n".to_owned(),
            ),
            (
                "lukhas/memory/fold/_impl.py".to_owned(),
                "def secret():\n    pass\n".to_owned(),
            ),
        ];
        let info = analyze_module("lukhas/memory/fold", &files).unwrap();
        assert_eq!(info.docstring.as_deref(), Some("Fold."));
        let names: Vec<&str> = info.symbols.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["g", "core.g"]);
        // The re-export takes the submodule's kind and docstring.
        assert_eq!(info.symbols[0].kind, SymbolKind::Function);
        assert_eq!(info.symbols[0].doc.as_deref(), Some("G."));
        assert_eq!(
            info.imports,
            vec!["candidate.bridge.api", "lukhas.memory.other"]
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = analyze("def f(:\n    pass\n").unwrap_err();
        assert!(matches!(err, PythonError::Syntax { line: 1, .. }), "{err}");
    }

    #[test]
    fn docs_page_lists_symbols() {
        let info = analyze(SAMPLE).unwrap();
        let (path, page) = docs_page("memory_fold", "lukhas.memory.fold", &info);
        assert_eq!(path, "docs/modules/memory_fold.md");
        assert!(
            page.starts_with("# `memory_fold`\n\nModule `lukhas.memory.fold`.\n\nFolds memories.")
        );
        assert!(page.contains("| `fold` | function | Folds x. |\n"));
        assert!(page.contains("| `Folder` | class | A folder. |\n"));
        assert!(!page.contains("_hidden"));
    }
}
