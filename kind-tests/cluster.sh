#!/usr/bin/env bash
# A real single-node Kubernetes cluster for lapidary's end-to-end tests.
#
#   kind-tests/cluster.sh up             start (idempotent: a healthy cluster is left alone)
#   kind-tests/cluster.sh down           stop everything and clean up (idempotent)
#   kind-tests/cluster.sh load IMAGE.tar import an image archive (docker-archive or OCI)
#   kind-tests/cluster.sh env            print `export KUBECONFIG=...` (and PATH for kubectl)
#   kind-tests/cluster.sh status         show component health; exit 0 when healthy
#   kind-tests/cluster.sh build          only build/refresh the cached binaries
#
# Two ways to get the cluster, chosen by LAPIDARY_CLUSTER_MODE (auto|kind|local, default auto):
#   kind   when a Docker engine answers and `kind` is on PATH: `kind create cluster`,
#          `load` = `kind load image-archive`.
#   local  otherwise: upstream components as local processes (root needed):
#          etcd, kube-apiserver (Node+RBAC authorization, client certificates, service-account
#          signing keys), kube-controller-manager (all default controllers), kube-scheduler,
#          containerd + runc with a bridge CNI network, kubelet (cgroupfs driver), kube-proxy
#          (iptables mode). Binaries are built from Go modules by tools/build-k8s.sh and cached
#          in ${LAPIDARY_CACHE_DIR:-$HOME/.cache/lapidary}; the pause image is built from
#          tools/pause/pause.c. Images are loaded with `ctr -n k8s.io images import`.
#
# Local network (only addresses on this machine are used):
#   pod bridge     lapidary0, 10.88.0.0/16, host side 10.88.0.1 (node IP, API server address,
#                  git servers for pods: see git-server.sh)
#   services       10.96.0.0/16, `kubernetes` Service 10.96.0.1:443
#   API server     https://10.88.0.1:6443     etcd  http://127.0.0.1:12379
# State, logs and the admin kubeconfig live in ${LAPIDARY_CLUSTER_DIR:-/tmp/lapidary-cluster}
# (logs in logs/, kept by `down`; kubeconfig at kubeconfig).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${LAPIDARY_CLUSTER_DIR:-/tmp/lapidary-cluster}"
CACHE="${LAPIDARY_CACHE_DIR:-$HOME/.cache/lapidary}"
KIND_NAME="${LAPIDARY_KIND_NAME:-lapidary}"
NODE=lapidary-node
BRIDGE=lapidary0
BRIDGE_IP=10.88.0.1
POD_CIDR=10.88.0.0/16
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
API_PORT=6443
ETCD_PORT=12379
ETCD_PEER_PORT=12380
CGROUP_NAME=lapidary
PAUSE_IMAGE=lapidary.local/pause:1
TIMEOUT="${LAPIDARY_UP_TIMEOUT:-180}"

LOGS="$DIR/logs"
RUN="$DIR/run"
PKI="$DIR/pki"
CTRD_SOCK="$DIR/containerd/containerd.sock"
KUBECONFIG_FILE="$DIR/kubeconfig"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy)

log() { echo "cluster: $*" >&2; }
die() { echo "cluster: ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------- mode selection

detect_mode() {
  local want="${LAPIDARY_CLUSTER_MODE:-auto}"
  case "$want" in
    kind | local) echo "$want" ;;
    auto)
      if command -v kind >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        echo kind
      else
        echo local
      fi
      ;;
    *) die "LAPIDARY_CLUSTER_MODE must be auto, kind or local (got $want)" ;;
  esac
}

# The mode of the cluster that exists now (recorded by `up`), else the detected one.
current_mode() {
  if [[ -f "$DIR/mode" ]]; then cat "$DIR/mode"; else detect_mode; fi
}

# ---------------------------------------------------------------- binaries

