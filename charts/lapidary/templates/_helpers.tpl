{{/* Chart name, overridable. */}}
{{- define "lapidary.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, with the chart name added when the release name lacks it. */}}
{{- define "lapidary.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of the operator's objects (Deployment, Service, Roles). */}}
{{- define "lapidary.operatorName" -}}
{{- printf "%s-operator" (include "lapidary.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lapidary.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lapidary.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lapidary.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "lapidary.labels" -}}
helm.sh/chart: {{ include "lapidary.chart" . }}
{{ include "lapidary.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: lapidary
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "lapidary.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lapidary.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "lapidary.leaseName" -}}
{{- default (include "lapidary.operatorName" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "lapidary.operatorImage" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "lapidary.integratorImage" -}}
{{- printf "%s:%s" .Values.integratorImage.repository (default .Chart.AppVersion .Values.integratorImage.tag) }}
{{- end }}

{{/* The operator's rules on the objects it manages (not the Lease: see leader-election-rbac.yaml).
     Keep in step with operator/src: scripts/test-packaging.sh compares them. No Secrets: the
     integrator pods mount a run's Secret; the operator never reads it. */}}
{{- define "lapidary.operatorRules" -}}
- apiGroups: ["lapidary.dev"]
  resources: ["integrationruns"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["lapidary.dev"]
  resources: ["integrationruns/status"]
  verbs: ["patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create", "get", "list", "watch", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# kube's event Recorder writes events.k8s.io/v1 Events only (create, then patch a series).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
