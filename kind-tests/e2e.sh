#!/usr/bin/env bash
# lapidary end to end: images, a real cluster, the chart, the scenarios of
# kind-tests/tests/scenarios.rs, then the same small run with the plain manifests.
#
#   kind-tests/e2e.sh            (root: the local cluster and the image builds need it)
#
# Phases (each one timed; the table is printed at the end):
#   images      scripts/images.sh -> target/images/lapidary-{operator,integrator}.tar
#   tests-build cargo test --no-run for the test crate (before the cluster, to keep it short)
#   cluster     kind-tests/cluster.sh up, load both images
#   git         kind-tests/git-server.sh start over a temporary directory
#   helm        helm install lapidary charts/lapidary -n lapidary-system --create-namespace,
#               wait for the operator Deployment
#   tests-helm  cargo test -p lapidary-kind-tests -- --test-threads=2
#   kustomize   helm uninstall; kubectl apply -k deploy/; wait for the operator
#   tests-kust  the small-run scenario again, against that install
# The cluster is ALWAYS taken down at the end (trap); the exit status is the tests'.
#
# Environment:
#   CARGO_TARGET_DIR              where images.sh builds (default <repo>/target); the
#                                 host-built lapidary-integrator is taken from its release/
#   LAPIDARY_E2E_TARGET_DIR       target dir of the test crate (default: CARGO_TARGET_DIR)
#   LAPIDARY_E2E_REUSE_IMAGES=1   skip scripts/images.sh when both archives exist
#   LAPIDARY_INTEGRATOR_BIN       host integrator binary (default <target>/release/...)
#   LAPIDARY_E2E_FILTER           only the scenarios whose name contains this (helm phase)
#   LAPIDARY_E2E_SKIP_KUSTOMIZE=1 skip the kustomize phase
# shellcheck disable=SC2317  # cleanup, timings and operator_logs run from the EXIT trap
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
here="$repo/kind-tests"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
tests_target="${LAPIDARY_E2E_TARGET_DIR:-$target_dir}"
images="${LAPIDARY_IMAGES_DIR:-$repo/target/images}"
OP_NS=lapidary-system
OP_DEPLOY=lapidary-operator

log() { echo "e2e: $*" >&2; }

# ---------------------------------------------------------------- phase timing
phase_names=()
phase_secs=()
phase_name=""
phase_start=0
phase() { # NAME: ends the current phase, starts NAME ("" ends only)
  local now
  now="$(date +%s.%N)"
  if [[ -n "$phase_name" ]]; then
    phase_names+=("$phase_name")
    phase_secs+=("$(awk -v a="$phase_start" -v b="$now" 'BEGIN { printf "%.1f", b - a }')")
    log "phase $phase_name done in ${phase_secs[-1]}s"
  fi
  phase_name="$1"
  phase_start="$now"
  [[ -n "$phase_name" ]] && log "phase $phase_name"
  return 0
}
timings() {
  local i total=0
  echo "e2e: timings" >&2
  for i in "${!phase_names[@]}"; do
    printf 'e2e:   %-12s %8ss\n' "${phase_names[$i]}" "${phase_secs[$i]}" >&2
    total="$(awk -v a="$total" -v b="${phase_secs[$i]}" 'BEGIN { printf "%.1f", a + b }')"
  done
  printf 'e2e:   %-12s %8ss\n' total "$total" >&2
}