bin_dirs() { # [--print]: build what is missing (unless --print), set K8S_BIN etc.
  local line out
  out="$(LAPIDARY_CACHE_DIR="$CACHE" "$here/tools/build-k8s.sh" "$@")"
  while IFS= read -r line; do
    case "$line" in
      K8S_VERSION=*) K8S_VERSION="${line#*=}" ;;
      ETCD_VERSION=*) ETCD_VERSION="${line#*=}" ;;
      K8S_BIN=*) K8S_BIN="${line#*=}" ;;
      ETCD_BIN=*) ETCD_BIN="${line#*=}" ;;
    esac
  done <<<"$out"
}

kubectl_cmd() {
  if [[ -n "${K8S_BIN:-}" && -x "$K8S_BIN/kubectl" ]]; then
    "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"
  else
    kubectl --kubeconfig "$KUBECONFIG_FILE" "$@"
  fi
}

ctr_cmd() { ctr --address "$CTRD_SOCK" "$@"; }

ensure_packages() {
  local missing=() pair
  for pair in containerd:containerd runc:runc iptables:iptables conntrack:conntrack \
    openssl:openssl curl:curl gcc:gcc python3:python3 git:git ip:iproute2; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
    missing+=(containernetworking-plugins)
  if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "missing packages: ${missing[*]}"
    log "installing ${missing[*]} (apt-get)"
    apt-get update -q >"$LOGS/apt.log" 2>&1 || die "apt-get update failed (see $LOGS/apt.log)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
      >>"$LOGS/apt.log" 2>&1 || die "apt-get install failed (see $LOGS/apt.log)"
  fi
}

# ---------------------------------------------------------------- processes

pid_of() { # component -> pid if it runs (and is the right program), else nothing
  local f="$RUN/$1.pid" pid
  [[ -f "$f" ]] || return 0
  pid="$(cat "$f")"
  [[ -n "$pid" ]] && running "$pid" || return 0
  local argv=()
  mapfile -d '' -t argv 2>/dev/null <"/proc/$pid/cmdline" || return 0
  if [[ "${argv[0]:-}" == "$1" || "${argv[0]:-}" == */"$1" ]]; then
    echo "$pid"
  fi
}

start_proc() { # component, command...
  local name=$1
  shift
  log "starting $name (log: $LOGS/$name.log)"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  local pid=$! i
  echo "$pid" >"$RUN/$name.pid"
  # Until setsid has exec'd the program, /proc/PID/cmdline still names bash and
  # pid_of would report the component as gone; wait (bounded) for the exec.
  for ((i = 0; i < 100; i++)); do
    [[ -n "$(pid_of "$name")" ]] && return 0
    running "$pid" || return 0
    sleep 0.1
  done
}

# A process that exists and is not a zombie (our daemons' parent is init, which may
# reap them a little later).
running() {
  local stat
  stat="$(cat 2>/dev/null "/proc/$1/stat")" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != Z ]]
}

stop_proc() { # component [timeout seconds]
  local name=$1 t=${2:-20} pid i
  pid="$(pid_of "$name")"
  if [[ -n "$pid" ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < t * 10; i++)); do
      running "$pid" || break
      sleep 0.1
    done
    if running "$pid"; then
      log "$name (pid $pid) ignored SIGTERM; killing"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$RUN/$name.pid"
}

