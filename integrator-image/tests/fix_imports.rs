//! fixImports against a corpus of tricky cases. Each case states the moves, the
//! file's old and new path, the input and the exact expected output.

use lapidary_integrator::python::{fix_imports, fix_repository, MoveMap, PythonError};

fn moves() -> MoveMap {
    MoveMap::from_paths([
        ("candidate/memory/fold", "lukhas/memory/fold"),
        ("candidate/bridge/api.py", "lukhas/bridge/api.py"),
        ("candidate/core/glyph", "lukhas/core/symbols"),
    ])
    .unwrap()
}

/// Rewrites `input` in a file that did not move.
fn fix(input: &str) -> String {
    fix_at("pkg/user.py", "pkg/user.py", input)
}

fn fix_at(old: &str, new: &str, input: &str) -> String {
    fix_imports(input, old, new, &moves()).unwrap().text
}

#[test]
fn plain_import_is_rewritten() {
    assert_eq!(
        fix("import candidate.memory.fold\n"),
        "import lukhas.memory.fold\n"
    );
    assert_eq!(
        fix("import os, candidate.bridge.api, sys\n"),
        "import os, lukhas.bridge.api, sys\n"
    );
}

#[test]
fn submodule_of_a_moved_package_follows_it() {
    assert_eq!(
        fix("import candidate.memory.fold.core as c\n"),
        "import lukhas.memory.fold.core as c\n"
    );
}

#[test]
fn aliases_keep_their_alias_and_uses() {
    let src = "import candidate.memory.fold as mf  # the fold\n\nmf.f(1)\n";
    assert_eq!(
        fix(src),
        "import lukhas.memory.fold as mf  # the fold\n\nmf.f(1)\n"
    );
}

#[test]
fn from_import_of_a_moved_module() {
    assert_eq!(
        fix("from candidate.memory.fold import f, g as h\n"),
        "from lukhas.memory.fold import f, g as h\n"
    );
    assert_eq!(
        fix("from candidate.memory.fold.core import *\n"),
        "from lukhas.memory.fold.core import *\n"
    );
}

#[test]
fn from_package_import_moved_submodule() {
    assert_eq!(
        fix("from candidate.memory import fold\n"),
        "from lukhas.memory import fold\n"
    );
}

#[test]
fn renamed_module_keeps_the_bound_name() {
    assert_eq!(
        fix("from candidate.core import glyph\nglyph.x()\n"),
        "from lukhas.core import symbols as glyph\nglyph.x()\n"
    );
    assert_eq!(
        fix("from candidate.core import glyph as g\n"),
        "from lukhas.core import symbols as g\n"
    );
}

#[test]
fn partly_moved_import_list_is_split() {
    assert_eq!(
        fix("from candidate.memory import fold, other as o, trace\n"),
        "from candidate.memory import other as o, trace\nfrom lukhas.memory import fold\n"
    );
    assert_eq!(
        fix("from candidate.memory import other, fold\n"),
        "from candidate.memory import other\nfrom lukhas.memory import fold\n"
    );
}

#[test]
fn multi_line_parenthesised_import_keeps_layout_and_comments() {
    let src = "\
from candidate.memory.fold import (  # fold helpers
    alpha,  # first
    beta as b,
    # a lone comment
    gamma,
)
";
    let want = "\
from lukhas.memory.fold import (  # fold helpers
    alpha,  # first
    beta as b,
    # a lone comment
    gamma,
)
";
    assert_eq!(fix(src), want);
}

#[test]
fn multi_line_split_removes_only_the_moved_lines() {
    let src = "\
if True:
    from candidate.memory import (
        other,  # stays
        fold,  # moves
        trace,
    )
";
    let want = "\
if True:
    from candidate.memory import (
        other,  # stays
        trace,
    )
    from lukhas.memory import fold
";
    assert_eq!(fix(src), want);
}

#[test]
fn conditional_and_nested_imports_are_rewritten() {
    let src = "\
try:
    import candidate.memory.fold as fold
except ImportError:  # optional
    fold = None

if TYPE_CHECKING:
    from candidate.bridge.api import Client


def late():
    from candidate.bridge import api
    return api
";
    let want = "\
try:
    import lukhas.memory.fold as fold
except ImportError:  # optional
    fold = None

if TYPE_CHECKING:
    from lukhas.bridge.api import Client


def late():
    from lukhas.bridge import api
    return api
";
    assert_eq!(fix(src), want);
}

