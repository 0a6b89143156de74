//! `fixImports`: rewrites the imports (and dotted references through imported
//! packages) that name moved modules, editing only the byte ranges of the names it
//! changes so that formatting and comments stay byte for byte.

use std::collections::{HashMap, HashSet};

use tree_sitter::Node;

use super::moves::{package_of_path, MoveMap};
use super::{dotted_text, line_of, parse, text, PythonError};

/// The result of rewriting one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRewrite {
    /// The new text (the input when nothing changed).
    pub text: String,
    /// Whether `text` differs from the input.
    pub changed: bool,
    /// Number of edits applied (replacements, removals and insertions).
    pub edits: usize,
    /// References the rewrite did not guess at (strings naming moved modules, names
    /// left unbound), each with its file and line.
    pub warnings: Vec<String>,
}

/// One file of a repository-wide rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedFile<'a> {
    /// Where the file was before the moves (relative imports are read from here).
    pub old_path: &'a str,
    /// Where the file is now.
    pub new_path: &'a str,
    /// Its text.
    pub text: &'a str,
}

/// A file a repository-wide rewrite changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// Repository-relative path (the new path).
    pub path: String,
    /// The rewritten text.
    pub text: String,
    /// Number of edits.
    pub edits: usize,
    /// Warnings for this file.
    pub warnings: Vec<String>,
}

/// Rewrites every file of a repository for `moves`, treating every file as already
/// at its place (`old_path == new_path`): the merge step's repository-wide pass after
/// the modules' own files were fixed by their module step. Only `.py` files are
/// parsed; others are skipped. Returns the changed files in input order and the
/// warnings of unchanged files too (as changes with no edits are not returned, their
/// warnings are in the second value).
pub fn fix_repository(
    files: &[(String, String)],
    moves: &MoveMap,
) -> Result<(Vec<FileChange>, Vec<String>), PythonError> {
    let moved: Vec<MovedFile<'_>> = files
        .iter()
        .map(|(path, text)| MovedFile {
            old_path: path,
            new_path: path,
            text,
        })
        .collect();
    fix_moved_files(&moved, moves)
}

/// Rewrites many files for `moves`, each with its own old and new path, on all
/// cores. Returns the changed files (in input order) and every warning (changed or
/// not). Fails on the first file (in input order) that does not parse.
pub fn fix_moved_files(
    files: &[MovedFile<'_>],
    moves: &MoveMap,
) -> Result<(Vec<FileChange>, Vec<String>), PythonError> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 16);
    let chunk = files.len().div_ceil(workers).max(1);
    let results: Vec<Vec<Result<Option<FileChange>, PythonError>>> = if files.len() < 64 {
        vec![files.iter().map(|f| fix_one(f, moves)).collect()]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = files
                .chunks(chunk)
                .map(|part| scope.spawn(move || part.iter().map(|f| fix_one(f, moves)).collect()))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        vec![Err(PythonError::Parser {
                            file: String::new(),
                            reason: "a rewrite worker panicked".to_owned(),
                        })]
                    })
                })
                .collect()
        })
    };
    let mut changes = Vec::new();
    let mut warnings = Vec::new();
    for result in results.into_iter().flatten() {
        if let Some(change) = result? {
            warnings.extend(change.warnings.iter().cloned());
            if change.edits > 0 {
                changes.push(change);
            }
        }
    }
    Ok((changes, warnings))
}

fn fix_one(file: &MovedFile<'_>, moves: &MoveMap) -> Result<Option<FileChange>, PythonError> {
    if !file.new_path.ends_with(".py") {
        return Ok(None);
    }
    let rewrite = fix_imports(file.text, file.old_path, file.new_path, moves)?;
    if !rewrite.changed && rewrite.warnings.is_empty() {
        return Ok(None);
    }
    Ok(Some(FileChange {
        path: file.new_path.to_owned(),
        edits: if rewrite.changed { rewrite.edits } else { 0 },
        text: rewrite.text,
        warnings: rewrite.warnings,
    }))
}