fail_up() {
  echo "cluster: ERROR: $*" >&2
  echo "cluster: logs are in $LOGS:" >&2
  local f
  for f in "$LOGS"/*.log; do
    [[ -f "$f" ]] || continue
    echo "  $f" >&2
  done
  exit 1
}

# wait_for DESCRIPTION COMPONENT-OR-- COMMAND... : poll COMMAND until it succeeds.
wait_for() {
  local what=$1 comp=$2 deadline
  shift 2
  deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if [[ "$comp" != - && -z "$(pid_of "$comp")" ]]; then
      tail -n 25 "$LOGS/$comp.log" >&2 || true
      fail_up "$comp exited while waiting for $what (log: $LOGS/$comp.log)"
    fi
    if ((SECONDS >= deadline)); then
      [[ "$comp" != - ]] && tail -n 25 "$LOGS/$comp.log" >&2
      fail_up "timed out after ${TIMEOUT}s waiting for $what"
    fi
    sleep 0.5
  done
  log "ready: $what"
}

# ---------------------------------------------------------------- certificates, kubeconfigs

new_cert() { # name, subject, extendedKeyUsage, [subjectAltName]
  local name=$1 subj=$2 eku=$3 san=${4:-}
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [[ -n "$san" ]] && echo "subjectAltName=$san"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -days 30 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

make_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -keyout "$PKI/ca.key" \
    -subj "/CN=lapidary-test-ca" -days 30 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/ca.crt" 2>/dev/null
  new_cert apiserver "/CN=kube-apiserver" serverAuth \
    "IP:$BRIDGE_IP,IP:$KUBERNETES_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  new_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  new_cert admin "/O=system:masters/CN=lapidary-admin" clientAuth
  new_cert controller-manager "/CN=system:kube-controller-manager" clientAuth
  new_cert scheduler "/CN=system:kube-scheduler" clientAuth
  new_cert kube-proxy "/CN=system:kube-proxy" clientAuth
  new_cert kubelet-client "/O=system:nodes/CN=system:node:$NODE" clientAuth
  new_cert kubelet-serving "/O=system:nodes/CN=system:node:$NODE" serverAuth "IP:$BRIDGE_IP,DNS:$NODE"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

b64() { base64 -w0 <"$1"; }

write_kubeconfig() { # file, user name, cert name
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: lapidary
  cluster:
    server: https://$BRIDGE_IP:$API_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$PKI/$3.crt")
    client-key-data: $(b64 "$PKI/$3.key")
contexts:
- name: lapidary
  context: {cluster: lapidary, user: $2}
current-context: lapidary
EOF
  chmod 600 "$1"
}

# ---------------------------------------------------------------- node plumbing

cgroup_hierarchies() { # mounted cgroup hierarchies (v1 controllers and, in hybrid mode, the unified one)
  awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts
}

make_cgroups() {
  local h
  for h in $(cgroup_hierarchies); do
    mkdir -p "$h/$CGROUP_NAME"
    if [[ -f "$h/cpuset.cpus" ]]; then
      cat "$h/cpuset.cpus" >"$h/$CGROUP_NAME/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h/$CGROUP_NAME/cpuset.mems"
    fi
  done
}

remove_cgroups() {
  local h d
  for h in $(cgroup_hierarchies); do
    [[ -d "$h/$CGROUP_NAME" ]] || continue
    # Kill what is left inside, then remove the tree bottom-up.
    while IFS= read -r d; do
      xargs -r kill -KILL <"$d/cgroup.procs" 2>/dev/null || true
    done < <(find "$h/$CGROUP_NAME" -depth -type d)
    while IFS= read -r d; do
      rmdir "$d" 2>/dev/null || true
    done < <(find "$h/$CGROUP_NAME" -depth -type d)
  done
}

# Kernel settings that the kubelet (setupKernelTunables) and the pod network change:
# recorded before `up` changes them, put back by `down`.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables)

save_sysctls() {
  local k v
  [[ -f "$RUN/sysctl.orig" ]] && return 0
  for k in "${SYSCTLS[@]}"; do
    v="$(sysctl -n "$k" 2>/dev/null)" && echo "$k=$v"
  done >"$RUN/sysctl.orig.tmp"
  mv "$RUN/sysctl.orig.tmp" "$RUN/sysctl.orig"
}

restore_sysctls() {
  local kv
  [[ -f "$RUN/sysctl.orig" ]] || return 0
  while IFS= read -r kv; do
    sysctl -qw "$kv" 2>/dev/null || log "could not restore $kv"
  done <"$RUN/sysctl.orig"
  rm -f "$RUN/sysctl.orig"
}

make_bridge() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$BRIDGE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  sysctl -qw net.ipv4.ip_forward=1
  if [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] || modprobe br_netfilter 2>/dev/null; then
    sysctl -qw net.bridge.bridge-nf-call-iptables=1
  fi
}

write_configs() {
  mkdir -p "$DIR/cni/net.d" "$DIR/containerd" "$DIR/kubelet" "$DIR/pod-logs" "$DIR/config"
  cat >"$DIR/cni/net.d/10-lapidary.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "lapidary",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$BRIDGE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$DIR/cni/ipam"
      }
    }
  ]
}
EOF
  cat >"$DIR/config/containerd.toml" <<EOF
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CTRD_SOCK"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  netns_mounts_under_state_dir = true
  # Never ask for an OOM score below containerd's own: lowering it needs CAP_SYS_RESOURCE,
  # which sandboxed machines (this one included) may not grant; runc then fails to start
  # every pod sandbox ("failed to update /proc/self/oom_score_adj: Permission denied").
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$DIR/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DIR/cni/net.d"
EOF
  cat >"$DIR/config/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $BRIDGE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$CTRD_SOCK
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_NAME
cgroupsPerQOS: true
failSwapOn: false
podLogsDir: $DIR/pod-logs
volumePluginDir: $DIR/kubelet-plugins
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
  imagefs.inodesFree: 1%
maxPods: 110
registerNode: true
rotateCertificates: false
serverTLSBootstrap: false
EOF
  cat >"$DIR/config/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $DIR/config/kube-proxy.kubeconfig
mode: iptables
bindAddress: $BRIDGE_IP
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$POD_CIDR"]
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
  write_kubeconfig "$KUBECONFIG_FILE" admin admin
  write_kubeconfig "$DIR/config/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
  write_kubeconfig "$DIR/config/scheduler.kubeconfig" system:kube-scheduler scheduler
  write_kubeconfig "$DIR/config/kubelet.kubeconfig" "system:node:$NODE" kubelet-client
  write_kubeconfig "$DIR/config/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
}

# The pause image: a static C program, packed by tools/mkimage.py, cached by source hash.
pause_image() {
  local sum dir
  sum="$(cat "$here/tools/pause/pause.c" "$here/tools/mkimage.py" | sha256sum | cut -c1-12)"
  dir="$CACHE/pause-$sum"
  if [[ ! -f "$dir/pause.tar" ]]; then
    mkdir -p "$dir"
    gcc -static -Os -s -o "$dir/pause" "$here/tools/pause/pause.c"
    python3 "$here/tools/mkimage.py" --name "$PAUSE_IMAGE" --out "$dir/pause.tar" \
      --entrypoint /pause --user 65535 --add "$dir/pause:/pause" >/dev/null
  fi
  echo "$dir/pause.tar"
}

# ---------------------------------------------------------------- health checks

curl_api() { curl -fsS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://$BRIDGE_IP:$API_PORT$1"; }
etcd_healthy() { curl -fsS --max-time 5 "http://127.0.0.1:$ETCD_PORT/health" | grep '"health":"true"' >/dev/null; }
api_ready() { [[ "$(curl_api /readyz)" == ok ]]; }
healthz() { [[ "$(curl -fsSk --max-time 5 "$1")" == ok ]]; }
http_ok() { curl -fsS --max-time 5 -o /dev/null "$1"; }
node_ready() {
  [[ "$(kubectl_cmd get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}
default_sa() { kubectl_cmd -n default get serviceaccount default && kubectl_cmd -n default get configmap kube-root-ca.crt; }
kubernetes_endpoint() {
  [[ "$(kubectl_cmd -n default get endpointslice -l kubernetes.io/service-name=kubernetes -o jsonpath='{.items[0].endpoints[0].addresses[0]}')" == "$BRIDGE_IP" ]]
}
service_rules() { iptables -w -t nat -S KUBE-SERVICES 2>/dev/null | grep -- "-d $KUBERNETES_SVC_IP/32" >/dev/null; }

local_healthy() {
  local c
  for c in "${COMPONENTS[@]}"; do
    [[ -n "$(pid_of "$c")" ]] || return 1
  done
  api_ready && node_ready && healthz https://127.0.0.1:10257/healthz && healthz https://127.0.0.1:10259/healthz &&
    http_ok http://127.0.0.1:10256/healthz
}

# ---------------------------------------------------------------- local mode

local_up() {
  [[ $EUID -eq 0 ]] || die "the local cluster needs root (network, mounts, cgroups)"
  bin_dirs --print
  if [[ -f "$DIR/mode" ]] && local_healthy 2>/dev/null; then
    log "already up and healthy (Kubernetes $K8S_VERSION); $KUBECONFIG_FILE"
    return 0
  fi
  if [[ -f "$DIR/mode" || -d "$DIR/containerd" ]]; then
    log "a previous cluster is partly up or unhealthy: tearing it down first"
    local_down
  fi
  local t0=$SECONDS
  mkdir -p "$LOGS" "$RUN"
  rm -f "$LOGS"/*.log
  ensure_packages
  bin_dirs
  local pause_tar
  pause_tar="$(pause_image)"
  echo local >"$DIR/mode"

  save_sysctls
  make_bridge
  make_pki
  write_configs

  start_proc etcd "$ETCD_BIN/etcd" --name lapidary --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "lapidary=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
    --unsafe-no-fsync --log-level warn
  wait_for "etcd" etcd etcd_healthy

  start_proc kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$BRIDGE_IP" --advertise-address "$BRIDGE_IP" --secure-port "$API_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false --cert-dir "$DIR/apiserver-certs" --v 1
  wait_for "kube-apiserver /readyz" kube-apiserver api_ready

  start_proc kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$DIR/config/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$DIR/config/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$DIR/config/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --controllers '*' --use-service-account-credentials \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --flex-volume-plugin-dir "$DIR/kubelet-plugins" \
    --cert-dir "$DIR/controller-manager-certs" --profiling=false --v 1
  start_proc kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$DIR/config/scheduler.kubeconfig" \
    --authentication-kubeconfig "$DIR/config/scheduler.kubeconfig" \
    --authorization-kubeconfig "$DIR/config/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --cert-dir "$DIR/scheduler-certs" --profiling=false --v 1

  make_cgroups
  start_proc containerd containerd --config "$DIR/config/containerd.toml"
  wait_for "containerd" containerd ctr_cmd version
  ctr_cmd -n k8s.io images import "$pause_tar" >/dev/null
  log "imported pause image $PAUSE_IMAGE"

  start_proc kubelet "$K8S_BIN/kubelet" --config "$DIR/config/kubelet.yaml" \
    --kubeconfig "$DIR/config/kubelet.kubeconfig" --root-dir "$DIR/kubelet" \
    --hostname-override "$NODE" --node-ip "$BRIDGE_IP" --v 1
  wait_for "kubelet /healthz" kubelet healthz http://127.0.0.1:10248/healthz
  start_proc kube-proxy "$K8S_BIN/kube-proxy" --config "$DIR/config/kube-proxy.yaml" --v 1
  wait_for "kube-controller-manager /healthz" kube-controller-manager healthz https://127.0.0.1:10257/healthz
  wait_for "kube-scheduler /healthz" kube-scheduler healthz https://127.0.0.1:10259/healthz
  wait_for "kube-proxy /healthz" kube-proxy http_ok http://127.0.0.1:10256/healthz
  wait_for "node $NODE Ready" kubelet node_ready
  wait_for "kubernetes Service endpoint $BRIDGE_IP" kube-apiserver kubernetes_endpoint
  wait_for "kube-proxy rules for $KUBERNETES_SVC_IP" kube-proxy service_rules
  wait_for "ServiceAccount default/default and ConfigMap kube-root-ca.crt" kube-controller-manager default_sa
  log "up in $((SECONDS - t0))s: Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, $(containerd --version | awk '{print "containerd", $3}'), $(runc --version | head -n1)"
  log "run: eval \"\$($0 env)\""
}

# Processes whose command line mentions our containerd socket (its shims).
our_shims() {
  local p a argv
  for p in /proc/[0-9]*; do
    argv=()
    mapfile -d '' -t argv 2>/dev/null <"$p/cmdline" || continue
    for a in "${argv[@]}"; do
      if [[ "$a" == "$CTRD_SOCK" ]]; then
        echo "${p#/proc/}"
        break
      fi
    done
  done
}

unmount_under() { # unmount every mount point below $1, deepest first
  local m
  while IFS= read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done < <(awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r -u)
}

delete_kube_chains() { # what kube-proxy --cleanup left (e.g. KUBE-FIREWALL and its jumps)
  local family saved
  for family in iptables ip6tables; do
    command -v "$family-save" >/dev/null || continue
    saved="$("$family-save" 2>/dev/null)" || continue
    if [[ "$saved" == *KUBE-* ]]; then
      grep -v -- 'KUBE-' <<<"$saved" | "$family-restore" -w 5 || log "could not remove the KUBE- rules of $family"
    fi
  done
}

local_down() {
  [[ $EUID -eq 0 ]] || die "the local cluster needs root"
  mkdir -p "$RUN"
  if [[ -x "$here/git-server.sh" ]]; then
    LAPIDARY_CLUSTER_DIR="$DIR" "$here/git-server.sh" stop >/dev/null 2>&1 || true
  fi
  local c pid
  for c in kube-proxy kube-scheduler kube-controller-manager kubelet kube-apiserver etcd; do
    stop_proc "$c"
  done
  # Containers: kill every process in the pods' cgroups, then let containerd clean up
  # its tasks while it still runs, then stop it and any shim left.
  remove_cgroups
  if [[ -n "$(pid_of containerd)" ]]; then
    local ns id
    for ns in $(ctr_cmd namespaces ls -q 2>/dev/null); do
      for id in $(ctr_cmd -n "$ns" tasks ls -q 2>/dev/null); do
        ctr_cmd -n "$ns" tasks delete -f "$id" >/dev/null 2>&1 || true
      done
    done
  fi
  stop_proc containerd
  for pid in $(our_shims); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  remove_cgroups
  # Directories containerd's shims make outside the state dir, and sockets of shims that
  # were killed (no process listens on them any more).
  local sock listening
  if [[ -d /run/containerd/s ]]; then
    listening="$(ss -xlH 2>/dev/null || true)"
    for sock in /run/containerd/s/*; do
      [[ -S "$sock" && "$listening" != *"$sock"* ]] && rm -f "$sock"
    done
  fi
  rmdir /run/containerd/s /run/containerd/fifo /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd 2>/dev/null || true
  # Everything mounted in the cluster dir: pod volumes, container root filesystems,
  # sandbox /dev/shm and the pods' network namespaces (netns_mounts_under_state_dir).
  unmount_under "$DIR"
  # Network: kube-proxy's rules, the pods' veths and the bridge.
  local proxy_bin=""
  if bin_dirs --print 2>/dev/null && [[ -x "$K8S_BIN/kube-proxy" ]]; then proxy_bin="$K8S_BIN/kube-proxy"; fi
  if [[ -n "$proxy_bin" ]]; then
    "$proxy_bin" --cleanup >>"$LOGS/kube-proxy-cleanup.log" 2>&1 || true
  fi
  delete_kube_chains
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    local veth
    for veth in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
      ip link delete "$veth" 2>/dev/null || true
    done
    ip link delete "$BRIDGE" 2>/dev/null || true
  fi
  restore_sysctls
  # State, keeping the logs.
  local entry
  for entry in "$DIR"/* "$DIR"/.[!.]*; do
    [[ -e "$entry" && "$entry" != "$LOGS" ]] || continue
    rm -rf "$entry" 2>/dev/null || { unmount_under "$entry"; rm -rf "$entry" || log "could not remove $entry"; }
  done
  log "down: nothing of the local cluster runs now (logs kept in $LOGS)"
}

local_status() {
  local c pid ok=0
  bin_dirs --print
  echo "mode: local   dir: $DIR   Kubernetes $K8S_VERSION   etcd $ETCD_VERSION"
  for c in "${COMPONENTS[@]}"; do
    pid="$(pid_of "$c")"
    if [[ -n "$pid" ]]; then printf '  %-24s running (pid %s)\n' "$c" "$pid"; else printf '  %-24s not running\n' "$c"; ok=1; fi
  done
  if [[ -f "$PKI/admin.crt" ]] && api_ready 2>/dev/null; then echo "  apiserver /readyz        ok"; else echo "  apiserver /readyz        not ready"; ok=1; fi
  if [[ -f "$KUBECONFIG_FILE" ]] && node_ready 2>/dev/null; then echo "  node $NODE       Ready"; else echo "  node $NODE       not Ready"; ok=1; fi
  return "$ok"
}

local_load() {
  local tar=$1 out
  [[ -n "$(pid_of containerd)" ]] || die "the cluster is not up"
  out="$(ctr_cmd -n k8s.io images import --all-platforms "$tar" 2>&1)" || die "import of $tar failed: $out"
  echo "$out" | sed -n 's/^unpacking \([^ ]*\) .*/\1/p' | while IFS= read -r img; do log "loaded $img"; done
}

