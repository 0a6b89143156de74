#!/usr/bin/env bash
# `make bench`: local mode against the baseline (bench/baseline.py: a ThreadPoolExecutor
# over the git CLI, as the seed document proposes) on the 166-module example, same
# workers, same machine, same run. Prints figures; asserts nothing.
#   Environment: BENCH_DIR (default target/bench), BENCH_WORKERS (default: cores),
#   BENCH_MODULES (166), BENCH_LEVELS (7), CARGO_TARGET_DIR (default target).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
dir=${BENCH_DIR:-$root/target/bench}
workers=${BENCH_WORKERS:-$(nproc)}
modules=${BENCH_MODULES:-166}
levels=${BENCH_LEVELS:-7}
bin=$target_dir/release/lapidary-integrator

cargo build --release -p lapidary-integrator >&2
rm -rf "$dir"
mkdir -p "$dir"
"$bin" example-repo "$dir/example" --modules "$modules" --levels "$levels" --seed 42 >&2
git clone --quiet --bare "$dir/example/repo" "$dir/lapidary.git"
git clone --quiet --bare "$dir/example/repo" "$dir/baseline.git"

now() { date +%s.%N; }
# timed OUT CMD...: runs CMD, writing its user and sys CPU seconds to OUT.
timed() {
    local out=$1; shift
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f "%U %S" -o "$out" "$@"
    else
        echo "nan nan" > "$out"; "$@"
    fi
}

# CPU seconds (user + sys, children included) are printed too: on a shared machine
# the wall clock moves with everyone else's load.
t0=$(now)
timed "$dir/lapidary.cpu" \
    "$bin" local "$dir/example/run.yaml" --repo "$dir/lapidary.git" --workers "$workers" \
    --workdir "$dir/lapidary-work" --json > "$dir/lapidary.json" 2> "$dir/lapidary.log"
t1=$(now)
timed "$dir/baseline.cpu" \
    python3 bench/baseline.py "$dir/example/run.yaml" "$dir/baseline.git" "$dir/baseline-work" \
    --workers "$workers" > "$dir/baseline.json" 2> "$dir/baseline.log"
t2=$(now)

# Do both results work? Run the example's own tests on each integration branch.
check() {
    local repo=$1 branch=$2 out=$3
    git clone --quiet --branch "$branch" "$repo" "$out"
    if (cd "$out" && PYTHONDONTWRITEBYTECODE=1 python3 -m unittest -q > ../"$(basename "$out")".tests 2>&1); then
        echo "tests pass"
    else
        echo "tests FAIL ($(tail -1 "$dir/$(basename "$out").tests"))"
    fi
}
ours_tests=$(check "$dir/lapidary.git" integrate/example "$dir/lapidary-checkout")
base_tests=$(check "$dir/baseline.git" integrate/baseline "$dir/baseline-checkout")

python3 - "$dir" "$t0" "$t1" "$t2" "$workers" "$ours_tests" "$base_tests" <<'PY'
import json, sys
d, t0, t1, t2, workers, ours_tests, base_tests = sys.argv[1:]
t0, t1, t2 = float(t0), float(t1), float(t2)
ours = json.load(open(d + "/lapidary.json"))
base = json.load(open(d + "/baseline.json"))
n = ours["total"]
ours_s, base_s = t1 - t0, t2 - t1
print(f"modules: {n}, levels: {len(ours['levels'])}, workers: {workers}")
print(f"lapidary local : {ours_s:7.2f}s  {n / ours_s:7.1f} modules/s  "
      f"({ours['succeeded']} integrated; {ours_tests})")
print(f"baseline (git) : {base_s:7.2f}s  {n / base_s:7.1f} modules/s  "
      f"({base['modules'] - base['failed'] - base['conflicts']} integrated; {base_tests})")
cpu = lambda name: sum(map(float, open(f"{d}/{name}.cpu").read().split()))
ours_cpu, base_cpu = cpu("lapidary"), cpu("baseline")
print(f"ratio          : {base_s / ours_s:7.2f}x wall clock")
print(f"cpu seconds    : lapidary {ours_cpu:.2f}s, baseline {base_cpu:.2f}s "
      f"(ratio {base_cpu / ours_cpu:.2f}x)")
mods = sum(l["modulesMs"] for l in ours["levels"]) / 1000
merges = sum(l["mergeMs"] for l in ours["levels"]) / 1000
per = sorted(m["ms"] for m in ours["modules"] if m["outcome"] == "succeeded")
print(f"lapidary time  : levels' modules {mods:.2f}s, merges {merges:.2f}s, "
      f"prepare and the rest {ours_s - mods - merges:.2f}s; "
      f"per module median {per[len(per) // 2]} ms, max {per[-1]} ms (one process each)")
PY
# Where a module's time goes, from the result documents' step timings.
python3 - "$dir/lapidary-work/results" <<'PY'
import glob, json, sys, collections
steps = collections.defaultdict(list)
for path in glob.glob(sys.argv[1] + "/*.json"):
    doc = json.load(open(path))
    if doc.get("role") != "module":
        continue
    for s in doc.get("steps", []):
        steps[s["name"]].append(s["ms"])
if steps:
    parts = ", ".join(f"{k} {sum(v) / len(v):.1f}" for k, v in steps.items())
    print(f"module steps   : mean ms per module: {parts}")
for path in sorted(glob.glob(sys.argv[1] + "/merge-*.json")):
    doc = json.load(open(path))
    parts = ", ".join(f"{s['name']} {s['ms']}" for s in doc.get("steps", []))
    print(f"merge level {doc.get('level')}  : ms: {parts}")
PY