# ---------------------------------------------------------------- cleanup
work="$(mktemp -d /tmp/lapidary-e2e.XXXXXX)"
status=1
operator_logs() {
  [[ -n "${KUBECONFIG:-}" ]] || return 0
  log "operator pods and logs:"
  kubectl -n "$OP_NS" get pods -o wide >&2 2>&1 || true
  local pod
  for pod in $(kubectl -n "$OP_NS" get pods -o name 2>/dev/null); do
    echo "----- $pod" >&2
    kubectl -n "$OP_NS" logs "$pod" --all-containers --tail=300 >&2 2>&1 || true
  done
}
cleanup() {
  local code=$?
  [[ -n "$phase_name" ]] && phase ""
  if ((status != 0 || code != 0)); then
    operator_logs
  fi
  log "taking the cluster down"
  "$here/cluster.sh" down 2>&1 | tail -n 5 >&2 || true
  if ((status == 0)); then
    rm -rf "$work"
  else
    log "kept the work directory $work (git repositories, example repositories)"
  fi
  timings
  if ((status == 0 && code != 0)); then status=$code; fi
  log "exit $status"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { log "ERROR: $*"; status=1; exit 1; }

# ---------------------------------------------------------------- images
phase images
if [[ "${LAPIDARY_E2E_REUSE_IMAGES:-}" == 1 && -f "$images/lapidary-operator.tar" && -f "$images/lapidary-integrator.tar" ]]; then
  log "reusing $images/lapidary-{operator,integrator}.tar"
else
  "$repo/scripts/images.sh" || fail "scripts/images.sh failed"
fi
integrator_bin="${LAPIDARY_INTEGRATOR_BIN:-$target_dir/release/lapidary-integrator}"
[[ -x "$integrator_bin" ]] || fail "no host-built integrator at $integrator_bin"

phase tests-build
(cd "$repo" && CARGO_TARGET_DIR="$tests_target" cargo test -p lapidary-kind-tests --no-run --quiet) ||
  fail "the test crate does not build"

# ---------------------------------------------------------------- cluster
phase cluster
"$here/cluster.sh" up || fail "cluster.sh up failed"
eval "$("$here/cluster.sh" env)" || fail "cluster.sh env failed"
export KUBECONFIG
for tar in "$images/lapidary-operator.tar" "$images/lapidary-integrator.tar"; do
  "$here/cluster.sh" load "$tar" || fail "cannot load $tar"
done

phase git
mkdir -p "$work/git" "$work/scenarios"
git_env="$("$here/git-server.sh" start "$work/git")" || fail "git-server.sh start failed"
eval "$git_env"
export LAPIDARY_GIT_ROOT LAPIDARY_GIT_URL LAPIDARY_GIT_HTTP_URL LAPIDARY_GIT_LOCAL_URL LAPIDARY_GIT_LOCAL_HTTP_URL LAPIDARY_GIT_TOKEN

# ---------------------------------------------------------------- helm
phase helm
HELM="$("$repo/scripts/helm.sh")" || fail "cannot get helm"
"$HELM" upgrade --install lapidary "$repo/charts/lapidary" -n "$OP_NS" --create-namespace \
  --set image.pullPolicy=IfNotPresent || fail "helm install failed"
kubectl -n "$OP_NS" rollout status "deployment/$OP_DEPLOY" --timeout=180s ||
  fail "the operator Deployment did not become available"

run_tests() { # install-mode cargo-test-args...
  local mode=$1
  shift
  (cd "$repo" && env LAPIDARY_E2E_INSTALL="$mode" LAPIDARY_INTEGRATOR_BIN="$integrator_bin" \
    LAPIDARY_E2E_WORK="$work/scenarios" LAPIDARY_OPERATOR_NAMESPACE="$OP_NS" \
    LAPIDARY_OPERATOR_DEPLOYMENT="$OP_DEPLOY" KUBECTL="$(command -v kubectl)" \
    CARGO_TARGET_DIR="$tests_target" \
    cargo test -p lapidary-kind-tests --quiet "$@")
}

phase tests-helm
filter=()
[[ -n "${LAPIDARY_E2E_FILTER:-}" ]] && filter=("$LAPIDARY_E2E_FILTER")
run_tests helm "${filter[@]}" -- --test-threads=2 --show-output
helm_status=$?
log "scenarios with the Helm install: exit $helm_status"

# ---------------------------------------------------------------- kustomize
kust_status=0
if [[ "${LAPIDARY_E2E_SKIP_KUSTOMIZE:-}" != 1 ]]; then
  phase kustomize
  "$HELM" uninstall lapidary -n "$OP_NS" --wait || fail "helm uninstall failed"
  kubectl -n "$OP_NS" wait --for=delete "deployment/$OP_DEPLOY" --timeout=120s >/dev/null 2>&1 || true
  kubectl apply -k "$repo/deploy/" || fail "kubectl apply -k deploy/ failed"
  kubectl -n "$OP_NS" rollout status "deployment/$OP_DEPLOY" --timeout=180s ||
    fail "the operator Deployment (kustomize) did not become available"

  phase tests-kust
  run_tests kustomize installed_operator -- --test-threads=2 --show-output
  kust_status=$?
  log "small run with the kustomize install: exit $kust_status"
fi

status=$((helm_status != 0 || kust_status != 0))
exit "$status"
