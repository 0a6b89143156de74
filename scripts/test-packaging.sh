#!/usr/bin/env bash
# Tests of lapidary's packaging: the Helm chart, the plain manifests in deploy/, and the
# chart's RBAC against what the operator's source uses. Needs no cluster.
#
#   scripts/test-packaging.sh
#
# What is validated here, and what is not:
# - helm lint --strict and helm template, for the default values and for the other shapes
#   (namespace scope, every optional object on, no RBAC); values.schema.json refuses
#   unknown keys and bad values (negative cases below).
# - rendered objects against the Kubernetes OpenAPI v3 schema of k8s.io/kubernetes v1.34,
#   strictly (unknown fields are errors), when that module's source is in the Go module
#   cache (kind-tests/cluster.sh build puts it there); otherwise that check is reported as
#   skipped, not passed. ServiceMonitor (a Prometheus Operator CRD) has no schema here.
#   The API server's own validation (CEL rules, admission, Pod Security) is only exercised
#   by the cluster tests in kind-tests/, which install the chart into a real cluster.
# - the chart's crds/ copy equals deploy/crd.yaml; deploy/install.yaml equals a fresh
#   render (scripts/regen-deploy.sh); `kubectl kustomize deploy/` builds.
# - RBAC: the API kinds named in operator/src must match the chart's rules, both ways; no
#   Secrets. Verbs are read from the source only coarsely (see check_rbac).
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$repo/charts/lapidary"
CHART_CRD="$CHART/crds/integrationruns.lapidary.dev.yaml"
K8S_VERSION=v1.34.12
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

passed=0 failed=0 skipped=0
ok() { echo "ok      $1"; passed=$((passed + 1)); }
bad() {
  echo "FAIL    $1"
  # shellcheck disable=SC2001 # sed indents every line of a multi-line detail
  if [[ -n "${2:-}" ]]; then sed "s/^/        /" <<<"$2"; fi
  failed=$((failed + 1))
}
skip() { echo "skipped $1 ($2)"; skipped=$((skipped + 1)); }
# check NAME CMD...: passes when CMD exits 0; shows its output when it does not.
check() {
  local name=$1 out
  shift
  if out="$("$@" 2>&1)"; then ok "$name"; else bad "$name" "$out"; fi
}
# refuse NAME EXPECTED-TEXT CMD...: passes when CMD fails with EXPECTED-TEXT in its output.
refuse() {
  local name=$1 want=$2 out
  shift 2
  if out="$("$@" 2>&1)"; then bad "$name" "succeeded but should have failed"
  elif grep -qF -- "$want" <<<"$out"; then ok "$name"
  else bad "$name" "failed without '$want': $out"; fi
}

