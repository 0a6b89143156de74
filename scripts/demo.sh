#!/usr/bin/env bash
# `make demo`: integrates the 166-module example repository in local mode and runs
# the example's own tests on the integration branch.
#   Environment: DEMO_DIR (default target/demo), DEMO_WORKERS (default: cores),
#   CARGO_TARGET_DIR (default target).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
start=$(date +%s.%N)
target_dir=${CARGO_TARGET_DIR:-$root/target}
demo=${DEMO_DIR:-$root/target/demo}
workers=${DEMO_WORKERS:-$(nproc)}
bin=$target_dir/release/lapidary-integrator

step() { printf '\n==> %s\n' "$*"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

step "building lapidary-integrator (release)"
cargo build --release -p lapidary-integrator
built=$(date +%s.%N)

step "generating the example: 166 modules in 7 levels (seed 42) into $demo"
rm -rf "$demo"
mkdir -p "$demo"
"$bin" example-repo "$demo/example" --modules 166 --levels 7 --seed 42
# The integrator pushes over libgit2, which pushes only to bare repositories.
git clone --quiet --bare "$demo/example/repo" "$demo/origin.git"
(cd "$demo/example/repo" && python3 -m unittest -q 2>&1 | tail -1 | sed 's/^/example tests before integration: /')

step "local mode: $workers workers"
run_start=$(date +%s.%N)
"$bin" local "$demo/example/run.yaml" --repo "$demo/origin.git" --workers "$workers" \
    --workdir "$demo/work" --json > "$demo/summary.json"
run_end=$(date +%s.%N)

step "the example's own tests on the integration branch"
git clone --quiet --branch integrate/example "$demo/origin.git" "$demo/checkout"
(cd "$demo/checkout" && PYTHONDONTWRITEBYTECODE=1 python3 -m unittest -q)

end=$(date +%s.%N)
head=$(git -C "$demo/origin.git" rev-parse integrate/example)
printf '\n'
printf 'integration branch integrate/example at %s\n' "$head"
printf 'times: build %ss, integration of 166 modules %ss, demo total %ss\n' \
    "$(secs "$start" "$built")" "$(secs "$run_start" "$run_end")" "$(secs "$start" "$end")"
printf 'look at the result:\n'
printf '  git -C %s log --graph --oneline integrate/example | head -40\n' "$demo/origin.git"
printf '  ls %s/checkout/lukhas %s/checkout/docs/modules\n' "$demo" "$demo"
printf '  cat %s/summary.json   # the machine-readable summary\n' "$demo"
