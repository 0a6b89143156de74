//! Modules → dependency levels. Pure: no I/O, deterministic for a given input.
//!
//! A module sits one level after its deepest dependency; inside a level modules keep
//! the order of the spec. Every rule the CRD schema cannot express is checked here, so
//! local mode (which has no API server) refuses the same input the cluster does.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::crd::{ModuleSpec, MAX_MODULES};

/// Why a list of modules cannot be planned. Every message names the offending modules.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// Nothing to do.
    #[error("the run has no modules")]
    NoModules,
    /// More modules than a run may hold.
    #[error("the run has {count} modules; at most {MAX_MODULES} are allowed")]
    TooManyModules {
        /// How many were given.
        count: usize,
    },
    /// A module name that is not a DNS-label-like name.
    #[error("module name {name:?} is invalid: use 1-63 characters of a-z, 0-9, '.', '_' or '-', starting and ending with a letter or digit")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// Two modules with one name.
    #[error("module name {name:?} is used twice")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// A dependency on a module that is not in the run.
    #[error("module {module:?} depends on {dependency:?}, which is not a module of this run")]
    UnknownDependency {
        /// The dependent module.
        module: String,
        /// The missing dependency.
        dependency: String,
    },
    /// A module that depends on itself.
    #[error("module {module:?} depends on itself")]
    SelfDependency {
        /// The module.
        module: String,
    },
    /// A dependency cycle; the modules are listed in cycle order.
    #[error("dependency cycle: {}", cycle_text(.modules))]
    Cycle {
        /// The modules of the cycle, each depending on the next, the last on the first.
        modules: Vec<String>,
    },
    /// An unusable path or target.
    #[error("module {module:?}: {field} {path:?} is invalid: {reason}")]
    BadPath {
        /// The module.
        module: String,
        /// `path` or `target`.
        field: &'static str,
        /// The value given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A module whose target equals its path.
    #[error("module {module:?}: path and target are both {path:?}")]
    TargetIsPath {
        /// The module.
        module: String,
        /// The path.
        path: String,
    },
    /// Two modules that would land at one place.
    #[error("modules {first:?} and {second:?} have the same target {target:?}")]
    DuplicateTarget {
        /// The target.
        target: String,
        /// The first module.
        first: String,
        /// The second module.
        second: String,
    },
    /// Two modules with one path.
    #[error("modules {first:?} and {second:?} have the same path {path:?}")]
    DuplicatePath {
        /// The path.
        path: String,
        /// The first module.
        first: String,
        /// The second module.
        second: String,
    },
    /// A module nested inside another module.
    #[error("module {module:?} (path {path:?}) is inside module {outer:?} (path {outer_path:?})")]
    PathInsideModule {
        /// The inner module.
        module: String,
        /// Its path.
        path: String,
        /// The enclosing module.
        outer: String,
        /// Its path.
        outer_path: String,
    },
    /// A module that would move into another module's (or its own) current place.
    #[error(
        "module {module:?}: target {target:?} is inside module {outer:?} (path {outer_path:?})"
    )]
    TargetInsideModule {
        /// The module.
        module: String,
        /// Its target.
        target: String,
        /// The module whose path encloses the target.
        outer: String,
        /// Its path.
        outer_path: String,
    },
}

fn cycle_text(modules: &[String]) -> String {
    let mut parts: Vec<&str> = modules.iter().map(String::as_str).collect();
    if let Some(first) = modules.first() {
        parts.push(first);
    }
    parts.join(" -> ")
}

/// One module with its place in the plan and normalized paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedModule {
    /// Module name.
    pub name: String,
    /// Current path, normalized (no `.`, no empty components, no trailing `/`).
    pub path: String,
    /// Target path, normalized.
    pub target: String,
    /// Names of the modules it depends on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Its level, from 0.
    pub level: usize,
}

/// Modules grouped into levels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Every module in plan order: level by level, spec order inside a level.
    pub modules: Vec<PlannedModule>,
    /// For each level, the positions in `modules` of its modules.
    pub levels: Vec<Vec<usize>>,
}

/// One entry of the old→new move map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move<'a> {
    /// Module name.
    pub module: &'a str,
    /// Old path.
    pub from: &'a str,
    /// New path.
    pub to: &'a str,
}

