#!/usr/bin/env bash
# Build (or reuse) the Kubernetes and etcd binaries used by kind-tests/cluster.sh.
#
#   kind-tests/tools/build-k8s.sh            build what is missing, print the bin dirs
#   kind-tests/tools/build-k8s.sh --print    only print the bin dirs (no build)
#
# Binaries are built from the Go modules pinned in kind-tests/tools/k8s/go.mod and
# kind-tests/tools/etcd/go.mod (the single source of truth for the versions) and
# cached, keyed by version, outside the repository:
#   ${LAPIDARY_CACHE_DIR:-$HOME/.cache/lapidary}/k8s-<version>/bin/{kube-apiserver,...,kubectl}
#   ${LAPIDARY_CACHE_DIR:-$HOME/.cache/lapidary}/etcd-<version>/bin/etcd
# A binary already present in the cache is reused. Build logs and per-component
# timings go to <cache>/k8s-<version>/build.log (and etcd-<version>/build.log).
#
# Environment: LAPIDARY_CACHE_DIR, LAPIDARY_GO_PARALLEL (go build -p, default: nproc),
# and Go's own GOCACHE / GOMODCACHE / GOPROXY.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${LAPIDARY_CACHE_DIR:-$HOME/.cache/lapidary}"

mod_version() { # go.mod path, module path -> required version
  awk -v m="$2" '($1 == "require" && $2 == m) { print $3; exit } ($1 == m && $2 ~ /^v/) { print $2; exit }' "$1"
}

K8S_VERSION="$(mod_version "$here/k8s/go.mod" k8s.io/kubernetes)"
ETCD_VERSION="$(mod_version "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)"
K8S_BIN="$cache/k8s-$K8S_VERSION/bin"
ETCD_BIN="$cache/etcd-$ETCD_VERSION/bin"
K8S_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

print_dirs() {
  echo "K8S_VERSION=$K8S_VERSION"
  echo "ETCD_VERSION=$ETCD_VERSION"
  echo "K8S_BIN=$K8S_BIN"
  echo "ETCD_BIN=$ETCD_BIN"
}

if [[ "${1:-}" == "--print" ]]; then
  print_dirs
  exit 0
fi

command -v go >/dev/null || { echo "build-k8s: go is required to build Kubernetes ($K8S_VERSION)" >&2; exit 1; }

mkdir -p "$K8S_BIN" "$ETCD_BIN"
# One build at a time per cache directory.
exec 9>"$cache/.build.lock"
flock 9

jobs="${LAPIDARY_GO_PARALLEL:-$(nproc)}"
export CGO_ENABLED=0

# The commit a module version was tagged from, as the module proxy recorded it.
origin_hash() {
  (cd "$1" && go mod download -json "$2@$3" 2>/dev/null) | sed -n 's/^[[:space:]]*"Hash": "\([0-9a-f]*\)".*/\1/p' | head -n1
}

build_one() { # module dir, package, output file, ldflags, log
  local dir=$1 pkg=$2 out=$3 ldflags=$4 log=$5 start end
  start=$(date +%s)
  echo "build-k8s: building $(basename "$out") ($pkg) ..." >&2
  if ! (cd "$dir" && go build -mod=readonly -trimpath -p "$jobs" -ldflags "$ldflags" -o "$out.tmp" "$pkg") >>"$log" 2>&1; then
    echo "build-k8s: building $pkg failed; see $log" >&2
    tail -n 30 "$log" >&2
    return 1
  fi
  mv -f "$out.tmp" "$out"
  end=$(date +%s)
  echo "$(date -u +%FT%TZ) built $(basename "$out") in $((end - start))s" | tee -a "$log" >&2
}

missing=()
for c in "${K8S_COMPONENTS[@]}"; do
  [[ -x "$K8S_BIN/$c" ]] || missing+=("$c")
done
if ((${#missing[@]})); then
  log="$cache/k8s-$K8S_VERSION/build.log"
  echo "build-k8s: Kubernetes $K8S_VERSION: building ${missing[*]} (log: $log)" >&2
  t0=$(date +%s)
  (cd "$here/k8s" && go mod download -x) >>"$log" 2>&1 || { echo "build-k8s: go mod download failed; see $log" >&2; exit 1; }
  echo "$(date -u +%FT%TZ) modules downloaded in $(($(date +%s) - t0))s" | tee -a "$log" >&2
  commit="$(origin_hash "$here/k8s" k8s.io/kubernetes "$K8S_VERSION")"
  ver="${K8S_VERSION#v}"
  major="${ver%%.*}"
  minor="${ver#*.}"
  minor="${minor%%.*}"
  build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  ldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitCommit=${commit:-unknown} -X $p.gitTreeState=clean -X $p.buildDate=$build_date"
  done
  for c in "${missing[@]}"; do
    build_one "$here/k8s" "k8s.io/kubernetes/cmd/$c" "$K8S_BIN/$c" "$ldflags" "$log"
  done
  echo "$(date -u +%FT%TZ) Kubernetes total $(($(date +%s) - t0))s" | tee -a "$log" >&2
fi

if [[ ! -x "$ETCD_BIN/etcd" ]]; then
  log="$cache/etcd-$ETCD_VERSION/build.log"
  echo "build-k8s: etcd $ETCD_VERSION: building (log: $log)" >&2
  t0=$(date +%s)
  (cd "$here/etcd" && go mod download -x) >>"$log" 2>&1 || { echo "build-k8s: go mod download failed; see $log" >&2; exit 1; }
  commit="$(origin_hash "$here/etcd" go.etcd.io/etcd/server/v3 "$ETCD_VERSION")"
  commit="${commit:0:9}"
  build_one "$here/etcd" go.etcd.io/etcd/server/v3 "$ETCD_BIN/etcd" \
    "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${commit:-unknown}" "$log"
  echo "$(date -u +%FT%TZ) etcd total $(($(date +%s) - t0))s" | tee -a "$log" >&2
fi

print_dirs