# ---------------------------------------------------------------- kind mode

kind_up() {
  mkdir -p "$DIR" "$LOGS"
  echo kind >"$DIR/mode"
  if kind get clusters 2>/dev/null | grep -x "$KIND_NAME" >/dev/null; then
    kind get kubeconfig --name "$KIND_NAME" >"$KUBECONFIG_FILE"
    if kubectl --kubeconfig "$KUBECONFIG_FILE" get --raw /readyz >/dev/null 2>&1; then
      log "kind cluster $KIND_NAME already up and healthy"
      return 0
    fi
  else
    local args=(create cluster --name "$KIND_NAME" --kubeconfig "$KUBECONFIG_FILE" --wait "${TIMEOUT}s")
    [[ -n "${LAPIDARY_KIND_NODE_IMAGE:-}" ]] && args+=(--image "$LAPIDARY_KIND_NODE_IMAGE")
    kind "${args[@]}" 2>&1 | tee "$LOGS/kind.log" >&2 || fail_up "kind create cluster failed"
  fi
  local deadline=$((SECONDS + TIMEOUT))
  until kubectl --kubeconfig "$KUBECONFIG_FILE" -n default get serviceaccount default >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail_up "timed out waiting for the default ServiceAccount"
    sleep 0.5
  done
  kubectl --kubeconfig "$KUBECONFIG_FILE" wait --for=condition=Ready node --all --timeout "${TIMEOUT}s" >&2
  log "kind cluster $KIND_NAME up"
}