impl Plan {
    /// The modules of level `k`, in order.
    pub fn level(&self, k: usize) -> impl Iterator<Item = &PlannedModule> {
        self.levels
            .get(k)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.modules.get(i))
    }

    /// The module named `name`.
    pub fn module(&self, name: &str) -> Option<&PlannedModule> {
        self.modules.iter().find(|m| m.name == name)
    }

    /// The old→new move map of every module, in plan order.
    pub fn moves(&self) -> Vec<Move<'_>> {
        self.modules
            .iter()
            .map(|m| Move {
                module: &m.name,
                from: &m.path,
                to: &m.target,
            })
            .collect()
    }

    /// The move map of the modules of level `k`.
    pub fn level_moves(&self, k: usize) -> Vec<Move<'_>> {
        self.level(k)
            .map(|m| Move {
                module: &m.name,
                from: &m.path,
                to: &m.target,
            })
            .collect()
    }
}

/// True when `name` is a valid module name: `^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`.
pub fn is_valid_module_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let inner = |b: &u8| edge(b) || matches!(b, b'.' | b'_' | b'-');
    match bytes {
        [] => false,
        [only] => edge(only),
        [first, middle @ .., last] => {
            bytes.len() <= 63 && edge(first) && edge(last) && middle.iter().all(inner)
        }
    }
}

/// Normalizes a repository-relative path, or says why it is unusable.
pub fn normalize_path(path: &str) -> Result<String, &'static str> {
    if path.trim().is_empty() {
        return Err("it is empty");
    }
    if path.starts_with('/') || path.starts_with('\\') {
        return Err("it is absolute; give a path relative to the repository root");
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err("it contains a control character or a backslash");
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("it contains '..'"),
            ".git" => return Err("it names the .git directory"),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err("it names the repository root");
    }
    Ok(parts.join("/"))
}

/// The proper ancestors of a normalized path, nearest last: `a/b/c` → `a`, `a/b`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Plans `modules` into levels, or refuses them with an error naming the problem.
pub fn plan(modules: &[ModuleSpec]) -> Result<Plan, PlanError> {
    if modules.is_empty() {
        return Err(PlanError::NoModules);
    }
    if modules.len() > MAX_MODULES {
        return Err(PlanError::TooManyModules {
            count: modules.len(),
        });
    }

    let mut index: HashMap<&str, usize> = HashMap::with_capacity(modules.len());
    for (i, m) in modules.iter().enumerate() {
        if !is_valid_module_name(&m.name) {
            return Err(PlanError::InvalidName {
                name: m.name.clone(),
            });
        }
        if index.insert(&m.name, i).is_some() {
            return Err(PlanError::DuplicateName {
                name: m.name.clone(),
            });
        }
    }

    let (paths, targets) = check_paths(modules)?;
    let deps = resolve_dependencies(modules, &index)?;
    let levels_of = assign_levels(modules, &deps)?;

    let depth = levels_of.iter().copied().max().map_or(0, |d| d + 1);
    let mut by_level: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for (i, &level) in levels_of.iter().enumerate() {
        by_level[level].push(i);
    }

    let mut planned = Vec::with_capacity(modules.len());
    let mut levels = Vec::with_capacity(depth);
    for members in by_level {
        let mut positions = Vec::with_capacity(members.len());
        for i in members {
            positions.push(planned.len());
            let spec = &modules[i];
            planned.push(PlannedModule {
                name: spec.name.clone(),
                path: paths[i].clone(),
                target: targets[i].clone(),
                depends_on: spec.depends_on.clone(),
                level: levels_of[i],
            });
        }
        levels.push(positions);
    }
    Ok(Plan {
        modules: planned,
        levels,
    })
}