#[test]
fn dotted_use_follows_a_rewritten_import() {
    let src = "import candidate.memory.fold\n\nx = candidate.memory.fold.f(2)\ny = candidate.memory.fold.core.g\n";
    let want =
        "import lukhas.memory.fold\n\nx = lukhas.memory.fold.f(2)\ny = lukhas.memory.fold.core.g\n";
    assert_eq!(fix(src), want);
}

#[test]
fn dotted_use_through_an_imported_package_gets_an_import() {
    let src = "import candidate\n\n\ndef run():\n    return candidate.memory.fold.f()\n";
    let want = "import candidate\nimport lukhas.memory.fold\n\n\ndef run():\n    return lukhas.memory.fold.f()\n";
    assert_eq!(fix(src), want);
}

#[test]
fn dotted_use_through_an_alias_of_a_parent_package() {
    let src = "import candidate.memory as cm\nv = cm.fold.f()\nw = cm.other.g()\n";
    let want = "import candidate.memory as cm\nimport lukhas.memory.fold\nv = lukhas.memory.fold.f()\nw = cm.other.g()\n";
    assert_eq!(fix(src), want);
}

#[test]
fn prefix_named_modules_are_left_alone() {
    let src = "\
import candidate.memory.fold_extra
from candidate.memory.fold_extra import f
from candidate.memory import fold_extra
import candidate.bridge.api_v2 as v2
x = candidate.memory.fold_extra.f()
";
    assert_eq!(fix(src), src);
}

#[test]
fn a_parameter_shadowing_the_package_is_not_rewritten() {
    let src = "\
import candidate.memory.fold


def uses(candidate):
    return candidate.memory.fold.value


def real():
    return candidate.memory.fold.value
";
    let want = "\
import lukhas.memory.fold


def uses(candidate):
    return candidate.memory.fold.value


def real():
    return lukhas.memory.fold.value
";
    assert_eq!(fix(src), want);
}

#[test]
fn a_local_assignment_shadowing_an_alias_is_not_rewritten() {
    let src = "\
import candidate.memory as cm


def f():
    cm = make()
    return cm.fold.x


g = cm.fold.x
";
    let want = "\
import candidate.memory as cm
import lukhas.memory.fold


def f():
    cm = make()
    return cm.fold.x


g = lukhas.memory.fold.x
";
    assert_eq!(fix(src), want);
}

#[test]
fn relative_import_of_a_moved_sibling_becomes_absolute() {
    // candidate/memory/__init__.py re-exports from fold, which moved away.
    let src = "\"\"\"Memory.\"\"\"\nfrom .fold import f  # re-export\nfrom . import fold\nfrom .other import g\n__all__ = ['f', 'g']\n";
    let want = "\"\"\"Memory.\"\"\"\nfrom lukhas.memory.fold import f  # re-export\nfrom lukhas.memory import fold\nfrom .other import g\n__all__ = ['f', 'g']\n";
    assert_eq!(
        fix_at(
            "candidate/memory/__init__.py",
            "candidate/memory/__init__.py",
            src
        ),
        want
    );
}

#[test]
fn relative_imports_inside_a_moved_package_stay_when_still_valid() {
    let src = "from .core import g\nfrom . import core\nfrom .core import *\n";
    assert_eq!(
        fix_at(
            "candidate/memory/fold/__init__.py",
            "lukhas/memory/fold/__init__.py",
            src
        ),
        src
    );
}

#[test]
fn relative_imports_leaving_a_moved_package_become_absolute() {
    let src = "from ..other import h\nfrom ... import bridge\nfrom .core import g\n";
    let want =
        "from candidate.memory.other import h\nfrom candidate import bridge\nfrom .core import g\n";
    assert_eq!(
        fix_at(
            "candidate/memory/fold/helpers.py",
            "lukhas/memory/fold/helpers.py",
            src
        ),
        want
    );
}

#[test]
fn relative_import_in_a_moved_file_to_a_sibling_moved_with_it() {
    // api.py moves to lukhas/bridge/; a sibling that did not move becomes absolute,
    // a module under lukhas/bridge stays relative.
    let src = "from .client import C\n";
    assert_eq!(
        fix_at("candidate/bridge/api.py", "lukhas/bridge/api.py", src),
        "from candidate.bridge.client import C\n"
    );
}