/// Rewrites the imports of one file for `moves`. `old_file` and `new_file` are the
/// file's repository-relative paths before and after its own move (equal when it did
/// not move): relative imports are resolved against `old_file` and re-emitted
/// against `new_file`. A file that does not parse is refused and left untouched.
pub fn fix_imports(
    source: &str,
    old_file: &str,
    new_file: &str,
    moves: &MoveMap,
) -> Result<ImportRewrite, PythonError> {
    let unchanged = || ImportRewrite {
        text: source.to_owned(),
        changed: false,
        edits: 0,
        warnings: Vec::new(),
    };
    if moves.is_empty() || (old_file == new_file && !may_be_affected(source, moves)) {
        return Ok(unchanged());
    }
    let tree = parse(source, new_file)?;
    let mut fixer = Fixer {
        src: source,
        file: new_file,
        moves,
        old_pkg: package_of_path(old_file),
        new_pkg: package_of_path(new_file),
        edits: Vec::new(),
        warnings: Vec::new(),
        bindings: HashMap::new(),
        imported: HashSet::new(),
        rewritten_roots: Vec::new(),
        root_uses: HashMap::new(),
        root_rewrites: HashMap::new(),
        needed: Vec::new(),
        string_warned: HashSet::new(),
    };
    let mut statements = Vec::new();
    collect_import_statements(tree.root_node(), &mut statements);
    for stmt in &statements {
        match stmt.kind() {
            "import_statement" => fixer.import_statement(*stmt),
            _ => fixer.import_from_statement(*stmt),
        }
    }
    let needs_walk = moves.roots().any(|r| source.contains(r))
        || fixer
            .bindings
            .values()
            .flatten()
            .any(|b| moves.lookup_prefix(&b.target).is_some() || b.may_reach_moved);
    if needs_walk {
        fixer.walk(tree.root_node());
    }
    fixer.add_needed_imports();
    fixer.warn_lost_roots();
    let Fixer {
        edits, warnings, ..
    } = fixer;
    if edits.is_empty() {
        return Ok(ImportRewrite {
            warnings,
            ..unchanged()
        });
    }
    let count = edits.len();
    let text = apply_edits(source, edits);
    Ok(ImportRewrite {
        changed: text != source,
        text,
        edits: count,
        warnings,
    })
}

/// Cheap text test for a file that did not move: it can only need a rewrite (or a
/// warning) when it spells the last part of a moved module's name.
fn may_be_affected(source: &str, moves: &MoveMap) -> bool {
    moves.mentioned_in(source)
}

/// Every import statement, at any statement depth (functions, classes, if/try).
fn collect_import_statements<'t>(root: Node<'t>, out: &mut Vec<Node<'t>>) {
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        let mut cursor = node.walk();
        let children: Vec<Node<'t>> = node.named_children(&mut cursor).collect();
        for child in children.into_iter().rev() {
            match child.kind() {
                "import_statement" | "import_from_statement" => out.push(child),
                "block"
                | "if_statement"
                | "elif_clause"
                | "else_clause"
                | "try_statement"
                | "except_clause"
                | "except_group_clause"
                | "finally_clause"
                | "with_statement"
                | "for_statement"
                | "while_statement"
                | "function_definition"
                | "class_definition"
                | "decorated_definition"
                | "match_statement"
                | "case_clause" => stack.push(child),
                _ => {}
            }
        }
    }
    out.sort_by_key(|n| n.start_byte());
}

struct Edit {
    start: usize,
    end: usize,
    text: String,
}

fn apply_edits(source: &str, mut edits: Vec<Edit>) -> String {
    // Stable: insertions at one place keep the order they were made in.
    edits.sort_by_key(|e| (e.start, e.end));
    let mut out = String::with_capacity(source.len() + 64);
    let mut at = 0;
    for edit in edits {
        if edit.start < at {
            // Overlaps an earlier edit; the planner never makes such pairs.
            continue;
        }
        out.push_str(&source[at..edit.start]);
        out.push_str(&edit.text);
        at = edit.end;
    }
    out.push_str(&source[at..]);
    out
}