# ---------------------------------------------------------------- tools
HELM="$("$repo/scripts/helm.sh")" || { echo "FAIL    cannot install helm"; echo "0 passed, 1 failed"; exit 1; }
KUBECTL="$(command -v kubectl || "$repo/scripts/helm.sh" --kubectl)"
PY=/usr/bin/python3
if ! "$PY" -c 'import yaml' 2>/dev/null; then
  if [[ $EUID -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-yaml >/dev/null 2>&1 ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-yaml >/dev/null; }
  fi
  "$PY" -c 'import yaml' || { echo "FAIL    python3-yaml is missing"; echo "0 passed, 1 failed"; exit 1; }
fi

# ---------------------------------------------------------------- lint and render
check "helm lint --strict (default values)" "$HELM" lint --strict "$CHART"
check "helm lint --strict (scope=namespace, every option on)" "$HELM" lint --strict "$CHART" \
  --namespace team-a --set scope=namespace,replicaCount=2,metrics.serviceMonitor.enabled=true,networkPolicy.enabled=true

render() { # output-file helm-template-args...
  local out=$1
  shift
  "$HELM" template lapidary "$CHART" "$@" >"$out"
}
check "helm template (default values)" render "$tmp/default.yaml" --namespace lapidary-system
check "helm template (scope=namespace)" render "$tmp/namespaced.yaml" --namespace team-a --set scope=namespace
check "helm template (every option on)" render "$tmp/full.yaml" --namespace lapidary-system \
  --set replicaCount=3,metrics.serviceMonitor.enabled=true,metrics.serviceMonitor.scrapeTimeout=10s \
  --set networkPolicy.enabled=true,logFormat=text,logLevel=debug \
  --set image.tag=9.9.9,integratorImage.repository=registry.example.com/me/integrator,integratorImage.tag=1.2.3 \
  --set-json 'networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"name":"monitoring"}}}]' \
  --set-json 'extraEnv=[{"name":"HTTPS_PROXY","value":"http://proxy:3128"}]' \
  --set-json 'extraArgs=["--status-interval-ms=5000"]'
check "helm template (no RBAC, existing ServiceAccount, no metrics Service)" render "$tmp/minimal.yaml" \
  --namespace lapidary-system --set rbac.create=false,serviceAccount.create=false,serviceAccount.name=ops \
  --set metrics.service.enabled=false,leaderElection.enabled=false

refuse "schema refuses an unknown key" "additional properties 'imge' not allowed" \
  "$HELM" template x "$CHART" --set imge.tag=1
refuse "schema refuses an unknown scope" "value must be one of" \
  "$HELM" template x "$CHART" --set scope=everywhere
refuse "schema refuses an unknown log format" "value must be one of" \
  "$HELM" template x "$CHART" --set logFormat=xml
refuse "two replicas need leader election" "needs leaderElection.enabled" \
  "$HELM" template x "$CHART" --set replicaCount=2,leaderElection.enabled=false
refuse "a ServiceMonitor needs the metrics Service" "needs metrics.service.enabled" \
  "$HELM" template x "$CHART" --set metrics.serviceMonitor.enabled=true,metrics.service.enabled=false

notes() { # scope namespace
  KUBECONFIG=/nonexistent "$HELM" install lapidary "$CHART" --namespace "$2" --set scope="$1" --dry-run=client \
    | sed -n '/^NOTES:/,$p' >"$tmp/notes-$1.txt"
  if ! grep -q "kubectl -n $3 get ir -w" "$tmp/notes-$1.txt" ||
    ! grep -q "kubectl apply -n $3 -f -" "$tmp/notes-$1.txt" ||
    ! grep -q "kind: IntegrationRun" "$tmp/notes-$1.txt"; then
    cat "$tmp/notes-$1.txt"
    return 1
  fi
}
check "NOTES.txt tells how to start and watch a first run (cluster scope)" notes cluster lapidary-system default
check "NOTES.txt tells how to start and watch a first run (namespace scope)" notes namespace team-a team-a

# What the rendered objects must say, per shape. One Python run, one line per failure.
check "rendered objects: scope, RBAC, Deployment, security, options" "$PY" - "$tmp" <<'PY'
import sys, yaml
tmp = sys.argv[1]
errors = []

def load(name):
    return [d for d in yaml.safe_load_all(open(f"{tmp}/{name}.yaml")) if d]

def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    if len(found) != 1:
        errors.append(f"expected one {kind} {name or ''}, found {len(found)}")
        return {}
    return found[0]

def expect(cond, msg):
    if not cond:
        errors.append(msg)

def env_of(dep):
    c = dep["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in c.get("env", [])}, c

OPERATOR_RULES = {
    ("lapidary.dev", "integrationruns"): {"get", "list", "watch", "patch"},
    ("lapidary.dev", "integrationruns/status"): {"patch"},
    ("batch", "jobs"): {"create", "get", "list", "watch", "patch", "delete"},
    ("", "configmaps"): {"create", "get", "list", "watch", "patch", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}

def rules_map(role):
    out = {}
    for r in role.get("rules", []):
        for g in r["apiGroups"]:
            for res in r["resources"]:
                out.setdefault((g, res), set()).update(r["verbs"])
                expect(res != "secrets" and "*" not in r["verbs"] and res != "*" and g != "*",
                       f"{role['kind']} {role['metadata']['name']}: forbidden rule {r}")
    return out

def check_common(docs, ns, scope, tag="0.1.0", integrator="lapidary/integrator:0.1.0"):
    dep = one(docs, "Deployment", "lapidary-operator")
    if not dep:
        return
    expect(dep["metadata"]["namespace"] == ns, f"Deployment namespace {dep['metadata'].get('namespace')} != {ns}")
    env, c = env_of(dep)
    pod = dep["spec"]["template"]["spec"]
    expect(c["image"] == f"lapidary/operator:{tag}", f"operator image {c['image']}")
    expect(c["imagePullPolicy"] == "IfNotPresent", "pull policy")
    expect(env["LAPIDARY_INTEGRATOR_IMAGE"]["value"] == integrator, f"integrator image {env['LAPIDARY_INTEGRATOR_IMAGE']}")
    want_watch = ns if scope == "namespace" else ""
    expect(env["WATCH_NAMESPACE"]["value"] == want_watch, f"WATCH_NAMESPACE {env['WATCH_NAMESPACE']} for scope {scope}")
    expect(env["POD_NAMESPACE"].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace",
           "POD_NAMESPACE not from the downward API")
    expect(env["POD_NAME"].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
           "POD_NAME not from the downward API")
    expect(c["args"][0] == "run" and "--metrics-addr=0.0.0.0:8080" in c["args"], f"args {c['args']}")
    expect(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness probe")
    expect(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness probe")
    expect(c["ports"][0]["containerPort"] == 8080, "metrics port")
    expect("requests" in c["resources"] and "limits" in c["resources"], "resources")
    # Pod Security Standard "restricted".
    psc, sc = pod["securityContext"], c["securityContext"]
    expect(psc.get("runAsNonRoot") is True, "runAsNonRoot")
    expect(psc.get("runAsUser") == 65532, "runAsUser 65532")
    expect(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")
    expect(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
    expect(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities drop ALL")
    expect(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
    expect(not any(k in pod for k in ("hostNetwork", "hostPID", "hostIPC")), "host namespaces")
    # RBAC: exactly the operator's rules, in the scope asked for.
    kind, bkind = ("ClusterRole", "ClusterRoleBinding") if scope == "cluster" else ("Role", "RoleBinding")
    other = {"ClusterRole", "ClusterRoleBinding"} if scope == "namespace" else set()
    expect(not [d for d in docs if d["kind"] in other], f"scope {scope} renders cluster-wide RBAC")
    role = one(docs, kind, "lapidary-operator")
    if role:
        expect(rules_map(role) == OPERATOR_RULES, f"{kind} rules differ: {rules_map(role)}")
        if scope == "namespace":
            expect(role["metadata"]["namespace"] == ns, "Role not in the release namespace")
    binding = one(docs, bkind, "lapidary-operator")
    if binding:
        expect(binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": "lapidary-operator"},
               f"roleRef {binding['roleRef']}")
        expect(binding["subjects"] == [{"kind": "ServiceAccount", "name": "lapidary-operator", "namespace": ns}],
               f"subjects {binding['subjects']}")
    lease = one(docs, "Role", "lapidary-operator-leader-election")
    if lease:
        expect(lease["metadata"]["namespace"] == ns, "lease Role not in the release namespace")
        lr = rules_map(lease)
        expect(set(lr) == {("coordination.k8s.io", "leases")}, f"lease Role rules {lr}")
        expect(lr.get(("coordination.k8s.io", "leases")) == {"get", "create", "update"}, f"lease verbs {lr}")
        names = [r.get("resourceNames") for r in lease["rules"] if "get" in r["verbs"]]
        expect(names == [["lapidary-operator"]], f"lease resourceNames {names}")
        expect("--lease-name=lapidary-operator" in c["args"] and "--leader-election=true" in c["args"], "lease args")
    one(docs, "RoleBinding", "lapidary-operator-leader-election")
    sa = one(docs, "ServiceAccount", "lapidary-operator")
    svc = one(docs, "Service", "lapidary-operator-metrics")
    if svc:
        expect(svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"], "Service selector != Deployment selector")
        expect(svc["spec"]["ports"][0]["targetPort"] == "http-metrics", "Service targetPort")
    sel = dep["spec"]["selector"]["matchLabels"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    expect(all(labels.get(k) == v for k, v in sel.items()), "pod labels do not match the selector")
    for d in docs:
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            expect(d["metadata"].get("namespace") == ns, f"{d['kind']} {d['metadata']['name']} not in {ns}")
    return dep

default = load("default")
check_common(default, "lapidary-system", "cluster")
kinds = sorted(d["kind"] for d in default)
expect(kinds == sorted(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                        "Service", "Deployment"]), f"default kinds {kinds}")

namespaced = load("namespaced")
check_common(namespaced, "team-a", "namespace")

full = load("full")
dep = check_common(full, "lapidary-system", "cluster", tag="9.9.9",
                   integrator="registry.example.com/me/integrator:1.2.3")
if dep:
    env, c = env_of(dep)
    expect(dep["spec"]["replicas"] == 3, "replicas")
    expect(env["LAPIDARY_LOG_FORMAT"]["value"] == "text" and env["RUST_LOG"]["value"] == "debug", "log settings")
    expect(env.get("HTTPS_PROXY", {}).get("value") == "http://proxy:3128", "extraEnv")
    expect(c["args"][-1] == "--status-interval-ms=5000", f"extraArgs {c['args']}")
sm = one(full, "ServiceMonitor", "lapidary-operator")
if sm:
    expect(sm["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
    ep = sm["spec"]["endpoints"][0]
    expect(ep["port"] == "http-metrics" and ep["path"] == "/metrics" and ep["scrapeTimeout"] == "10s", f"endpoint {ep}")
np = one(full, "NetworkPolicy", "lapidary-operator")
if np:
    ing = np["spec"]["ingress"]
    expect(np["spec"]["policyTypes"] == ["Ingress"], "NetworkPolicy types")
    expect(ing[0]["ports"] == [{"port": "http-metrics", "protocol": "TCP"}], f"NetworkPolicy ports {ing}")
    expect(ing[0]["from"] == [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}], f"NetworkPolicy from {ing}")

minimal = load("minimal")
kinds = sorted(d["kind"] for d in minimal)
expect(kinds == ["Deployment"], f"minimal kinds {kinds}")
if minimal:
    pod = minimal[0]["spec"]["template"]["spec"]
    expect(pod["serviceAccountName"] == "ops", "existing ServiceAccount name")
    expect("--leader-election=false" in pod["containers"][0]["args"], "leader election should be off")
    expect(not [a for a in pod["containers"][0]["args"] if a.startswith("--lease-name")], "no lease name when off")

print("\n".join(errors))
sys.exit(1 if errors else 0)
PY

# ---------------------------------------------------------------- CRD and plain manifests
if [[ -s "$repo/deploy/crd.yaml" ]]; then
  check "chart crds/ equals deploy/crd.yaml (fix: scripts/regen-deploy.sh)" cmp "$CHART_CRD" "$repo/deploy/crd.yaml"
else
  bad "deploy/crd.yaml exists" "generate it: cargo run -p lapidary-operator -- crd > deploy/crd.yaml"
fi
check "the CRD renders with --include-crds" bash -c \
  "'$HELM' template lapidary '$CHART' --include-crds | grep -q 'name: integrationruns.lapidary.dev'"

install_drift() {
  "$repo/scripts/regen-deploy.sh" --print-install >"$tmp/install.yaml" || return 1
  diff -u "$repo/deploy/install.yaml" "$tmp/install.yaml" ||
    { echo "deploy/install.yaml is stale; regenerate it with: scripts/regen-deploy.sh"; return 1; }
}
check "deploy/install.yaml equals a fresh helm template (fix: scripts/regen-deploy.sh)" install_drift

kustomize_build() {
  "$KUBECTL" kustomize "$repo/deploy" >"$tmp/kustomized.yaml" || return 1
  "$PY" - "$tmp/kustomized.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
need = {("CustomResourceDefinition", "integrationruns.lapidary.dev"), ("Namespace", "lapidary-system"),
        ("Deployment", "lapidary-operator"), ("ServiceAccount", "lapidary-operator"),
        ("ClusterRole", "lapidary-operator"), ("ClusterRoleBinding", "lapidary-operator"),
        ("Role", "lapidary-operator-leader-election"), ("RoleBinding", "lapidary-operator-leader-election"),
        ("Service", "lapidary-operator-metrics")}
missing = need - kinds
extra = {k for k in kinds if k[0] == "IntegrationRun"}
if missing: print("missing:", sorted(missing))
if extra: print("samples must not be part of the install:", sorted(extra))
ns = [d for d in docs if d["kind"] == "Namespace"][0]
if ns["metadata"]["labels"].get("pod-security.kubernetes.io/enforce") != "restricted":
    print("the Namespace does not enforce the restricted Pod Security Standard")
    missing = True
sys.exit(1 if missing or extra else 0)
PY
}
check "kubectl kustomize deploy/ builds everything (no samples)" kustomize_build

# ---------------------------------------------------------------- OpenAPI schema validation
openapi_dir=""
gomodcache="$(go env GOMODCACHE 2>/dev/null || echo "$HOME/go/pkg/mod")"
[[ -d "$gomodcache/k8s.io/kubernetes@$K8S_VERSION/api/openapi-spec/v3" ]] &&
  openapi_dir="$gomodcache/k8s.io/kubernetes@$K8S_VERSION/api/openapi-spec/v3"
if [[ -n "$openapi_dir" ]]; then
  cat "$tmp/default.yaml" "$tmp/namespaced.yaml" "$tmp/full.yaml" "$tmp/minimal.yaml" >"$tmp/all.yaml"
  [[ -s "$repo/deploy/install.yaml" ]] && { echo "---"; cat "$repo/deploy/install.yaml"; } >>"$tmp/all.yaml"
  [[ -s "$repo/deploy/crd.yaml" ]] && { echo "---"; cat "$repo/deploy/crd.yaml"; } >>"$tmp/all.yaml"
  # The first-run example of NOTES.txt, checked against the CRD's schema.
  { echo "---"; sed -n "/cat <<'YAML'/,/^  YAML\$/p" "$tmp/notes-cluster.txt" | sed '1d;$d' | sed 's/^  //'; } >>"$tmp/all.yaml"
  check "rendered objects and the NOTES example valid against the Kubernetes $K8S_VERSION OpenAPI schema and the CRD (strict)" \
    "$PY" - "$openapi_dir" "$tmp/all.yaml" "$repo/deploy/crd.yaml" <<'PY'
import json, os, re, sys, yaml

spec_dir, manifests, crd_file = sys.argv[1], sys.argv[2], sys.argv[3]
schemas, gvk_index = {}, {}
for f in os.listdir(spec_dir):
    doc = json.load(open(os.path.join(spec_dir, f)))
    for name, s in doc.get("components", {}).get("schemas", {}).items():
        schemas[name] = s
        for gvk in s.get("x-kubernetes-group-version-kind", []):
            gvk_index[(gvk["group"], gvk["version"], gvk["kind"])] = name

# The IntegrationRun CRD's own schema, for the IntegrationRuns given (the NOTES example).
if os.path.exists(crd_file):
    crd = yaml.safe_load(open(crd_file))
    for ver in crd["spec"]["versions"]:
        name = f"crd.{crd['spec']['group']}.{ver['name']}.{crd['spec']['names']['kind']}"
        schemas[name] = ver["schema"]["openAPIV3Schema"]
        gvk_index[(crd["spec"]["group"], ver["name"], crd["spec"]["names"]["kind"])] = name

QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
errors = []

def resolve(s):
    while "$ref" in s:
        s = schemas[s["$ref"].split("/")[-1]]
    if "allOf" in s and len(s["allOf"]) == 1 and "properties" not in s:
        s = resolve(s["allOf"][0])
    return s

def validate(v, s, path):
    if "$ref" in s and s["$ref"].endswith(QUANTITY):
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            errors.append(f"{path}: quantity expected, got {v!r}")
        return
    s = resolve(s)
    if s.get("x-kubernetes-int-or-string"):
        if not isinstance(v, (str, int)) or isinstance(v, bool):
            errors.append(f"{path}: int or string expected, got {v!r}")
        return
    if s.get("x-kubernetes-preserve-unknown-fields"):
        return
    t = s.get("type")
    if v is None:
        return  # null: the API server drops it
    if t == "object" or "properties" in s:
        if not isinstance(v, dict):
            errors.append(f"{path}: object expected, got {type(v).__name__}")
            return
        props = s.get("properties", {})
        for req in s.get("required", []):
            if req not in v:
                errors.append(f"{path}: required field {req} missing")
        for k, sub in v.items():
            if k in props:
                validate(sub, props[k], f"{path}.{k}")
            elif isinstance(s.get("additionalProperties"), dict):
                validate(sub, s["additionalProperties"], f"{path}.{k}")
            elif props or s.get("additionalProperties") is False:
                errors.append(f"{path}: unknown field {k}")
    elif t == "array":
        if not isinstance(v, list):
            errors.append(f"{path}: array expected, got {type(v).__name__}")
            return
        if len(v) < s.get("minItems", 0) or len(v) > s.get("maxItems", len(v)):
            errors.append(f"{path}: {len(v)} items, outside [{s.get('minItems')}, {s.get('maxItems')}]")
        for i, item in enumerate(v):
            validate(item, s.get("items", {}), f"{path}[{i}]")
    elif t == "string":
        if not isinstance(v, str):
            errors.append(f"{path}: string expected, got {v!r}")
        elif "enum" in s and v not in s["enum"]:
            errors.append(f"{path}: {v!r} not one of {s['enum']}")
        elif len(v) < s.get("minLength", 0) or len(v) > s.get("maxLength", len(v)):
            errors.append(f"{path}: length {len(v)} outside [{s.get('minLength')}, {s.get('maxLength')}]")
        elif "pattern" in s and not re.search(s["pattern"], v):
            errors.append(f"{path}: {v!r} does not match {s['pattern']}")
    elif t == "integer":
        if not isinstance(v, int) or isinstance(v, bool):
            errors.append(f"{path}: integer expected, got {v!r}")
        elif v < s.get("minimum", v) or v > s.get("maximum", v):
            errors.append(f"{path}: {v} outside [{s.get('minimum')}, {s.get('maximum')}]")
    elif t == "number":
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            errors.append(f"{path}: number expected, got {v!r}")
    elif t == "boolean":
        if not isinstance(v, bool):
            errors.append(f"{path}: boolean expected, got {v!r}")

checked = no_schema = 0
for doc in yaml.safe_load_all(open(manifests)):
    if not doc:
        continue
    group, _, version = doc["apiVersion"].rpartition("/")
    name = gvk_index.get((group, version, doc["kind"]))
    where = f"{doc['kind']}/{doc['metadata'].get('name')}"
    if name is None:
        if group == "monitoring.coreos.com":
            no_schema += 1  # a Prometheus Operator CRD: no schema offline
            continue
        errors.append(f"{where}: {doc['apiVersion']} {doc['kind']} is not served by Kubernetes")
        continue
    if name.startswith("crd."):
        # A CRD's schema leaves out apiVersion, kind and metadata: the API server adds them.
        doc = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    validate(doc, schemas[name], where)
    checked += 1
print(f"{checked} objects checked, {no_schema} without a schema (ServiceMonitor)")
print("\n".join(errors))
sys.exit(1 if errors else 0)
PY
else
  skip "OpenAPI schema validation" "k8s.io/kubernetes@$K8S_VERSION not in the Go module cache; kind-tests/cluster.sh build fetches it"
fi

# ---------------------------------------------------------------- RBAC against the source
# The API kinds the operator's source names (typed Api<K>, kube's event Recorder, the
# leader-election Lease, status patches) must be exactly the resources of the chart's rules.
check_rbac() {
  local src="$repo/operator/src"
  "$PY" - "$src" "$tmp/default.yaml" <<'PY'
import os, re, sys, yaml
src_dir, rendered = sys.argv[1], sys.argv[2]
text = ""
for root, _, files in os.walk(src_dir):
    for f in files:
        if f.endswith(".rs"):
            text += open(os.path.join(root, f)).read() + "\n"
# Kind named in the source -> (group, resource) of the RBAC rule it needs.
KINDS = {
    "IntegrationRun": ("lapidary.dev", "integrationruns"),
    "Job": ("batch", "jobs"),
    "ConfigMap": ("", "configmaps"),
    "Pod": ("", "pods"),
    "Secret": ("", "secrets"),
    "Lease": ("coordination.k8s.io", "leases"),
    "Service": ("", "services"),
    "Node": ("", "nodes"),
    "Namespace": ("", "namespaces"),
    "Deployment": ("apps", "deployments"),
    "PersistentVolumeClaim": ("", "persistentvolumeclaims"),
}
used = set()
for kind, gr in KINDS.items():
    # a typed API handle, a watcher/controller over the kind, or an import of the k8s type
    if re.search(rf"Api\s*::\s*<\s*{kind}\s*>|Api\s*<\s*{kind}\s*>|Controller\s*::\s*<\s*{kind}\s*>|\.owns\s*\(\s*Api\s*::\s*<\s*{kind}\s*>"
                 rf"|k8s_openapi::api::\w+::v1::(\{{[^}}]*\b{kind}\b[^}}]*\}}|{kind}\b)", text):
        used.add(gr)
if re.search(r"patch_status|replace_status", text):
    used.add(("lapidary.dev", "integrationruns/status"))
if re.search(r"kube::runtime::events|Recorder\b|k8s_openapi::api::events::v1", text):
    used.add(("events.k8s.io", "events"))  # kube's Recorder writes events.k8s.io/v1 only
if re.search(r"k8s_openapi::api::core::v1::(\{[^}]*\bEvent\b[^}]*\}|Event\b)", text):
    used.add(("", "events"))
if re.search(r"LeaseLock|leader_election|LeaseManager|coordination::v1", text):
    used.add(("coordination.k8s.io", "leases"))

granted = set()
for d in yaml.safe_load_all(open(rendered)):
    if d and d["kind"] in ("Role", "ClusterRole"):
        for r in d["rules"]:
            for g in r["apiGroups"]:
                for res in r["resources"]:
                    granted.add((g, res))
fmt = lambda s: ", ".join(f"{g or 'core'}/{r}" for g, r in sorted(s))
print(f"source names: {fmt(used)}")
print(f"chart grants: {fmt(granted)}")
problems = []
if ("", "secrets") in used or ("", "secrets") in granted:
    problems.append("Secrets must be neither used by the operator nor granted to it")
if used - granted:
    problems.append(f"used but not granted: {fmt(used - granted)}")
if granted - used:
    problems.append(f"granted but not used: {fmt(granted - used)}")
print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
}
if grep -rqE "Api\s*(::)?\s*<" "$repo/operator/src" 2>/dev/null; then
  check "RBAC rules match the API kinds in operator/src" check_rbac
else
  bad "RBAC rules match the API kinds in operator/src" "operator/src names no Api<K> yet"
fi

echo
echo "packaging: $passed passed, $failed failed$( ((skipped)) && echo ", $skipped skipped")"
((failed == 0))
