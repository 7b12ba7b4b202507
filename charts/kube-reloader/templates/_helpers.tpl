{{/* The app name: the chart's, unless nameOverride is set. */}}
{{- define "kube-reloader.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of the release's objects: fullnameOverride if set; else the release name when it already
contains the app name (as `helm install kube-reloader ...`), else "<release>-<app name>".
*/}}
{{- define "kube-reloader.fullname" -}}
{{- $app := include "kube-reloader.name" . }}
{{- $full := .Values.fullnameOverride }}
{{- if not $full }}
{{- $full = ternary .Release.Name (printf "%s-%s" .Release.Name $app) (contains $app .Release.Name) }}
{{- end }}
{{- $full | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kube-reloader.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kube-reloader.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. Only the last two are absent from manifests/. */}}
{{- define "kube-reloader.labels" -}}
{{ include "kube-reloader.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "kube-reloader.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- .Values.serviceAccount.name | default (include "kube-reloader.fullname" .) }}
{{- else }}
{{- .Values.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{/* The subject of every binding: the controller's service account. */}}
{{- define "kube-reloader.subject" -}}
- kind: ServiceAccount
  name: {{ include "kube-reloader.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{- define "kube-reloader.image" -}}
{{- $repo := required "image.repository is required" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/*
The controller's flags, from the values. A flag is written only when its value differs from the
binary's default, so the defaults give the same arguments as manifests/.
*/}}
{{- define "kube-reloader.args" -}}
{{- $v := .Values }}
{{- if and (gt (int $v.replicas) 1) (not $v.leaderElection.enabled) }}
{{- fail (printf "replicas: %d needs leaderElection.enabled: true; without it every replica would write to the same workloads" (int $v.replicas)) }}
{{- end }}
{{- $args := list }}
{{- if $v.leaderElection.enabled }}
{{- $args = append $args "--leader-elect" }}
{{- if ne $v.leaderElection.leaseName "kube-reloader" }}
{{- $args = append $args (printf "--lease-name=%s" $v.leaderElection.leaseName) }}
{{- end }}
{{- end }}
{{- range $v.watchNamespaces }}
{{- $args = append $args (printf "--namespace=%s" .) }}
{{- end }}
{{- range $v.ignoreNamespaces }}
{{- $args = append $args (printf "--ignore-namespace=%s" .) }}
{{- end }}
{{- if not $v.reloaderCompat }}
{{- $args = append $args "--reloader-compat=false" }}
{{- end }}
{{- if ne $v.keySecretName "kube-reloader-key" }}
{{- $args = append $args (printf "--key-secret=%s" $v.keySecretName) }}
{{- end }}
{{- if ne $v.log.level "info" }}
{{- $args = append $args (printf "--log-level=%s" $v.log.level) }}
{{- end }}
{{- if not (has $v.log.format (list "text" "json")) }}
{{- fail (printf "log.format must be text or json, not %q" $v.log.format) }}
{{- else if ne $v.log.format "text" }}
{{- $args = append $args (printf "--log-format=%s" $v.log.format) }}
{{- end }}
{{- if ne (int $v.metricsPort) 9090 }}
{{- $args = append $args (printf "--metrics-addr=0.0.0.0:%d" (int $v.metricsPort)) }}
{{- end }}
{{- concat $args $v.extraArgs | toYaml }}
{{- end }}

{{/* What the controller needs in each watched namespace, or cluster-wide. */}}
{{- define "kube-reloader.watchRules" -}}
- apiGroups: [""]
  resources: [configmaps, secrets]
  verbs: [list, watch]
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [list, watch, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}
