{{/* The chart's name. */}}
{{- define "iotsub.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the release name, with the chart's name unless it contains it. */}}
{{- define "iotsub.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the operator's pods (never the workers', which are app.kubernetes.io/name=iotsub-worker). */}}
{{- define "iotsub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "iotsub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "iotsub.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "iotsub.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "iotsub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "iotsub.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The rules of the operator's (Cluster)Role: exactly the API calls it makes (operator/src).
*/}}
{{- define "iotsub.rules" -}}
# Watch caches of the subscriptions (kube-runtime Controller: list + watch).
- apiGroups: ["iotsub.dev"]
  resources: ["consumergroupsubscriptions"]
  verbs: ["list", "watch"]
# Server-side apply of the status (apply::status).
- apiGroups: ["iotsub.dev"]
  resources: ["consumergroupsubscriptions/status"]
  verbs: ["patch"]
# Worker Deployments: watch cache, and server-side apply (apply::deployment). An apply PATCH of an
# absent object creates it, and the API server then checks `create` as well as `patch`.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch", "create", "patch"]
# The workers' PodDisruptionBudgets: watch cache (one deleted or edited by hand is applied again),
# and server-side apply (apply::disruption_budget), which creates an absent one (`create`) or
# updates it (`patch`); owner references delete them with the subscription.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch"]
# Worker pods' watch cache (status.clients, readiness).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Secrets: a metadata-only watch (names, labels, versions; no data is cached) to notice changes, and
# a `get` of exactly the Secrets subscriptions reference (credentials, CA, sink headers) when their
# version changes (operator/src/secrets.rs).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
# RRSA subscriptions (operator/src/rrsa.rs): the ServiceAccount the operator makes for their workers
# (server-side apply: `create` when absent, `patch`), and a token of the workers' ServiceAccount
# (audience STS) for the operator's own AssumeRoleWithOIDC. No AccessKey exists anywhere.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
# kube-runtime's events::Recorder: creates events.k8s.io/v1 Events, patches a repeated one's series.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/*
An image reference: [registry/]repository:tag, the tag defaulting to image.tag, then to the chart's
appVersion. Called with (dict "root" . "image" .Values.image.operator).
*/}}
{{- define "iotsub.image" -}}
{{- $registry := trimSuffix "/" .root.Values.image.registry -}}
{{- $tag := .image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- if $registry -}}
{{- printf "%s/%s:%s" $registry .image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}