/// What a name bound by an import refers to (old semantics).
#[derive(Clone)]
struct Binding {
    /// Dotted name the bound name stands for (`import a.b` binds `a` → `a`).
    target: String,
    /// Bound by `import a.b` without alias: the name is the first part of `target`
    /// and a moved prefix of the same length still means a rename.
    root: bool,
    /// Start and end of the statement that binds it (where needed imports go).
    stmt_start: usize,
    stmt_end: usize,
    /// The target was resolved from a relative import, so its text need not name
    /// a moved root.
    may_reach_moved: bool,
}

struct Fixer<'a> {
    src: &'a str,
    file: &'a str,
    moves: &'a MoveMap,
    old_pkg: Option<String>,
    new_pkg: Option<String>,
    edits: Vec<Edit>,
    warnings: Vec<String>,
    /// Name → binding; `None` when the name is bound to different things.
    bindings: HashMap<String, Option<Binding>>,
    /// Modules named by `import X` (no alias) after the rewrite.
    imported: HashSet<String>,
    /// Roots that `import X` statements stopped binding: (root, line).
    rewritten_roots: Vec<(String, usize)>,
    /// Uses of moved roots in code, and how many of them were rewritten.
    root_uses: HashMap<String, usize>,
    root_rewrites: HashMap<String, usize>,
    /// Imports that rewritten references need: (statement start, end, module).
    needed: Vec<(usize, usize, String)>,
    string_warned: HashSet<(usize, String)>,
}

/// One name of a `from … import` list.
struct FromName<'t> {
    /// The whole item (`x` or `x as y`).
    item: Node<'t>,
    /// The imported name node.
    name_node: Node<'t>,
    name: String,
    alias: Option<String>,
}

impl<'a> Fixer<'a> {
    fn bind(&mut self, name: &str, binding: Binding) {
        match self.bindings.get_mut(name) {
            None => {
                self.bindings.insert(name.to_owned(), Some(binding));
            }
            Some(Some(old)) if old.target == binding.target && old.root == binding.root => {}
            Some(slot) => *slot = None,
        }
    }

    fn import_statement(&mut self, stmt: Node<'_>) {
        let mut cursor = stmt.walk();
        let items: Vec<Node<'_>> = stmt.children_by_field_name("name", &mut cursor).collect();
        for item in items {
            let (dotted_node, alias) = if item.kind() == "aliased_import" {
                match (
                    item.child_by_field_name("name"),
                    item.child_by_field_name("alias"),
                ) {
                    (Some(n), Some(a)) => (n, Some(text(a, self.src).to_owned())),
                    _ => continue,
                }
            } else {
                (item, None)
            };
            let old = dotted_text(dotted_node, self.src);
            let new = self.moves.lookup(&old);
            if let Some(new) = &new {
                self.edits.push(Edit {
                    start: dotted_node.start_byte(),
                    end: dotted_node.end_byte(),
                    text: new.clone(),
                });
            }
            let root = first_part(&old).to_owned();
            match alias {
                Some(alias) => self.bind(
                    &alias,
                    Binding {
                        target: old.clone(),
                        root: false,
                        stmt_start: stmt.start_byte(),
                        stmt_end: stmt.end_byte(),
                        may_reach_moved: false,
                    },
                ),
                None => {
                    if let Some(new) = &new {
                        if first_part(new) != root {
                            self.rewritten_roots.push((root.clone(), line_of(stmt)));
                        }
                    }
                    self.imported
                        .insert(new.clone().unwrap_or_else(|| old.clone()));
                    self.bind(
                        &root,
                        Binding {
                            target: root.clone(),
                            root: true,
                            stmt_start: stmt.start_byte(),
                            stmt_end: stmt.end_byte(),
                            may_reach_moved: false,
                        },
                    );
                }
            }
        }
    }

