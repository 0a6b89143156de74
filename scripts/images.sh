#!/usr/bin/env bash
# Build lapidary's two container images on a machine with no registry access.
#
#   scripts/images.sh [operator] [integrator]     (default: both)
#
# Writes docker-archive tarballs (load them with `docker load`, `ctr images import`,
# `kind load image-archive` or `kind-tests/cluster.sh load`):
#   target/images/lapidary-operator.tar     lapidary/operator:<version>
#   target/images/lapidary-integrator.tar   lapidary/integrator:<version>
#
# How: the release binaries are built on the host (`cargo build --release -p ...`), then
# packed FROM scratch with buildah together with exactly what they need at run time, the
# way distroless/cc is made: the shared libraries `ldd` lists and the dynamic loader (a
# static glibc binary crashes on name lookups: glibc loads NSS at run time), nsswitch.conf,
# /etc/hosts, /etc/passwd and /etc/group with the non-root user 65532, Debian's CA bundle
# and an empty /tmp. Each image is then unpacked and run in a chroot as UID 65532 (`--help`;
# user and `localhost` lookups) before the script succeeds.
# With registry access, operator/Dockerfile and integrator-image/Dockerfile build the same
# images from distroless/cc.
#
# Environment:
#   LAPIDARY_OPERATOR_BIN, LAPIDARY_INTEGRATOR_BIN  use these binaries, build nothing
#   CARGO_TARGET_DIR      cargo's target dir (default: <repo>/target)
#   LAPIDARY_IMAGES_DIR   output dir (default: <repo>/target/images)
#   LAPIDARY_IMAGE_TAG    image tag (default: the workspace version)
# Needs root (buildah with the vfs driver, chroot); installs buildah and ca-certificates
# with apt-get when they are missing.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
out="${LAPIDARY_IMAGES_DIR:-$repo/target/images}"
version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")"
tag="${LAPIDARY_IMAGE_TAG:-$version}"
source_url="$(sed -n '/^\[workspace.package\]/,/^\[/s/^repository *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")"
license="$(sed -n '/^\[workspace.package\]/,/^\[/s/^license *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")"
revision="$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
# Image creation time = time of the last commit, so the same commit gives the same image.
created="$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)"
UID_NONROOT=65532

log() { echo "images: $*" >&2; }
die() { echo "images: ERROR: $*" >&2; exit 1; }

# buildah keeps its own store (vfs: works on any filesystem, needs no fuse-overlayfs).
BUILDAH_ROOT="$out/.buildah/storage"
BUILDAH_RUNROOT="/run/lapidary-buildah"
bah() { buildah --root "$BUILDAH_ROOT" --runroot "$BUILDAH_RUNROOT" --storage-driver vfs "$@"; }

