#!/usr/bin/env bash
# Smoke test of the test cluster: does it do what lapidary needs?
#
#   kind-tests/cluster.sh up && kind-tests/smoke.sh
#
# 1. builds a tiny FROM-scratch image (kind-tests/smoke, static Go) and loads it
#    with `cluster.sh load` as lapidary/smoke:1 (imagePullPolicy IfNotPresent);
# 2. a Job whose pod (non-root) calls the API server through the `kubernetes` Service
#    (KUBERNETES_SERVICE_HOST/PORT) with its service-account token, reads the ref
#    advertisement of the git daemon, and checks the token-protected git HTTP server
#    (token from a Secret);
# 3. an Indexed Job (completions 3, parallelism 3) completes and each pod's termination
#    message is readable via .status.containerStatuses[0].state.terminated.message;
# 4. deleting that Job garbage-collects its pods (owner references + GC controller);
# 5. deleting the namespace finishes (namespace controller).
# The git servers of git-server.sh are used if running, otherwise started on a
# temporary directory and stopped at the end.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NS=lapidary-smoke
IMAGE=lapidary/smoke:1
TIMEOUT="${LAPIDARY_SMOKE_TIMEOUT:-180}"
passed=0
failed=0
t0=$SECONDS

log() { echo "smoke: $*" >&2; }
ok() { passed=$((passed + 1)); log "PASS: $*"; }
bad() { failed=$((failed + 1)); log "FAIL: $*"; }

eval "$("$here/cluster.sh" env)"
"$here/cluster.sh" status >/dev/null || { "$here/cluster.sh" status >&2 || true; log "the cluster is not healthy (run: kind-tests/cluster.sh up)"; exit 1; }

work="$(mktemp -d)"
started_git=0
cleanup() {
  kubectl delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  if ((started_git)); then "$here/git-server.sh" stop >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# ---- image
log "building $IMAGE"
(cd "$here/smoke" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$work/smoke" .)
python3 "$here/tools/mkimage.py" --name "$IMAGE" --out "$work/smoke.tar" --entrypoint /smoke --add "$work/smoke:/smoke" >&2
"$here/cluster.sh" load "$work/smoke.tar"

# ---- git servers and a repository
if git_env="$("$here/git-server.sh" env 2>/dev/null)" && "$here/git-server.sh" status >/dev/null 2>&1; then
  eval "$git_env"
else
  mkdir -p "$work/git"
  git_env="$("$here/git-server.sh" start "$work/git")"
  eval "$git_env"
  started_git=1
fi
repo="lapidary-smoke-$$.git"
git init -q --bare "$LAPIDARY_GIT_ROOT/$repo"
git -C "$work" init -q src
git -C "$work/src" -c user.name=smoke -c user.email=smoke@localhost commit -q --allow-empty -m smoke
git -C "$work/src" push -q "$LAPIDARY_GIT_LOCAL_URL/$repo" HEAD:refs/heads/main
git_hostport="${LAPIDARY_GIT_URL#git://}"

# ---- namespace, secret
kubectl delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s >/dev/null
kubectl create namespace "$NS" >/dev/null
kubectl -n "$NS" create secret generic git-creds --from-literal=token="$LAPIDARY_GIT_TOKEN" >/dev/null

job_state() { # job -> Complete | Failed | ""
  kubectl -n "$NS" get job "$1" -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{"\n"}{end}' |
    grep -xE 'Complete|Failed' | head -n1 || true
}

wait_job() { # job -> 0 when Complete
  local deadline=$((SECONDS + TIMEOUT)) state
  while :; do
    state="$(job_state "$1")"
    [[ "$state" == Complete ]] && return 0
    [[ "$state" == Failed ]] && return 1
    ((SECONDS < deadline)) || { log "timed out waiting for job $1"; return 1; }
    sleep 1
  done
}

show_failure() { # job
  kubectl -n "$NS" describe job "$1" >&2 || true
  kubectl -n "$NS" get pods -l "batch.kubernetes.io/job-name=$1" -o wide >&2 || true
  kubectl -n "$NS" logs -l "batch.kubernetes.io/job-name=$1" --tail=50 >&2 || true
}

# ---- 1. API through the Service ClusterIP, git daemon, git HTTP with token
kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: smoke-api}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      securityContext: {runAsUser: 65534, runAsGroup: 65534, runAsNonRoot: true}
      containers:
      - name: smoke
        image: $IMAGE
        imagePullPolicy: IfNotPresent
        args: [api, --, git, "$git_hostport", "/$repo", --, http, "$LAPIDARY_GIT_HTTP_URL/$repo"]
        env:
        - name: GIT_TOKEN
          valueFrom: {secretKeyRef: {name: git-creds, key: token}}
EOF
t=$SECONDS
if wait_job smoke-api; then
  ok "Job smoke-api in $((SECONDS - t))s:"
  kubectl -n "$NS" logs job/smoke-api | sed 's/^/    /' >&2
  host="$(kubectl -n "$NS" logs job/smoke-api | sed -n 's/^smoke: api .* reached as \([^,]*\),.*/\1/p')"
  svc="$(kubectl -n default get service kubernetes -o jsonpath='{.spec.clusterIP}')"
  if [[ -n "$host" && "$host" == "$svc" ]]; then ok "KUBERNETES_SERVICE_HOST=$host is the kubernetes Service ClusterIP"; else bad "KUBERNETES_SERVICE_HOST=$host, ClusterIP $svc"; fi
else
  bad "Job smoke-api did not complete"
  show_failure smoke-api
fi

# ---- 2. Indexed Job: completions 3, parallelism 3, termination messages
kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: smoke-indexed}
spec:
  completionMode: Indexed
  completions: 3
  parallelism: 3
  backoffLimitPerIndex: 1
  template:
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      containers:
      - name: smoke
        image: $IMAGE
        imagePullPolicy: IfNotPresent
        args: [message]