#[test]
fn relative_import_targeting_the_new_package_is_written_relative() {
    // A file moving into lukhas/memory that imported candidate's fold relatively.
    let mut moves = moves();
    moves
        .insert_path("candidate/memory/trace.py", "lukhas/memory/trace.py")
        .unwrap();
    let src = "from .fold import f\nfrom . import fold\n";
    let out = fix_imports(
        src,
        "candidate/memory/trace.py",
        "lukhas/memory/trace.py",
        &moves,
    )
    .unwrap();
    assert_eq!(out.text, src);
    // And from a file that moved elsewhere, relative to the new package.
    let out = fix_imports(
        "from ..memory import fold\n",
        "candidate/bridge/api.py",
        "lukhas/bridge/api.py",
        &moves,
    )
    .unwrap();
    // `..memory` from lukhas/bridge is lukhas.memory: still valid, unchanged.
    assert_eq!(out.text, "from ..memory import fold\n");
    // From a file that did not move, it becomes absolute.
    let out = fix_imports(
        "from ..memory import fold\n",
        "candidate/bridge/api2.py",
        "candidate/bridge/api2.py",
        &moves,
    )
    .unwrap();
    assert_eq!(out.text, "from lukhas.memory import fold\n");
}

#[test]
fn star_import_of_a_moved_module() {
    assert_eq!(
        fix_at(
            "candidate/memory/x.py",
            "candidate/memory/x.py",
            "from .fold import *\n"
        ),
        "from lukhas.memory.fold import *\n"
    );
}

#[test]
fn strings_naming_moved_modules_are_warnings_not_edits() {
    let src = "\
import importlib
from unittest import mock

m = importlib.import_module(\"candidate.memory.fold\")


@mock.patch('candidate.bridge.api.Client')
def test():
    pass
";
    let out = fix_imports(src, "tests/t.py", "tests/t.py", &moves()).unwrap();
    assert_eq!(out.text, src);
    assert!(!out.changed);
    assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);
    assert!(
        out.warnings[0].starts_with("tests/t.py:4:"),
        "{}",
        out.warnings[0]
    );
    assert!(out.warnings[0].contains("lukhas.memory.fold"));
    assert!(
        out.warnings[1].starts_with("tests/t.py:7:"),
        "{}",
        out.warnings[1]
    );
}

#[test]
fn one_line_compound_statement_gets_a_semicolon() {
    assert_eq!(
        fix("if x: from candidate.memory import other, fold\n"),
        "if x: from candidate.memory import other; from lukhas.memory import fold\n"
    );
}

#[test]
fn crlf_files_keep_their_line_endings() {
    assert_eq!(
        fix("import candidate\r\nv = candidate.memory.fold.f()\r\n"),
        "import candidate\r\nimport lukhas.memory.fold\r\nv = lukhas.memory.fold.f()\r\n"
    );
}

#[test]
fn unrelated_files_are_returned_unchanged() {
    let src =
        "import os\n\n# candidate.memory.fold is mentioned in a comment only\nprint(os.sep)\n";
    let out = fix_imports(src, "a.py", "a.py", &moves()).unwrap();
    assert_eq!(out.text, src);
    assert!(!out.changed);
    assert_eq!(out.edits, 0);
}

#[test]
fn rewriting_twice_changes_nothing_more() {
    let src = "import candidate\nfrom candidate.memory import other, fold\nx = candidate.memory.fold.f()\n";
    let once = fix(src);
    assert_ne!(once, src);
    assert_eq!(fix(&once), once);
}

#[test]
fn lost_root_binding_is_a_warning() {
    let src = "import candidate.memory.fold\nprint(candidate.memory.other)\n";
    let out = fix_imports(src, "a.py", "a.py", &moves()).unwrap();
    assert_eq!(
        out.text,
        "import lukhas.memory.fold\nprint(candidate.memory.other)\n"
    );
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(out.warnings[0].contains("`candidate`"));
}