kind_down() {
  if command -v kind >/dev/null 2>&1 && kind get clusters 2>/dev/null | grep -x "$KIND_NAME" >/dev/null; then
    kind delete cluster --name "$KIND_NAME" >&2
  fi
  LAPIDARY_CLUSTER_DIR="$DIR" "$here/git-server.sh" stop >/dev/null 2>&1 || true
  rm -rf "$DIR/mode" "$KUBECONFIG_FILE" "$DIR/git-server"
  log "kind cluster $KIND_NAME deleted"
}

# ---------------------------------------------------------------- main

cmd="${1:-}"
case "$cmd" in
  up)
    mode="$(detect_mode)"
    if [[ -f "$DIR/mode" && "$(cat "$DIR/mode")" != "$mode" ]]; then
      die "a $(cat "$DIR/mode") cluster exists in $DIR; run '$0 down' first"
    fi
    mkdir -p "$DIR"
    if [[ "$mode" == kind ]]; then kind_up; else local_up; fi
    ;;
  down)
    if [[ "$(current_mode)" == kind ]]; then kind_down; else local_down; fi
    ;;
  load)
    [[ -f "${2:-}" ]] || die "usage: $0 load IMAGE.tar"
    if [[ "$(current_mode)" == kind ]]; then
      kind load image-archive "$2" --name "$KIND_NAME" >&2
    else
      local_load "$2"
    fi
    ;;
  env)
    [[ -f "$KUBECONFIG_FILE" ]] || die "no cluster (run: $0 up)"
    echo "export KUBECONFIG=$KUBECONFIG_FILE"
    if [[ "$(current_mode)" == local ]]; then
      bin_dirs --print
      echo "export PATH=$K8S_BIN:\$PATH"
    fi
    ;;
  status)
    if [[ "$(current_mode)" == kind ]]; then
      kind get clusters 2>/dev/null | grep -x "$KIND_NAME" >/dev/null && kubectl --kubeconfig "$KUBECONFIG_FILE" get nodes
    else
      local_status
    fi
    ;;
  build)
    bin_dirs
    pause_image >/dev/null
    log "binaries in $K8S_BIN and $ETCD_BIN"
    ;;
  *)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