ensure_tools() {
  local missing=()
  command -v buildah >/dev/null || missing+=(buildah)
  [[ -s /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
  command -v getent >/dev/null || missing+=(libc-bin)
  ((${#missing[@]} == 0)) && return
  [[ $EUID -eq 0 ]] || die "missing ${missing[*]}; run as root or install them"
  log "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
    die "apt-get install ${missing[*]} failed"
}

# Copy FILE's content (symlinks resolved) to the same path under ROOT.
copy_in() { # root file
  install -D -m "$(stat -L -c %a "$2")" "$2" "$1$2"
}

# The shared libraries and loader BIN needs, by the paths the loader looks them up under.
copy_libs() { # root bin
  local root=$1 bin=$2 deps
  deps="$(ldd "$bin" 2>&1)" || die "ldd $bin failed: $deps"
  if grep -q "not found" <<<"$deps"; then die "$bin needs libraries that are missing: $deps"; fi
  if grep -q "statically linked" <<<"$deps"; then return; fi
  local lib
  while read -r lib; do
    copy_in "$root" "$lib"
  done < <(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$deps")
}

stage_rootfs() { # root name bin home
  local root=$1 name=$2 bin=$3 home=$4
  rm -rf "$root"
  mkdir -p "$root"/{etc,tmp,usr/local/bin,usr/lib/ssl,etc/ssl/certs}
  install -m 0755 "$bin" "$root/usr/local/bin/$name"
  copy_libs "$root" "$bin"
  # glibc >= 2.34 has files and dns lookups built in; the stubs cost nothing and keep
  # older-style NSS configurations working.
  local nss
  for nss in /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libnss_dns.so.2; do
    [[ -e "$nss" ]] && copy_in "$root" "$nss"
  done
  chmod 1777 "$root/tmp"
  cat >"$root/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:$UID_NONROOT:$UID_NONROOT:nonroot:$home:/sbin/nologin
PASSWD
  cat >"$root/etc/group" <<GROUP
root:x:0:
nogroup:x:65534:
nonroot:x:$UID_NONROOT:
GROUP
  cat >"$root/etc/nsswitch.conf" <<'NSS'
passwd: files
group:  files
shadow: files
hosts:  files dns
networks: files
protocols: files
services: files
NSS
  # Kubernetes mounts its own /etc/hosts and /etc/resolv.conf; these serve other runtimes.
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  # OpenSSL's compiled-in defaults (OPENSSLDIR=/usr/lib/ssl) point here.
  ln -s /etc/ssl/certs/ca-certificates.crt "$root/usr/lib/ssl/cert.pem"
  ln -s /etc/ssl/certs "$root/usr/lib/ssl/certs"
  mkdir -p "$root$home"
  chown "$UID_NONROOT:$UID_NONROOT" "$root$home"
  chmod 0755 "$root$home"
}

build_image() { # name image bin home workdir description
  local name=$1 image=$2 bin=$3 home=$4 workdir=$5 description=$6
  local work="$out/.work/$name" archive="$out/$name.tar"
  stage_rootfs "$work/rootfs" "$name" "$bin" "$home"

  local ctr mnt
  # Working containers left by an interrupted run of this script (its own store).
  bah rm --all >/dev/null 2>&1 || true
  ctr="$(bah from --quiet scratch)"
  mnt="$(bah mount "$ctr")"
  cp -a "$work/rootfs/." "$mnt/"
  bah umount "$ctr" >/dev/null
  bah config \
    --entrypoint "[\"/usr/local/bin/$name\"]" --cmd '' \
    --user "$UID_NONROOT:$UID_NONROOT" --workingdir "$workdir" \
    --env PATH=/usr/local/bin:/usr/bin:/bin \
    --env HOME="$home" \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --label org.opencontainers.image.title="$name" \
    --label org.opencontainers.image.description="$description" \
    --label org.opencontainers.image.version="$version" \
    --label org.opencontainers.image.revision="$revision" \
    --label org.opencontainers.image.source="$source_url" \
    --label org.opencontainers.image.licenses="$license" \
    --label org.opencontainers.image.base.name="scratch" \
    "$ctr"
  bah commit --quiet --rm --format docker --timestamp "$created" "$ctr" "docker.io/$image" >/dev/null
  rm -f "$archive"
  bah push --quiet "docker.io/$image" "docker-archive:$archive:$image"
  bah rmi "docker.io/$image" >/dev/null
  rm -rf "$work"
  log "wrote $archive ($image, $(du -h "$archive" | cut -f1))"
}

# Unpack ARCHIVE's layers into a fresh directory and print it.
unpack() { # archive dir
  local archive=$1 dir=$2 layer
  rm -rf "$dir"
  mkdir -p "$dir/archive" "$dir/rootfs"
  tar -xf "$archive" -C "$dir/archive"
  for layer in $(jq -r '.[0].Layers[]' "$dir/archive/manifest.json"); do
    tar -xf "$dir/archive/$layer" -C "$dir/rootfs"
  done
}

# Run a command inside ROOTFS as the image's user with only the image's environment.
in_image() { # rootfs home cmd...
  local rootfs=$1 home=$2
  shift 2
  local chroot_bin
  chroot_bin="$(command -v chroot)"
  env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$home" \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    "$chroot_bin" --userspec="$UID_NONROOT:$UID_NONROOT" "$rootfs" "$@"
}

verify_image() { # name image home
  local name=$1 image=$2 home=$3 archive="$out/$1.tar" dir="$out/.verify/$1"
  unpack "$archive" "$dir"
  local rootfs="$dir/rootfs" repo_tags config
  repo_tags="$(jq -r '.[0].RepoTags[]?' "$dir/archive/manifest.json")"
  grep -qx "$image" <<<"$repo_tags" || grep -qx "docker.io/$image" <<<"$repo_tags" ||
    die "$archive is tagged '$repo_tags', not $image"
  config="$dir/archive/$(jq -r '.[0].Config' "$dir/archive/manifest.json")"
  [[ "$(jq -r '.config.User' "$config")" == "$UID_NONROOT:$UID_NONROOT" ]] ||
    die "$image does not run as $UID_NONROOT"

  in_image "$rootfs" "$home" "$name" --help >"$dir/help.txt" 2>&1 ||
    die "'$name --help' failed in $image: $(cat "$dir/help.txt")"
  # Name and user lookups go through the image's own libc, nsswitch.conf and /etc files;
  # getent (libc only, same libc as the image's) is put in for the check and not shipped.
  install -m 0755 /usr/bin/getent "$rootfs/getent"
  local hosts passwd
  hosts="$(in_image "$rootfs" "$home" /getent ahosts localhost 2>&1)" ||
    die "localhost does not resolve in $image: $hosts"
  grep -q "127.0.0.1" <<<"$hosts" || die "localhost resolves to '$hosts' in $image"
  passwd="$(in_image "$rootfs" "$home" /getent passwd "$UID_NONROOT" 2>&1)" ||
    die "user $UID_NONROOT unknown in $image"
  [[ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ]] || die "no CA bundle in $image"
  [[ -d "$rootfs/tmp" && "$(stat -c %a "$rootfs/tmp")" == 1777 ]] || die "no /tmp in $image"
  [[ "$(stat -c %u "$rootfs$home")" == "$UID_NONROOT" ]] || die "$home not owned by $UID_NONROOT"
  [[ "$(stat -c %u "$rootfs/")" == 0 && "$(stat -c %u:%a "$rootfs/usr/local/bin/$name")" == 0:755 ]] ||
    die "/ or the binary not owned by root in $image"
  if [[ $name == lapidary-operator ]]; then
    in_image "$rootfs" "$home" "$name" crd 2>&1 | grep -q "^kind: CustomResourceDefinition" ||
      die "'lapidary-operator crd' does not print the CRD in $image"
  fi
  rm -rf "$dir"
  log "verified $image: '$name --help' runs as $UID_NONROOT; localhost -> $(awk 'NR==1{print $1}' <<<"$hosts"); $(cut -d: -f1,3,6 <<<"$passwd")"
}

main() {
  [[ $EUID -eq 0 ]] || die "run as root (buildah vfs storage and chroot checks)"
  local want=("$@")
  ((${#want[@]})) || want=(operator integrator)
  local w
  for w in "${want[@]}"; do
    [[ $w == operator || $w == integrator ]] || die "unknown image '$w' (operator, integrator)"
  done
  ensure_tools
  mkdir -p "$out"

  local op_bin="${LAPIDARY_OPERATOR_BIN:-}" in_bin="${LAPIDARY_INTEGRATOR_BIN:-}" pkgs=()
  for w in "${want[@]}"; do
    if [[ $w == operator && -z $op_bin ]]; then pkgs+=(-p lapidary-operator); op_bin="$target_dir/release/lapidary-operator"; fi
    if [[ $w == integrator && -z $in_bin ]]; then pkgs+=(-p lapidary-integrator); in_bin="$target_dir/release/lapidary-integrator"; fi
  done
  if ((${#pkgs[@]})); then
    log "cargo build --release ${pkgs[*]}"
    (cd "$repo" && cargo build --release --quiet "${pkgs[@]}")
  fi

  for w in "${want[@]}"; do
    case $w in
      operator)
        [[ -x $op_bin ]] || die "no operator binary at $op_bin"
        build_image lapidary-operator "lapidary/operator:$tag" "$op_bin" /home/nonroot / \
          "lapidary's Kubernetes operator: runs IntegrationRuns as Indexed Jobs"
        verify_image lapidary-operator "lapidary/operator:$tag" /home/nonroot
        ;;
      integrator)
        [[ -x $in_bin ]] || die "no integrator binary at $in_bin"
        build_image lapidary-integrator "lapidary/integrator:$tag" "$in_bin" /work /work \
          "lapidary's integrator: per-module steps, merges and the prepare step"
        verify_image lapidary-integrator "lapidary/integrator:$tag" /work
        ;;
    esac
  done
  rmdir "$out/.work" "$out/.verify" 2>/dev/null || true
}

main "$@"