#[test]
fn syntax_errors_name_the_file_and_line() {
    let src = "import candidate.memory.fold\n\ndef broken(:\n    pass\n";
    let err = fix_imports(src, "pkg/bad.py", "pkg/bad.py", &moves()).unwrap_err();
    match &err {
        PythonError::Syntax { file, line, .. } => {
            assert_eq!(file, "pkg/bad.py");
            assert_eq!(*line, 3);
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("pkg/bad.py:3"));
}

#[test]
fn repository_helper_returns_only_changed_files() {
    let files = vec![
        (
            "a.py".to_owned(),
            "import candidate.memory.fold\n".to_owned(),
        ),
        ("b.py".to_owned(), "import os\n".to_owned()),
        (
            "README.md".to_owned(),
            "import candidate.memory.fold\n".to_owned(),
        ),
        (
            "c.py".to_owned(),
            "x = 'candidate.memory.fold'\n".to_owned(),
        ),
    ];
    let (changes, warnings) = fix_repository(&files, &moves()).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].path, "a.py");
    assert_eq!(changes[0].text, "import lukhas.memory.fold\n");
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].starts_with("c.py:1:"));
}

#[test]
fn repository_helper_reports_syntax_errors() {
    let files = vec![(
        "bad.py".to_owned(),
        "import candidate.memory.fold(\n".to_owned(),
    )];
    assert!(matches!(
        fix_repository(&files, &moves()),
        Err(PythonError::Syntax { .. })
    ));
}

#[test]
fn decorators_annotations_and_aliased_relative_imports() {
    let src = "\
import candidate.memory.fold
from .fold import f as g


@candidate.memory.fold.decorate
def h(x: candidate.memory.fold.Kind) -> None:
    return g(x)
";
    let want = "\
import lukhas.memory.fold
from lukhas.memory.fold import f as g


@lukhas.memory.fold.decorate
def h(x: lukhas.memory.fold.Kind) -> None:
    return g(x)
";
    assert_eq!(
        fix_at("candidate/memory/user.py", "candidate/memory/user.py", src),
        want
    );
}

#[test]
fn relative_import_beyond_the_top_package_is_a_warning() {
    let src = "from .... import fold\n";
    let out = fix_imports(
        src,
        "candidate/memory/x.py",
        "candidate/memory/x.py",
        &moves(),
    )
    .unwrap();
    assert_eq!(out.text, src);
    assert_eq!(out.warnings.len(), 1);
    assert!(out.warnings[0].starts_with("candidate/memory/x.py:1:"));
}

#[test]
fn a_moved_file_rewritten_again_in_place_is_stable() {
    // The module step fixes a moved file against its old place; the merge step's
    // repository-wide pass then sees it in place and must leave it alone.
    let src = "from ..other import h\nfrom . import core\nimport candidate.bridge.api\n";
    let first = fix_at(
        "candidate/memory/fold/helpers.py",
        "lukhas/memory/fold/helpers.py",
        src,
    );
    assert_eq!(
        first,
        "from candidate.memory.other import h\nfrom . import core\nimport lukhas.bridge.api\n"
    );
    let files = vec![("lukhas/memory/fold/helpers.py".to_owned(), first)];
    let (changes, warnings) = fix_repository(&files, &moves()).unwrap();
    assert!(changes.is_empty(), "{changes:?}");
    assert!(warnings.is_empty());
}

#[test]
fn many_files_are_rewritten_in_parallel_in_input_order() {
    let files: Vec<(String, String)> = (0..300)
        .map(|i| {
            let text = if i % 3 == 0 {
                format!("import candidate.memory.fold as f{i}\n")
            } else {
                format!("import os  # file {i}\n")
            };
            (format!("pkg/m{i}.py"), text)
        })
        .collect();
    let (changes, _) = fix_repository(&files, &moves()).unwrap();
    assert_eq!(changes.len(), 100);
    for (k, c) in changes.iter().enumerate() {
        assert_eq!(c.path, format!("pkg/m{}.py", 3 * k));
        assert_eq!(c.text, format!("import lukhas.memory.fold as f{}\n", 3 * k));
        assert_eq!(c.edits, 1);
    }
}

#[test]
fn names_moving_to_different_places_get_one_statement_each() {
    let mut moves = moves();
    moves
        .insert_path("candidate/memory/trace.py", "lukhas/tracing/trace.py")
        .unwrap();
    let out = fix_imports(
        "from candidate.memory import fold, trace  # both move\n",
        "a.py",
        "a.py",
        &moves,
    )
    .unwrap();
    assert_eq!(
        out.text,
        "from lukhas.memory import fold  # both move\nfrom lukhas.tracing import trace\n"
    );
    assert_eq!(
        fix("from candidate.memory import (fold, other)\n"),
        "from candidate.memory import (other)\nfrom lukhas.memory import fold\n"
    );
}