EOF
t=$SECONDS
if wait_job smoke-indexed; then
  ok "Indexed Job smoke-indexed (3/3) in $((SECONDS - t))s"
  msgs="$(kubectl -n "$NS" get pods -l batch.kubernetes.io/job-name=smoke-indexed \
    -o jsonpath='{range .items[*]}{.status.containerStatuses[0].state.terminated.message}{"\n"}{end}')"
  printf '%s\n' "$msgs" | sed 's/^/    /' >&2
  indices="$(echo "$msgs" | sed -n 's/.*"index":"\([0-9]*\)".*/\1/p' | sort -n | tr '\n' ' ')"
  if [[ "$indices" == "0 1 2 " ]]; then ok "termination messages of indices 0 1 2 read from pod status"; else bad "termination messages: indices '$indices'"; fi
  owners="$(kubectl -n "$NS" get pods -l batch.kubernetes.io/job-name=smoke-indexed \
    -o jsonpath='{range .items[*]}{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}{"\n"}{end}' | sort -u)"
  [[ "$owners" == "Job/smoke-indexed" ]] || bad "pod owner references: $owners"
else
  bad "Indexed Job smoke-indexed did not complete"
  show_failure smoke-indexed
fi

# ---- 3. Garbage collection of a deleted Job's pods
kubectl -n "$NS" delete job smoke-indexed --wait=true >/dev/null
deadline=$((SECONDS + TIMEOUT))
t=$SECONDS
while [[ -n "$(kubectl -n "$NS" get pods -l batch.kubernetes.io/job-name=smoke-indexed -o name)" ]]; do
  if ((SECONDS >= deadline)); then break; fi
  sleep 1
done
if [[ -z "$(kubectl -n "$NS" get pods -l batch.kubernetes.io/job-name=smoke-indexed -o name)" ]]; then
  ok "pods of the deleted Job garbage-collected in $((SECONDS - t))s"
else
  bad "pods of the deleted Job still exist after ${TIMEOUT}s"
fi

# ---- 4. Namespace deletion
t=$SECONDS
if kubectl delete namespace "$NS" --wait=true --timeout="${TIMEOUT}s" >/dev/null; then
  ok "namespace $NS deleted in $((SECONDS - t))s"
else
  bad "namespace $NS not deleted"
fi
rm -rf "${LAPIDARY_GIT_ROOT:?}/$repo"

log "finished in $((SECONDS - t0))s"
echo "smoke: $passed passed, $failed failed"
((failed == 0))
