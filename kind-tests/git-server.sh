#!/usr/bin/env bash
# Git servers that the test cluster's pods can reach.
#
#   kind-tests/git-server.sh start DIR   serve the repositories under DIR (bare repositories
#                                        are best: pushes to a checked-out branch are refused)
#   kind-tests/git-server.sh stop        stop both servers (safe when none runs)
#   kind-tests/git-server.sh env         print export lines (URLs, token) for scripts
#   kind-tests/git-server.sh status
#
# Two servers, both serving DIR, both accepting pushes:
#   git daemon   git://ADDR:9418/REPO            anonymous clone/fetch/push (--export-all,
#                                                --enable=receive-pack, --base-path=DIR)
#   smart HTTP   http://ADDR:18080/REPO          `git http-backend` behind
#                                                kind-tests/tools/git-http.py; every request
#                                                needs the token (reads included):
#       basic auth, any user name, password = token   (lapidary sends user x-access-token):
#           git clone http://x-access-token:TOKEN@ADDR:18080/REPO
#       or  Authorization: Bearer TOKEN
#           git -c http.extraHeader="Authorization: Bearer TOKEN" clone http://ADDR:18080/REPO
#     The token is $LAPIDARY_GIT_TOKEN if set when starting, otherwise a random one;
#     `env` prints it.
# ADDR is 127.0.0.1 for the host and, for pods, the address of the cluster's pod bridge
# (10.88.0.1 for the local cluster of cluster.sh; the gateway of docker's "kind" network
# for a kind cluster). Both servers listen on both addresses.
#
# Environment: LAPIDARY_CLUSTER_DIR (state lives in $LAPIDARY_CLUSTER_DIR/git-server),
# LAPIDARY_GIT_PORT (9418), LAPIDARY_GIT_HTTP_PORT (18080), LAPIDARY_GIT_TOKEN.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cluster_dir="${LAPIDARY_CLUSTER_DIR:-/tmp/lapidary-cluster}"
state="$cluster_dir/git-server"
git_port="${LAPIDARY_GIT_PORT:-9418}"
http_port="${LAPIDARY_GIT_HTTP_PORT:-18080}"
bridge_ip="${LAPIDARY_BRIDGE_IP:-10.88.0.1}"

die() { echo "git-server: $*" >&2; exit 1; }

# The address pods reach the host on, or nothing.
pod_address() {
  if [[ -f "$cluster_dir/mode" && "$(cat "$cluster_dir/mode")" == kind ]]; then
    docker network inspect kind -f '{{range .IPAM.Config}}{{if .Gateway}}{{.Gateway}} {{end}}{{end}}' 2>/dev/null |
      tr ' ' '\n' | grep -E '^[0-9.]+$' | head -n1
  elif ip -4 -o addr show 2>/dev/null | grep " inet $bridge_ip/" >/dev/null; then
    echo "$bridge_ip"
  fi
}

alive() { # pid file, expected command word
  local pid argv=()
  [[ -f "$1" ]] || return 1
  pid="$(cat "$1")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  mapfile -d '' -t argv 2>/dev/null <"/proc/$pid/cmdline" || return 1
  [[ " ${argv[*]} " == *"$2"* ]]
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {
  local i
  for ((i = 0; i < 100; i++)); do
    port_open "$1" "$2" && return 0
    sleep 0.1
  done
  return 1
}

stop_pid() { # pid file, expected command word
  local pid i
  if alive "$1" "$2"; then
    pid="$(cat "$1")"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

print_env() {
  [[ -f "$state/root" ]] || die "not running (start it with: $0 start DIR)"
  local addr
  addr="$(cat "$state/address")"
  echo "export LAPIDARY_GIT_ROOT=$(cat "$state/root")"
  echo "export LAPIDARY_GIT_URL=git://$addr:$git_port"
  echo "export LAPIDARY_GIT_HTTP_URL=http://$addr:$http_port"
  echo "export LAPIDARY_GIT_LOCAL_URL=git://127.0.0.1:$git_port"
  echo "export LAPIDARY_GIT_LOCAL_HTTP_URL=http://127.0.0.1:$http_port"
  echo "export LAPIDARY_GIT_TOKEN=$(cat "$state/token")"
}

cmd_start() {
  local root="${1:-}" addr listen token
  [[ -n "$root" ]] || die "usage: $0 start DIR"
  [[ -d "$root" ]] || die "$root is not a directory"
  root="$(cd "$root" && pwd)"
  if alive "$state/daemon.pid" "git-daemon" && alive "$state/http.pid" "git-http.py"; then
    if [[ "$(cat "$state/root")" == "$root" ]]; then
      echo "git-server: already serving $root" >&2
      print_env
      return 0
    fi
    die "already serving $(cat "$state/root"); stop it first"
  fi
  cmd_stop 2>/dev/null
  mkdir -p "$state"
  addr="$(pod_address)"
  listen=(127.0.0.1)
  if [[ -n "$addr" ]]; then
    listen+=("$addr")
  else
    echo "git-server: no pod bridge address found (cluster not up?): serving on 127.0.0.1 only" >&2
    addr=127.0.0.1
  fi
  token="${LAPIDARY_GIT_TOKEN:-$(openssl rand -hex 20)}"
  (umask 077 && printf '%s\n' "$token" >"$state/token")
  echo "$root" >"$state/root"
  echo "$addr" >"$state/address"

  local daemon_args=(--reuseaddr --export-all --enable=receive-pack --informative-errors
    --verbose "--base-path=$root" "--port=$git_port")
  local a http_args=()
  for a in "${listen[@]}"; do
    daemon_args+=("--listen=$a")
    http_args+=(--listen "$a")
  done
  setsid "$(git --exec-path)/git-daemon" "${daemon_args[@]}" "$root" >"$state/daemon.log" 2>&1 </dev/null &
  echo $! >"$state/daemon.pid"
  setsid python3 "$here/tools/git-http.py" --root "$root" --token-file "$state/token" \
    --port "$http_port" "${http_args[@]}" >"$state/http.log" 2>&1 </dev/null &
  echo $! >"$state/http.pid"
  for a in "${listen[@]}"; do
    wait_port "$a" "$git_port" || { cat "$state/daemon.log" >&2; die "git daemon did not listen on $a:$git_port (log: $state/daemon.log)"; }
    wait_port "$a" "$http_port" || { cat "$state/http.log" >&2; die "git http server did not listen on $a:$http_port (log: $state/http.log)"; }
  done
  echo "git-server: serving $root: git://$addr:$git_port/  http://$addr:$http_port/ (token in $state/token; logs in $state)" >&2
  print_env
}

cmd_stop() {
  stop_pid "$state/daemon.pid" "git-daemon"
  stop_pid "$state/http.pid" "git-http.py"
  echo "git-server: stopped" >&2
}

cmd_status() {
  local ok=0
  if alive "$state/daemon.pid" "git-daemon"; then echo "git daemon: running (pid $(cat "$state/daemon.pid"))"; else echo "git daemon: stopped"; ok=1; fi
  if alive "$state/http.pid" "git-http.py"; then echo "git http:   running (pid $(cat "$state/http.pid"))"; else echo "git http:   stopped"; ok=1; fi
  if ((ok == 0)); then print_env; fi
  return "$ok"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  env) print_env ;;
  status) cmd_status ;;
  *) echo "usage: $0 start DIR | stop | env | status" >&2; exit 2 ;;
esac