    /// Resolves a relative module reference against a package.
    fn resolve_relative(pkg: &str, level: usize, rest: &str) -> Option<String> {
        let mut parts: Vec<&str> = if pkg.is_empty() {
            Vec::new()
        } else {
            pkg.split('.').collect()
        };
        if level == 0 || level - 1 > parts.len() {
            return None;
        }
        parts.truncate(parts.len() - (level - 1));
        if !rest.is_empty() {
            parts.push(rest);
        }
        if parts.is_empty() {
            None
        } else {
            Some(parts.join("."))
        }
    }

    /// How to write module `target` in a from-import of the new file: relative
    /// (`.x`) when it lies in the file's own package and the original was relative,
    /// absolute otherwise.
    fn render_module(&self, target: &str, relative: bool) -> String {
        if relative {
            if let Some(pkg) = self.new_pkg.as_deref().filter(|p| !p.is_empty()) {
                if target == pkg {
                    return ".".to_owned();
                }
                if let Some(rest) = target.strip_prefix(pkg).and_then(|r| r.strip_prefix('.')) {
                    return format!(".{rest}");
                }
            }
        }
        target.to_owned()
    }

    fn import_from_statement(&mut self, stmt: Node<'_>) {
        let Some(module_node) = stmt.child_by_field_name("module_name") else {
            return;
        };
        // Old absolute meaning, and what the same text means from the new place.
        let (old_module, same_text_new_meaning, relative) =
            if module_node.kind() == "relative_import" {
                let mut level = 0;
                let mut rest = String::new();
                let mut cursor = module_node.walk();
                for child in module_node.named_children(&mut cursor) {
                    match child.kind() {
                        "import_prefix" => {
                            level = text(child, self.src).bytes().filter(|b| *b == b'.').count()
                        }
                        "dotted_name" => rest = dotted_text(child, self.src),
                        _ => {}
                    }
                }
                let Some(old_pkg) = self.old_pkg.as_deref() else {
                    return;
                };
                let Some(old) = Self::resolve_relative(old_pkg, level, &rest) else {
                    self.warnings.push(format!(
                        "{}:{}: relative import goes beyond the top-level package; not rewritten",
                        self.file,
                        line_of(stmt)
                    ));
                    return;
                };
                let new_meaning = self
                    .new_pkg
                    .as_deref()
                    .and_then(|p| Self::resolve_relative(p, level, &rest));
                (old, new_meaning, true)
            } else {
                let old = dotted_text(module_node, self.src);
                (old.clone(), Some(old), false)
            };

        let mut cursor = stmt.walk();
        let items: Vec<Node<'_>> = stmt.children_by_field_name("name", &mut cursor).collect();
        let names: Vec<FromName<'_>> = items
            .iter()
            .filter_map(|&item| {
                if item.kind() == "aliased_import" {
                    let n = item.child_by_field_name("name")?;
                    let a = item.child_by_field_name("alias")?;
                    Some(FromName {
                        item,
                        name_node: n,
                        name: dotted_text(n, self.src),
                        alias: Some(text(a, self.src).to_owned()),
                    })
                } else {
                    Some(FromName {
                        item,
                        name_node: item,
                        name: dotted_text(item, self.src),
                        alias: None,
                    })
                }
            })
            .collect();

        for n in &names {
            self.bind(
                n.alias.as_deref().unwrap_or(&n.name),
                Binding {
                    target: format!("{old_module}.{}", n.name),
                    root: false,
                    stmt_start: stmt.start_byte(),
                    stmt_end: stmt.end_byte(),
                    may_reach_moved: relative,
                },
            );
        }

        // Wildcard: only the module part can change.
        if names.is_empty() {
            let new_module = self
                .moves
                .lookup(&old_module)
                .unwrap_or_else(|| old_module.clone());
            if same_text_new_meaning.as_deref() != Some(new_module.as_str()) {
                self.edits.push(Edit {
                    start: module_node.start_byte(),
                    end: module_node.end_byte(),
                    text: self.render_module(&new_module, relative),
                });
            }
            return;
        }

        // New parent module and last name of every imported name, grouped by parent
        // in order of first appearance.
        let mut groups: Vec<(String, Vec<(usize, String)>)> = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let full = format!("{old_module}.{}", n.name);
            let new_full = self.moves.lookup(&full).unwrap_or(full);
            let (parent, last) = match new_full.rfind('.') {
                Some(k) => (new_full[..k].to_owned(), new_full[k + 1..].to_owned()),
                None => (String::new(), new_full.clone()),
            };
            match groups.iter_mut().find(|(p, _)| *p == parent) {
                Some((_, members)) => members.push((i, last)),
                None => groups.push((parent, vec![(i, last)])),
            }
        }
        // The statement keeps the names whose module part means the same as before
        // (the others leave it); when every name moved, the first name's group.
        let primary_index = groups
            .iter()
            .position(|(p, _)| same_text_new_meaning.as_deref() == Some(p.as_str()))
            .unwrap_or(0);
        if primary_index != 0 {
            let group = groups.remove(primary_index);
            groups.insert(0, group);
        }
        let Some((primary, primary_members)) = groups.first() else {
            return;
        };
        if primary.is_empty() {
            return;
        }
        // The statement keeps the first name's group.
        if same_text_new_meaning.as_deref() != Some(primary.as_str()) {
            self.edits.push(Edit {
                start: module_node.start_byte(),
                end: module_node.end_byte(),
                text: self.render_module(primary, relative),
            });
        }
        for (i, last) in primary_members {
            let n = &names[*i];
            if *last != n.name {
                self.rename_item(n, last);
            }
        }
        if groups.len() == 1 {
            return;
        }
        // Names that moved elsewhere leave this statement for statements of their own.
        let kept: Vec<bool> = (0..names.len())
            .map(|i| primary_members.iter().any(|(k, _)| *k == i))
            .collect();
        self.remove_items(stmt, &names, &kept);
        let mut added = Vec::new();
        for (parent, members) in groups.iter().skip(1) {
            if parent.is_empty() {
                continue;
            }
            let list: Vec<String> = members
                .iter()
                .map(|(i, last)| {
                    let n = &names[*i];
                    let bound = n.alias.as_deref().unwrap_or(&n.name);
                    if bound == last {
                        last.clone()
                    } else {
                        format!("{last} as {bound}")
                    }
                })
                .collect();
            added.push(format!(
                "from {} import {}",
                self.render_module(parent, relative),
                list.join(", ")
            ));
        }
        for line in added {
            self.insert_after(stmt.start_byte(), stmt.end_byte(), &line);
        }
    }

    fn rename_item(&mut self, n: &FromName<'_>, last: &str) {
        if n.alias.is_some() {
            self.edits.push(Edit {
                start: n.name_node.start_byte(),
                end: n.name_node.end_byte(),
                text: last.to_owned(),
            });
        } else {
            self.edits.push(Edit {
                start: n.item.start_byte(),
                end: n.item.end_byte(),
                text: format!("{last} as {}", n.name),
            });
        }
    }

    /// Deletes the items not kept from an import list, with their commas (and a
    /// comment that trails a removed item on its line); everything else stays.
    fn remove_items(&mut self, stmt: Node<'_>, names: &[FromName<'_>], kept: &[bool]) {
        let bytes = self.src.as_bytes();
        // The comma that follows each item, if any.
        let mut commas: Vec<Option<(usize, usize)>> = vec![None; names.len()];
        let mut cursor = stmt.walk();
        let children: Vec<Node<'_>> = stmt.children(&mut cursor).collect();
        for (i, n) in names.iter().enumerate() {
            if let Some(pos) = children.iter().position(|c| c.id() == n.item.id()) {
                if let Some(next) = children.get(pos + 1).filter(|c| c.kind() == ",") {
                    commas[i] = Some((next.start_byte(), next.end_byte()));
                }
            }
        }
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for (i, n) in names.iter().enumerate() {
            if kept[i] {
                continue;
            }
            let mut start = n.item.start_byte();
            match commas[i] {
                Some((_, comma_end)) => {
                    let mut end = comma_end;
                    while end < bytes.len() && matches!(bytes[end], b' ' | b'\t') {
                        end += 1;
                    }
                    if end < bytes.len() && bytes[end] == b'#' {
                        while end < bytes.len() && bytes[end] != b'\n' && bytes[end] != b'\r' {
                            end += 1;
                        }
                    }
                    let line_start = self.src[..start].rfind('\n').map_or(0, |k| k + 1);
                    let alone = self.src[line_start..start]
                        .bytes()
                        .all(|b| b == b' ' || b == b'\t');
                    let at_eol = end >= bytes.len() || matches!(bytes[end], b'\n' | b'\r');
                    if alone && at_eol {
                        start = line_start;
                        if end < bytes.len() && bytes[end] == b'\r' {
                            end += 1;
                        }
                        if end < bytes.len() && bytes[end] == b'\n' {
                            end += 1;
                        }
                    }
                    ranges.push((start, end));
                }
                None => {
                    // The last item: drop the comma before it (after the nearest
                    // kept item) instead.
                    if let Some(k) = (0..i).rev().find(|&k| kept[k]) {
                        if let Some((cs, ce)) = commas[k] {
                            ranges.push((cs, ce));
                        }
                    }
                    while start > 0 && matches!(bytes[start - 1], b' ' | b'\t') {
                        start -= 1;
                    }
                    ranges.push((start, n.item.end_byte()));
                }
            }
        }
        ranges.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (s, e) in ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        for (start, end) in merged {
            self.edits.push(Edit {
                start,
                end,
                text: String::new(),
            });
        }
    }

    /// Inserts a simple statement right after the statement spanning
    /// `start..end`: on a line of its own with the same indentation, or after a
    /// `; ` when the statement shares its line with other code.
    fn insert_after(&mut self, start: usize, end: usize, statement: &str) {
        let bytes = self.src.as_bytes();
        let line_start = self.src[..start].rfind('\n').map_or(0, |k| k + 1);
        let indent = &self.src[line_start..start];
        let own_line = indent.bytes().all(|b| b == b' ' || b == b'\t');
        let mut at = end;
        while at < bytes.len() && matches!(bytes[at], b' ' | b'\t') {
            at += 1;
        }
        if at < bytes.len() && bytes[at] == b'#' {
            while at < bytes.len() && bytes[at] != b'\n' && bytes[at] != b'\r' {
                at += 1;
            }
        }
        let at_eol = at >= bytes.len() || matches!(bytes[at], b'\n' | b'\r');
        let edit = if own_line && at_eol {
            let newline = if bytes.get(at) == Some(&b'\r') {
                "\r\n"
            } else {
                "\n"
            };
            Edit {
                start: at,
                end: at,
                text: format!("{newline}{indent}{statement}"),
            }
        } else {
            Edit {
                start: end,
                end,
                text: format!("; {statement}"),
            }
        };
        self.edits.push(edit);
    }

    /// Walks the code for dotted references through imported names, uses of moved
    /// roots, and strings that name moved modules.
    fn walk(&mut self, root: Node<'_>) {
        let mut cursor = root.walk();
        let mut scopes: Vec<Scope<'_>> = Vec::new();
        loop {
            let node = cursor.node();
            while scopes
                .last()
                .is_some_and(|s| node.start_byte() >= s.node.end_byte())
            {
                scopes.pop();
            }
            let mut descend = true;
            match node.kind() {
                "import_statement" | "import_from_statement" | "future_import_statement" => {
                    descend = false
                }
                "function_definition" | "lambda" => scopes.push(Scope { node, locals: None }),
                "attribute" => {
                    if let Some(chain) = chain_of(node) {
                        self.chain(&chain, &mut scopes);
                        descend = false;
                    }
                }
                "identifier" => {
                    let name = text(node, self.src);
                    if self.moves.roots().any(|r| r == name)
                        && !shadowed(name, &mut scopes, self.src)
                    {
                        *self.root_uses.entry(name.to_owned()).or_default() += 1;
                    }
                }
                "string" => self.string(node),
                _ => {}
            }
            if descend && cursor.goto_first_child() {
                continue;
            }
            loop {
                if cursor.goto_next_sibling() {
                    break;
                }
                if !cursor.goto_parent() {
                    return;
                }
            }
        }
    }

    fn chain(&mut self, chain: &Chain<'_>, scopes: &mut [Scope<'_>]) {
        let root_name = text(chain.root, self.src);
        let Some(Some(binding)) = self.bindings.get(root_name) else {
            return;
        };
        if shadowed(root_name, scopes, self.src) {
            return;
        }
        let binding = binding.clone();
        if binding.root {
            *self.root_uses.entry(root_name.to_owned()).or_default() += 1;
        }
        let mut full = binding.target.clone();
        for part in &chain.parts {
            full.push('.');
            full.push_str(text(*part, self.src));
        }
        let Some((len, new)) = self.moves.lookup_prefix(&full) else {
            return;
        };
        let reaches_past_binding = if binding.root {
            len >= binding.target.len()
        } else {
            len > binding.target.len()
        };
        if !reaches_past_binding {
            return;
        }
        // Parts of the chain covered by the moved prefix.
        let extra_dots = full[binding.target.len()..len]
            .bytes()
            .filter(|b| *b == b'.')
            .count();
        let end = if extra_dots == 0 {
            chain.root.end_byte()
        } else {
            chain.parts[extra_dots - 1].end_byte()
        };
        let new = new.to_owned();
        self.edits.push(Edit {
            start: chain.root.start_byte(),
            end,
            text: new.clone(),
        });
        if binding.root {
            *self.root_rewrites.entry(root_name.to_owned()).or_default() += 1;
        }
        self.needed
            .push((binding.stmt_start, binding.stmt_end, new));
    }

    fn string(&mut self, node: Node<'_>) {
        let mut cursor = node.walk();
        let parts: Vec<Node<'_>> = node
            .named_children(&mut cursor)
            .filter(|c| c.kind() == "string_content")
            .collect();
        for part in parts {
            let content = text(part, self.src);
            if !self.moves.roots().any(|r| content.contains(r)) {
                continue;
            }
            for word in content
                .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/')))
            {
                let word = word.trim_matches(|c| c == '.' || c == '/');
                let dotted = if word.contains('/') {
                    word.trim_end_matches(".py").replace('/', ".")
                } else {
                    word.to_owned()
                };
                let Some((len, new)) = self.moves.lookup_prefix(&dotted) else {
                    continue;
                };
                let line = line_of(part)
                    + content[..content.find(word).unwrap_or(0)]
                        .matches('\n')
                        .count();
                let old = dotted[..len].to_owned();
                if self.string_warned.insert((line, old.clone())) {
                    self.warnings.push(format!(
                        "{}:{}: a string names moved module `{old}` (now `{new}`): `{word}`; not rewritten",
                        self.file, line
                    ));
                }
            }
        }
    }

    /// Adds `import X` for rewritten references whose new module no import loads.
    fn add_needed_imports(&mut self) {
        let mut done: HashSet<String> = HashSet::new();
        let needed = std::mem::take(&mut self.needed);
        for (start, end, module) in needed {
            let loaded = self.imported.iter().any(|m| {
                m == &module
                    || (m.starts_with(module.as_str())
                        && m.as_bytes().get(module.len()) == Some(&b'.'))
            });
            if loaded || !done.insert(module.clone()) {
                continue;
            }
            self.insert_after(start, end, &format!("import {module}"));
        }
    }

    /// Warns when an `import a.b` rewritten to another root leaves uses of `a`
    /// that nothing binds any more.
    fn warn_lost_roots(&mut self) {
        for (root, line) in std::mem::take(&mut self.rewritten_roots) {
            let still_bound = self.imported.iter().any(|m| first_part(m) == root);
            let uses = self.root_uses.get(&root).copied().unwrap_or(0);
            let rewritten = self.root_rewrites.get(&root).copied().unwrap_or(0);
            if !still_bound && uses > rewritten {
                self.warnings.push(format!(
                    "{}:{line}: `{root}` is no longer imported after this import was rewritten, \
                     but {} reference(s) to it remain",
                    self.file,
                    uses - rewritten
                ));
            }
        }
    }
}

