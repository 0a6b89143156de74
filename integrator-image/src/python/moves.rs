//! The move map: repository path moves turned into dotted Python module renames.

use std::collections::{HashMap, HashSet};

use super::PythonError;

/// Old dotted module name → new dotted module name, built from path moves.
///
/// Lookups find the longest moved prefix of a dotted name, so everything below a
/// moved package moves with it. A lookup costs one hash probe per dot of the name,
/// after a cheap check of the first component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MoveMap {
    modules: HashMap<String, String>,
    /// First components of every old name: most names in a file start with none of
    /// them, and this rejects those without building any string.
    roots: HashSet<String>,
    /// Last components of every old name: any reference to a moved module from a
    /// file that did not move spells its last component, so a file holding none of
    /// them as a word needs no parse.
    last_parts: HashSet<String>,
    /// The path moves as given (normalized), old → new.
    paths: Vec<(String, String)>,
}

impl MoveMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a map from repository-relative path moves (a file `x/y.py` or a
    /// package directory `x/y`).
    pub fn from_paths<I, A, B>(moves: I) -> Result<Self, PythonError>
    where
        I: IntoIterator<Item = (A, B)>,
        A: AsRef<str>,
        B: AsRef<str>,
    {
        let mut map = MoveMap::new();
        for (from, to) in moves {
            map.insert_path(from.as_ref(), to.as_ref())?;
        }
        Ok(map)
    }

    /// Adds one path move.
    pub fn insert_path(&mut self, from: &str, to: &str) -> Result<(), PythonError> {
        let old = dotted_of_move_path(from)?;
        let new = dotted_of_move_path(to)?;
        self.paths
            .push((trim_path(from).to_owned(), trim_path(to).to_owned()));
        self.insert_dotted(&old, &new);
        Ok(())
    }

    /// Adds one dotted rename.
    pub fn insert_dotted(&mut self, old: &str, new: &str) {
        let root = old.split('.').next().unwrap_or(old);
        self.roots.insert(root.to_owned());
        let last = old.rsplit('.').next().unwrap_or(old);
        self.last_parts.insert(last.to_owned());
        self.modules.insert(old.to_owned(), new.to_owned());
    }

    /// Number of module renames.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// True when nothing moves.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// First components of the old names (e.g. `candidate`).
    pub fn roots(&self) -> impl Iterator<Item = &str> {
        self.roots.iter().map(String::as_str)
    }

    /// True when `source` holds, as a whole word, the last component of a moved
    /// module's old name: only such a file (when it did not move itself) can refer to
    /// a moved module.
    pub fn mentioned_in(&self, source: &str) -> bool {
        let bytes = source.as_bytes();
        let word = |b: u8| b == b'_' || b.is_ascii_alphanumeric();
        let mut i = 0;
        while i < bytes.len() {
            if !word(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && word(bytes[i]) {
                i += 1;
            }
            if self.last_parts.contains(&source[start..i]) {
                return true;
            }
        }
        false
    }

    /// The renames, old → new, sorted by old name.
    pub fn renames(&self) -> Vec<(&str, &str)> {
        let mut all: Vec<(&str, &str)> = self
            .modules
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        all.sort_unstable();
        all
    }

    /// The new name of exactly `old`, when `old` itself is a moved module.
    pub fn get(&self, old: &str) -> Option<&str> {
        self.modules.get(old).map(String::as_str)
    }

    /// The longest moved prefix of `dotted`: its length in bytes and its new name.
    /// `candidate.memory.fold.core.f` → (21, `lukhas.memory.fold`).
    pub fn lookup_prefix(&self, dotted: &str) -> Option<(usize, &str)> {
        let root_end = dotted.find('.').unwrap_or(dotted.len());
        if !self.roots.contains(&dotted[..root_end]) {
            return None;
        }
        let mut end = dotted.len();
        loop {
            if let Some(new) = self.modules.get(&dotted[..end]) {
                return Some((end, new.as_str()));
            }
            end = dotted[..end].rfind('.')?;
        }
    }

    /// The new dotted name of `dotted`, when it or one of its packages moved.
    /// `candidate.memory.fold.core.f` → `lukhas.memory.fold.core.f`.
    pub fn lookup(&self, dotted: &str) -> Option<String> {
        let (len, new) = self.lookup_prefix(dotted)?;
        Some(format!("{new}{}", &dotted[len..]))
    }

    /// The new repository path of a file at `old_path`, when it lies in a moved path.
    pub fn new_path_of(&self, old_path: &str) -> Option<String> {
        let mut best: Option<(&str, &str)> = None;
        for (from, to) in &self.paths {
            let inside = old_path == from
                || (old_path.len() > from.len()
                    && old_path.starts_with(from.as_str())
                    && old_path.as_bytes()[from.len()] == b'/');
            if inside && best.is_none_or(|(f, _)| f.len() < from.len()) {
                best = Some((from, to));
            }
        }
        best.map(|(from, to)| format!("{to}{}", &old_path[from.len()..]))
    }
}

fn trim_path(path: &str) -> &str {
    path.trim_matches('/')
}

/// The dotted name a moved path stands for: `x/y.py` and `x/y` both give `x.y`,
/// `x/y/__init__.py` gives `x.y`.
pub fn dotted_of_move_path(path: &str) -> Result<String, PythonError> {
    let trimmed = trim_path(path);
    let stem = trimmed.strip_suffix(".py").unwrap_or(trimmed);
    let stem = stem.strip_suffix("/__init__").unwrap_or(stem);
    let parts: Vec<&str> = stem.split('/').collect();
    if parts.iter().any(|p| !is_identifier(p)) {
        return Err(PythonError::BadPath {
            path: path.to_owned(),
            reason: "every component must be a Python identifier".to_owned(),
        });
    }
    Ok(parts.join("."))
}

/// The dotted module name of a repository-relative `.py` file:
/// `a/b/__init__.py` → `a.b`, `a/b/c.py` → `a.b.c`. `None` for other files and
/// for paths that are not importable names.
pub fn module_name_of_path(path: &str) -> Option<String> {
    let stem = path.strip_suffix(".py")?;
    let stem = match stem.strip_suffix("__init__") {
        Some("") => return None,
        Some(rest) => rest.strip_suffix('/')?,
        None => stem,
    };
    let parts: Vec<&str> = stem.split('/').collect();
    if parts.iter().all(|p| is_identifier(p)) {
        Some(parts.join("."))
    } else {
        None
    }
}

/// The package that relative imports in the file at `path` start from:
/// the module itself for an `__init__.py`, its parent otherwise (empty at the root).
pub fn package_of_path(path: &str) -> Option<String> {
    let module = module_name_of_path(path)?;
    if path.ends_with("/__init__.py") {
        Some(module)
    } else {
        Some(match module.rfind('.') {
            Some(i) => module[..i].to_owned(),
            None => String::new(),
        })
    }
}

/// True for a plain ASCII Python identifier.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> MoveMap {
        MoveMap::from_paths([
            ("candidate/memory/fold", "lukhas/memory/fold"),
            ("candidate/bridge/api.py", "lukhas/bridge/api.py"),
        ])
        .unwrap()
    }

    #[test]
    fn paths_become_dotted_names() {
        let m = map();
        assert_eq!(m.get("candidate.memory.fold"), Some("lukhas.memory.fold"));
        assert_eq!(m.get("candidate.bridge.api"), Some("lukhas.bridge.api"));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn lookup_takes_the_longest_moved_prefix() {
        let mut m = map();
        m.insert_dotted("candidate.memory.fold.core", "elsewhere.core");
        assert_eq!(
            m.lookup("candidate.memory.fold.core.f").as_deref(),
            Some("elsewhere.core.f")
        );
        assert_eq!(
            m.lookup("candidate.memory.fold.other.f").as_deref(),
            Some("lukhas.memory.fold.other.f")
        );
        assert_eq!(
            m.lookup("candidate.memory.fold").as_deref(),
            Some("lukhas.memory.fold")
        );
    }

    #[test]
    fn lookup_respects_component_boundaries() {
        let m = map();
        assert_eq!(m.lookup("candidate.memory.fold_extra"), None);
        assert_eq!(m.lookup("candidate.memory"), None);
        assert_eq!(m.lookup("other.memory.fold"), None);
    }

    #[test]
    fn module_names_of_paths() {
        assert_eq!(
            module_name_of_path("a/b/__init__.py").as_deref(),
            Some("a.b")
        );
        assert_eq!(module_name_of_path("a/b/c.py").as_deref(), Some("a.b.c"));
        assert_eq!(module_name_of_path("setup.py").as_deref(), Some("setup"));
        assert_eq!(module_name_of_path("a/b/c.txt"), None);
        assert_eq!(module_name_of_path("a/my-dir/c.py"), None);
        assert_eq!(package_of_path("a/b/__init__.py").as_deref(), Some("a.b"));
        assert_eq!(package_of_path("a/b/c.py").as_deref(), Some("a.b"));
        assert_eq!(package_of_path("c.py").as_deref(), Some(""));
    }

    #[test]
    fn bad_move_paths_are_refused() {
        assert!(MoveMap::from_paths([("candidate/my-mod", "lukhas/x")]).is_err());
    }

    #[test]
    fn mentions_are_whole_words() {
        let m = map();
        assert!(m.mentioned_in("from candidate.memory import fold\n"));
        assert!(m.mentioned_in("x = api"));
        assert!(!m.mentioned_in("import candidate.memory.fold_extra\nfolder = 1\n"));
        assert!(!m.mentioned_in(""));
    }

    #[test]
    fn new_paths_of_files() {
        let m = map();
        assert_eq!(
            m.new_path_of("candidate/memory/fold/core.py").as_deref(),
            Some("lukhas/memory/fold/core.py")
        );
        assert_eq!(
            m.new_path_of("candidate/bridge/api.py").as_deref(),
            Some("lukhas/bridge/api.py")
        );
        assert_eq!(m.new_path_of("candidate/memory/fold_extra.py"), None);
    }
}