/// Normalizes every path and target and checks how they relate to each other.
fn check_paths(modules: &[ModuleSpec]) -> Result<(Vec<String>, Vec<String>), PlanError> {
    let bad = |m: &ModuleSpec, field: &'static str, path: &str, reason| PlanError::BadPath {
        module: m.name.clone(),
        field,
        path: path.to_owned(),
        reason,
    };
    let mut paths = Vec::with_capacity(modules.len());
    let mut targets = Vec::with_capacity(modules.len());
    for m in modules {
        let path = normalize_path(&m.path).map_err(|r| bad(m, "path", &m.path, r))?;
        let target = normalize_path(&m.target).map_err(|r| bad(m, "target", &m.target, r))?;
        if path == target {
            return Err(PlanError::TargetIsPath {
                module: m.name.clone(),
                path,
            });
        }
        paths.push(path);
        targets.push(target);
    }

    let mut by_path: HashMap<&str, usize> = HashMap::with_capacity(modules.len());
    for (i, p) in paths.iter().enumerate() {
        if let Some(&first) = by_path.get(p.as_str()) {
            return Err(PlanError::DuplicatePath {
                path: p.clone(),
                first: modules[first].name.clone(),
                second: modules[i].name.clone(),
            });
        }
        by_path.insert(p, i);
    }
    let mut by_target: HashMap<&str, usize> = HashMap::with_capacity(modules.len());
    for (i, t) in targets.iter().enumerate() {
        if let Some(&first) = by_target.get(t.as_str()) {
            return Err(PlanError::DuplicateTarget {
                target: t.clone(),
                first: modules[first].name.clone(),
                second: modules[i].name.clone(),
            });
        }
        by_target.insert(t, i);
    }

    for (i, p) in paths.iter().enumerate() {
        if let Some(&outer) = ancestors(p).find_map(|a| by_path.get(a)) {
            return Err(PlanError::PathInsideModule {
                module: modules[i].name.clone(),
                path: p.clone(),
                outer: modules[outer].name.clone(),
                outer_path: paths[outer].clone(),
            });
        }
    }
    for (i, t) in targets.iter().enumerate() {
        let enclosing = by_path
            .get(t.as_str())
            .or_else(|| ancestors(t).find_map(|a| by_path.get(a)));
        if let Some(&outer) = enclosing {
            return Err(PlanError::TargetInsideModule {
                module: modules[i].name.clone(),
                target: t.clone(),
                outer: modules[outer].name.clone(),
                outer_path: paths[outer].clone(),
            });
        }
    }
    Ok((paths, targets))
}

/// Dependencies as positions in the spec, checked.
fn resolve_dependencies(
    modules: &[ModuleSpec],
    index: &HashMap<&str, usize>,
) -> Result<Vec<Vec<usize>>, PlanError> {
    modules
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut deps = Vec::with_capacity(m.depends_on.len());
            for d in &m.depends_on {
                let Some(&j) = index.get(d.as_str()) else {
                    return Err(PlanError::UnknownDependency {
                        module: m.name.clone(),
                        dependency: d.clone(),
                    });
                };
                if j == i {
                    return Err(PlanError::SelfDependency {
                        module: m.name.clone(),
                    });
                }
                if !deps.contains(&j) {
                    deps.push(j);
                }
            }
            Ok(deps)
        })
        .collect()
}