fn first_part(dotted: &str) -> &str {
    dotted.split('.').next().unwrap_or(dotted)
}

/// `a.b.c` as an identifier root and attribute parts.
struct Chain<'t> {
    root: Node<'t>,
    parts: Vec<Node<'t>>,
}

fn chain_of(node: Node<'_>) -> Option<Chain<'_>> {
    let mut parts = Vec::new();
    let mut current = node;
    loop {
        match current.kind() {
            "attribute" => {
                parts.push(current.child_by_field_name("attribute")?);
                current = current.child_by_field_name("object")?;
            }
            "identifier" => {
                parts.reverse();
                return Some(Chain {
                    root: current,
                    parts,
                });
            }
            _ => return None,
        }
    }
}

/// A function (or lambda) scope around the current node, with its local names
/// worked out on first need.
struct Scope<'t> {
    node: Node<'t>,
    locals: Option<HashSet<String>>,
}

/// True when an enclosing function binds `name` itself (a parameter or an
/// assignment), hiding the module-level import.
fn shadowed(name: &str, scopes: &mut [Scope<'_>], src: &str) -> bool {
    scopes.iter_mut().any(|scope| {
        scope
            .locals
            .get_or_insert_with(|| local_names(scope.node, src))
            .contains(name)
    })
}

fn local_names(func: Node<'_>, src: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut globals = HashSet::new();
    if let Some(params) = func.child_by_field_name("parameters") {
        let mut cursor = params.walk();
        for p in params.named_children(&mut cursor) {
            let target = match p.kind() {
                "identifier" => Some(p),
                "default_parameter" | "typed_default_parameter" => p.child_by_field_name("name"),
                "typed_parameter" | "list_splat_pattern" | "dictionary_splat_pattern" => {
                    let mut c = p.walk();
                    let found = p.named_children(&mut c).find(|c| c.kind() == "identifier");
                    found
                }
                _ => None,
            };
            if let Some(t) = target {
                names.insert(text(t, src).to_owned());
            }
        }
    }
    let Some(body) = func.child_by_field_name("body") else {
        return names;
    };
    let mut stack = vec![body];
    while let Some(node) = stack.pop() {
        match node.kind() {
            "function_definition" | "class_definition" => {
                if let Some(n) = node.child_by_field_name("name") {
                    names.insert(text(n, src).to_owned());
                }
                continue;
            }
            "lambda" => continue,
            "assignment" | "augmented_assignment" | "for_statement" | "for_in_clause" => {
                if let Some(left) = node.child_by_field_name("left") {
                    target_names(left, src, &mut names);
                }
            }
            "named_expression" => {
                if let Some(n) = node.child_by_field_name("name") {
                    names.insert(text(n, src).to_owned());
                }
            }
            "as_pattern" => {
                if let Some(alias) = node.child_by_field_name("alias") {
                    target_names(alias, src, &mut names);
                }
            }
            "except_clause" => {
                if let Some(alias) = node.child_by_field_name("alias") {
                    target_names(alias, src, &mut names);
                }
            }
            "global_statement" | "nonlocal_statement" => {
                let mut c = node.walk();
                for n in node.named_children(&mut c) {
                    globals.insert(text(n, src).to_owned());
                }
            }
            _ => {}
        }
        let mut c = node.walk();
        stack.extend(node.named_children(&mut c));
    }
    names.retain(|n| !globals.contains(n));
    names
}

fn target_names(node: Node<'_>, src: &str, out: &mut HashSet<String>) {
    match node.kind() {
        "identifier" => {
            out.insert(text(node, src).to_owned());
        }
        "pattern_list"
        | "tuple_pattern"
        | "list_pattern"
        | "list_splat_pattern"
        | "parenthesized_expression"
        | "tuple"
        | "list"
        | "as_pattern_target"
        | "expression_list" => {
            let mut c = node.walk();
            for child in node.named_children(&mut c) {
                target_names(child, src, out);
            }
        }
        _ => {}
    }
}
