#!/usr/bin/env python3
"""Baseline for the benchmark: the seed document's approach, done well.

A ThreadPoolExecutor runs one task per module of a level; each task calls the git
CLI: a worktree on a new branch at the level's base, `git mv`, regex import fixing,
schema/test/docs files written by plain Python, `git add -A`, `git commit`. Then the
level's branches are merged one by one with `git merge --no-ff` on the integration
branch, references to the level's modules are rewritten with regexes across the
repository and committed. At the end the integration branch is pushed.

Usage: baseline.py RUN.yaml REPO_URL WORKDIR --workers N
Prints one JSON line: {"modules": M, "seconds": S, "failed": F, "conflicts": C}.
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import time

ENV = dict(
    os.environ,
    GIT_AUTHOR_NAME="baseline",
    GIT_AUTHOR_EMAIL="baseline@example.com",
    GIT_COMMITTER_NAME="baseline",
    GIT_COMMITTER_EMAIL="baseline@example.com",
)


def git(*args, cwd):
    return subprocess.run(
        ["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True, text=True
    ).stdout.strip()


def read_run(path):
    """A tiny reader for the example's run.yaml (flow-style module entries)."""
    modules, current = [], None
    for raw in open(path, encoding="utf-8"):
        line = raw.strip()
        if line.startswith("- name:"):
            current = {"name": line.split(":", 1)[1].strip(), "deps": []}
            modules.append(current)
        elif current is not None and line.startswith("path:"):
            current["path"] = line.split(":", 1)[1].strip()
        elif current is not None and line.startswith("target:"):
            current["target"] = line.split(":", 1)[1].strip()
        elif current is not None and line.startswith("dependsOn:"):
            inner = line.split(":", 1)[1].strip().strip("[]")
            current["deps"] = [d.strip() for d in inner.split(",") if d.strip()]
    return modules


def levels_of(modules):
    by_name = {m["name"]: m for m in modules}
    level = {}

    def depth(name):
        if name not in level:
            deps = by_name[name]["deps"]
            level[name] = 0 if not deps else 1 + max(depth(d) for d in deps)
        return level[name]

    out = {}
    for m in modules:
        out.setdefault(depth(m["name"]), []).append(m)
    return [out[k] for k in sorted(out)]


def dotted(path):
    p = path[:-3] if path.endswith(".py") else path
    return p.replace("/", ".")


def rewrite(text, moves):
    for old, new in moves:
        text = re.sub(r"\b" + re.escape(old) + r"\b", new, text)
    return text


def fix_tree(root, paths, moves):
    changed = 0
    for path in paths:
        full = os.path.join(root, path)
        with open(full, encoding="utf-8") as f:
            text = f.read()
        new = rewrite(text, moves)
        if new != text:
            with open(full, "w", encoding="utf-8") as f:
                f.write(new)
            changed += 1
    return changed


def py_files(root, sub=""):
    start = os.path.join(root, sub)
    if os.path.isfile(start):
        return [sub] if sub.endswith(".py") else []
    out = []
    for d, dirs, files in os.walk(start):
        dirs[:] = [x for x in dirs if x != ".git"]
        out += [os.path.relpath(os.path.join(d, f), root) for f in files if f.endswith(".py")]
    return out


def integrate(clone, workdir, module, base, moves):
    wt = os.path.join(workdir, "wt", module["name"])
    branch = "baseline-modules/" + module["name"]
    git("worktree", "add", "-q", "-f", "-B", branch, wt, base, cwd=clone)
    os.makedirs(os.path.dirname(os.path.join(wt, module["target"])), exist_ok=True)
    git("mv", module["path"], module["target"], cwd=wt)
    files = py_files(wt, module["target"])
    fix_tree(wt, files, moves)
    names = []
    for path in files:
        with open(os.path.join(wt, path), encoding="utf-8") as f:
            names += re.findall(r"^(?:def|class) ([A-Za-z]\w*)", f.read(), re.M)
    name = module["name"]
    os.makedirs(os.path.join(wt, "schemas", "modules"), exist_ok=True)
    with open(os.path.join(wt, "schemas", "modules", name + ".json"), "w") as f:
        json.dump({"name": name, "oldPath": module["path"], "newPath": module["target"],
                   "publicSymbols": names, "dependencies": module["deps"]}, f, indent=2)
    os.makedirs(os.path.join(wt, "tests", "lapidary"), exist_ok=True)
    init = os.path.join(wt, "tests", "lapidary", "__init__.py")
    if not os.path.exists(init):
        open(init, "w").close()
    with open(os.path.join(wt, "tests", "lapidary", "test_%s.py" % name), "w") as f:
        f.write("import importlib, unittest\n\n\nclass T(unittest.TestCase):\n"
                "    def test_import(self):\n        importlib.import_module(%r)\n"
                % dotted(module["target"]))
    os.makedirs(os.path.join(wt, "docs", "modules"), exist_ok=True)
    with open(os.path.join(wt, "docs", "modules", name + ".md"), "w") as f:
        f.write("# %s\n\n" % name + "".join("- `%s`\n" % n for n in names))
    git("add", "-A", cwd=wt)
    git("commit", "-q", "-m", "integrate %s" % name, cwd=wt)
    return branch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("repo")
    ap.add_argument("workdir")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    args = ap.parse_args()
    started = time.monotonic()
    modules = read_run(args.run)
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    clone = os.path.join(args.workdir, "clone")
    git("clone", "-q", args.repo, clone, cwd=args.workdir)
    git("checkout", "-q", "-b", "integrate/baseline", cwd=clone)
    done_moves = []
    failed = conflicts = 0
    for level in levels_of(modules):
        base = git("rev-parse", "HEAD", cwd=clone)
        level_moves = [(dotted(m["path"]), dotted(m["target"])) for m in level]
        moves = sorted(done_moves + level_moves, key=lambda mv: -len(mv[0]))
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.workers) as pool:
            futures = {pool.submit(integrate, clone, args.workdir, m, base, moves): m for m in level}
            branches = []
            for future in futures:
                try:
                    branches.append(future.result())
                except subprocess.CalledProcessError as e:
                    failed += 1
                    print("failed:", futures[future]["name"], e.stderr, file=sys.stderr)
        for branch in branches:
            try:
                git("merge", "-q", "--no-ff", "--no-edit", branch, cwd=clone)
            except subprocess.CalledProcessError:
                git("merge", "--abort", cwd=clone)
                conflicts += 1
        if fix_tree(clone, py_files(clone), sorted(level_moves, key=lambda mv: -len(mv[0]))):
            git("commit", "-q", "-am", "rewrite references", cwd=clone)
        done_moves += level_moves
    git("push", "-q", "-f", "origin", "integrate/baseline", cwd=clone)
    print(json.dumps({"modules": len(modules), "seconds": time.monotonic() - started,
                      "failed": failed, "conflicts": conflicts}))


if __name__ == "__main__":
    main()
