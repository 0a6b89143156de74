//! Python support for the built-in steps: the move map (paths → dotted module
//! names), import rewriting (`fixImports`) and module analysis (`schema`,
//! `testStub`, `docs`).
//!
//! Everything here is pure: text in, text out. Parsing uses tree-sitter's Python
//! grammar, whose byte-exact node ranges let the rewrite touch only the names it
//! changes.

pub mod analysis;
pub mod imports;
pub mod moves;

use std::cell::RefCell;

use thiserror::Error;
use tree_sitter::{Node, Parser, Tree};

pub use analysis::{
    analyze, analyze_module, docs_page, schema_document, schema_json_schema, schema_path,
    schema_schema_path, test_stub, ModuleInfo, Symbol, SymbolKind, TestStub,
};
pub use imports::{
    fix_imports, fix_moved_files, fix_repository, FileChange, ImportRewrite, MovedFile,
};
pub use moves::{module_name_of_path, package_of_path, MoveMap};

/// Errors of the Python steps.
#[derive(Debug, Error)]
pub enum PythonError {
    /// The file does not parse; it is left untouched.
    #[error("{file}:{line}:{column}: syntax error ({what}); the file is left untouched")]
    Syntax {
        /// Repository-relative path.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (bytes).
        column: usize,
        /// What the parser found.
        what: String,
    },
    /// A path that cannot stand for a Python module.
    #[error("path {path:?} cannot be a Python module: {reason}")]
    BadPath {
        /// The path as given.
        path: String,
        /// Why.
        reason: String,
    },
    /// The parser could not be set up or gave up.
    #[error("the Python parser failed on {file}: {reason}")]
    Parser {
        /// Repository-relative path.
        file: String,
        /// Why.
        reason: String,
    },
}

thread_local! {
    // One parser per thread: setting the language up costs more than parsing a
    // small file.
    static PARSER: RefCell<Option<Parser>> = const { RefCell::new(None) };
}

/// Parses `source`, refusing input with syntax errors.
pub(crate) fn parse(source: &str, file: &str) -> Result<Tree, PythonError> {
    let tree = PARSER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let mut parser = Parser::new();
            parser
                .set_language(&tree_sitter_python::LANGUAGE.into())
                .map_err(|e| PythonError::Parser {
                    file: file.to_owned(),
                    reason: e.to_string(),
                })?;
            *slot = Some(parser);
        }
        match slot.as_mut() {
            Some(parser) => parser
                .parse(source, None)
                .ok_or_else(|| PythonError::Parser {
                    file: file.to_owned(),
                    reason: "the parser returned no tree".to_owned(),
                }),
            None => Err(PythonError::Parser {
                file: file.to_owned(),
                reason: "no parser".to_owned(),
            }),
        }
    })?;
    let root = tree.root_node();
    if root.has_error() {
        let (node, what) = first_error(root);
        let pos = node.start_position();
        return Err(PythonError::Syntax {
            file: file.to_owned(),
            line: pos.row + 1,
            column: pos.column + 1,
            what,
        });
    }
    Ok(tree)
}

/// The first ERROR or MISSING node in source order, and what it is.
fn first_error(root: Node<'_>) -> (Node<'_>, String) {
    let mut cursor = root.walk();
    loop {
        let node = cursor.node();
        if node.is_missing() {
            return (node, format!("missing {}", node.kind()));
        }
        if node.is_error() {
            return (node, "unexpected text".to_owned());
        }
        // Only subtrees with an error inside are worth entering.
        let entered = node.has_error() && cursor.goto_first_child();
        if !entered {
            loop {
                if cursor.goto_next_sibling() {
                    break;
                }
                if !cursor.goto_parent() {
                    return (root, "unexpected text".to_owned());
                }
            }
        }
    }
}

/// The text of `node`.
pub(crate) fn text<'s>(node: Node<'_>, source: &'s str) -> &'s str {
    source.get(node.byte_range()).unwrap_or("")
}

/// The dotted text of a `dotted_name` node, without any spacing between parts.
pub(crate) fn dotted_text(node: Node<'_>, source: &str) -> String {
    let raw = text(node, source);
    if raw
        .bytes()
        .all(|b| b == b'.' || b == b'_' || b.is_ascii_alphanumeric())
    {
        return raw.to_owned();
    }
    let mut cursor = node.walk();
    node.named_children(&mut cursor)
        .filter(|c| c.kind() == "identifier")
        .map(|c| text(c, source))
        .collect::<Vec<_>>()
        .join(".")
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(node: Node<'_>) -> usize {
    node.start_position().row + 1
}