/// Level of each module (Kahn's algorithm); a cycle is reported in order.
fn assign_levels(modules: &[ModuleSpec], deps: &[Vec<usize>]) -> Result<Vec<usize>, PlanError> {
    let n = modules.len();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut waiting: Vec<usize> = Vec::with_capacity(n);
    for (i, ds) in deps.iter().enumerate() {
        waiting.push(ds.len());
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut level = vec![0usize; n];
    let mut ready: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut done = 0;
    while let Some(i) = ready.pop() {
        done += 1;
        for &j in &dependents[i] {
            level[j] = level[j].max(level[i] + 1);
            waiting[j] -= 1;
            if waiting[j] == 0 {
                ready.push(j);
            }
        }
    }
    if done == n {
        return Ok(level);
    }
    Err(PlanError::Cycle {
        modules: find_cycle(deps, &waiting)
            .into_iter()
            .map(|i| modules[i].name.clone())
            .collect(),
    })
}

/// A cycle among the modules Kahn's algorithm could not place. Starts at the first
/// such module in spec order and follows unplaced dependencies until one repeats.
fn find_cycle(deps: &[Vec<usize>], waiting: &[usize]) -> Vec<usize> {
    let stuck = |i: usize| waiting[i] > 0;
    let Some(start) = (0..deps.len()).find(|&i| stuck(i)) else {
        return Vec::new();
    };
    // Every stuck module has at least one stuck dependency, so the walk never ends
    // early and must revisit a module within n steps.
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    let mut path = Vec::new();
    let mut current = start;
    loop {
        if let Some(&at) = seen.get(&current) {
            return path.split_off(at);
        }
        seen.insert(current, path.len());
        path.push(current);
        match deps[current].iter().copied().find(|&d| stuck(d)) {
            Some(next) => current = next,
            None => return path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(name: &str, deps: &[&str]) -> ModuleSpec {
        ModuleSpec {
            name: name.to_owned(),
            path: format!("candidate/{name}"),
            target: format!("lukhas/{name}"),
            depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    fn names(plan: &Plan, k: usize) -> Vec<&str> {
        plan.level(k).map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn levels_follow_deepest_dependency_and_keep_spec_order() {
        let plan = plan(&[
            m("d", &["b", "c"]),
            m("b", &["a"]),
            m("a", &[]),
            m("c", &["a"]),
            m("e", &[]),
        ])
        .unwrap();
        assert_eq!(plan.levels.len(), 3);
        assert_eq!(names(&plan, 0), ["a", "e"]);
        assert_eq!(names(&plan, 1), ["b", "c"]);
        assert_eq!(names(&plan, 2), ["d"]);
        assert_eq!(plan.module("d").unwrap().level, 2);
        let moves = plan.level_moves(2);
        assert_eq!(moves[0].from, "candidate/d");
        assert_eq!(moves[0].to, "lukhas/d");
    }

    #[test]
    fn cycle_is_named_in_order() {
        let err = plan(&[m("x", &[]), m("a", &["b"]), m("b", &["c"]), m("c", &["a"])]).unwrap_err();
        assert_eq!(
            err,
            PlanError::Cycle {
                modules: vec!["a".into(), "b".into(), "c".into()]
            }
        );
        assert_eq!(err.to_string(), "dependency cycle: a -> b -> c -> a");
    }

    #[test]
    fn cycle_reached_through_a_tail_names_only_the_cycle() {
        let err = plan(&[m("t", &["a"]), m("a", &["b"]), m("b", &["a"])]).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: a -> b -> a");
    }

    #[test]
    fn refusals_name_the_problem() {
        let cases: Vec<(Vec<ModuleSpec>, &str)> = vec![
            (vec![], "no modules"),
            (
                vec![m("a", &["zz"])],
                "depends on \"zz\", which is not a module",
            ),
            (vec![m("a", &["a"])], "\"a\" depends on itself"),
            (vec![m("a", &[]), m("a", &[])], "\"a\" is used twice"),
            (vec![m("Bad", &[])], "module name \"Bad\" is invalid"),
            (
                vec![ModuleSpec {
                    path: "/etc".into(),
                    ..m("a", &[])
                }],
                "path \"/etc\" is invalid: it is absolute",
            ),
            (
                vec![ModuleSpec {
                    target: "lukhas/../../x".into(),
                    ..m("a", &[])
                }],
                "target \"lukhas/../../x\" is invalid: it contains '..'",
            ),
            (
                vec![ModuleSpec {
                    path: " ".into(),
                    ..m("a", &[])
                }],
                "path \" \" is invalid: it is empty",
            ),
            (
                vec![
                    m("a", &[]),
                    ModuleSpec {
                        target: "lukhas/a".into(),
                        ..m("b", &[])
                    },
                ],
                "modules \"a\" and \"b\" have the same target \"lukhas/a\"",
            ),
            (
                vec![
                    m("a", &[]),
                    ModuleSpec {
                        path: "candidate/a/inner".into(),
                        ..m("b", &[])
                    },
                ],
                "module \"b\" (path \"candidate/a/inner\") is inside module \"a\"",
            ),
            (
                vec![
                    m("a", &[]),
                    ModuleSpec {
                        target: "candidate/a/sub".into(),
                        ..m("b", &[])
                    },
                ],
                "module \"b\": target \"candidate/a/sub\" is inside module \"a\"",
            ),
            (
                vec![ModuleSpec {
                    target: "candidate/a/deeper".into(),
                    ..m("a", &[])
                }],
                "target \"candidate/a/deeper\" is inside module \"a\"",
            ),
            (
                vec![ModuleSpec {
                    target: "./candidate/a/".into(),
                    ..m("a", &[])
                }],
                "path and target are both \"candidate/a\"",
            ),
        ];
        for (modules, expected) in cases {
            let err = plan(&modules).expect_err(expected).to_string();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize_path("./a//b/").unwrap(), "a/b");
        assert!(normalize_path("a/.git/x").is_err());
        assert!(normalize_path(".").is_err());
    }

    #[test]
    fn module_names() {
        for ok in ["a", "a1", "memory_fold", "a.b-c", &"x".repeat(63)] {
            assert!(is_valid_module_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a b", "é", &"x".repeat(64)] {
            assert!(!is_valid_module_name(bad), "{bad}");
        }
    }

    /// A random DAG: module i may depend only on modules before it in creation order,
    /// then the list is shuffled so spec order differs from dependency order.
    fn dag() -> impl Strategy<Value = Vec<ModuleSpec>> {
        (1usize..60)
            .prop_flat_map(|n| {
                let edges = proptest::collection::vec(
                    proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
                    n,
                );
                (Just(n), edges, any::<u64>())
            })
            .prop_map(|(n, edges, seed)| {
                let mut modules: Vec<ModuleSpec> = (0..n)
                    .map(|i| {
                        let deps: Vec<String> = if i == 0 {
                            Vec::new()
                        } else {
                            let mut d: Vec<String> = edges[i]
                                .iter()
                                .map(|ix| format!("m{}", ix.index(i)))
                                .collect();
                            d.sort();
                            d.dedup();
                            d
                        };
                        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
                        m(&format!("m{i}"), &deps)
                    })
                    .collect();
                // Deterministic shuffle from the seed.
                let mut s = seed | 1;
                for i in (1..modules.len()).rev() {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    modules.swap(i, (s % (i as u64 + 1)) as usize);
                }
                modules
            })
    }

    fn longest_chain(modules: &[ModuleSpec]) -> usize {
        let by_name: HashMap<&str, &ModuleSpec> =
            modules.iter().map(|m| (m.name.as_str(), m)).collect();
        fn depth<'a>(
            name: &'a str,
            by_name: &HashMap<&'a str, &'a ModuleSpec>,
            memo: &mut HashMap<&'a str, usize>,
        ) -> usize {
            if let Some(&d) = memo.get(name) {
                return d;
            }
            let d = 1 + by_name[name]
                .depends_on
                .iter()
                .map(|dep| depth(dep, by_name, memo))
                .max()
                .unwrap_or(0);
            memo.insert(name, d);
            d
        }
        let mut memo = HashMap::new();
        modules
            .iter()
            .map(|m| depth(&m.name, &by_name, &mut memo))
            .max()
            .unwrap_or(0)
    }

    proptest! {
        #[test]
        fn every_dependency_is_in_an_earlier_level(modules in dag()) {
            let plan = plan(&modules).unwrap();
            for module in &plan.modules {
                for dep in &module.depends_on {
                    let dep_level = plan.module(dep).unwrap().level;
                    prop_assert!(dep_level < module.level, "{dep} (level {dep_level}) is not before {} (level {})", module.name, module.level);
                }
            }
            prop_assert_eq!(plan.modules.len(), modules.len());
            prop_assert!(plan.levels.iter().all(|l| !l.is_empty()));
        }

        #[test]
        fn level_count_is_the_longest_chain(modules in dag()) {
            let plan = plan(&modules).unwrap();
            prop_assert_eq!(plan.levels.len(), longest_chain(&modules));
        }

        #[test]
        fn plan_is_deterministic_and_keeps_spec_order(modules in dag()) {
            let first = plan(&modules).unwrap();
            prop_assert_eq!(&first, &plan(&modules).unwrap());
            let spec_pos: HashMap<&str, usize> =
                modules.iter().enumerate().map(|(i, m)| (m.name.as_str(), i)).collect();
            for level in &first.levels {
                let order: Vec<usize> = level.iter().map(|&i| spec_pos[first.modules[i].name.as_str()]).collect();
                prop_assert!(order.windows(2).all(|w| w[0] < w[1]));
            }
        }

        #[test]
        fn an_added_back_edge_is_reported_as_a_cycle(modules in dag()) {
            // Make the first module of the deepest chain depend on its last one.
            let plan_ok = plan(&modules).unwrap();
            let deepest = plan_ok.modules.last().unwrap().clone();
            if let Some(root) = deepest.depends_on.first().cloned() {
                let mut modules = modules.clone();
                let pos = modules.iter().position(|m| m.name == root).unwrap();
                modules[pos].depends_on.push(deepest.name.clone());
                let is_cycle = matches!(plan(&modules), Err(PlanError::Cycle { .. }));
                prop_assert!(is_cycle);
            }
        }
    }
}
