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
{{- with $v.namespaceSelector }}
{{- if $v.watchNamespaces }}
{{- fail "namespaceSelector and watchNamespaces cannot both be set: namespaceSelector needs list and watch on namespaces cluster-wide, which a namespaced install does not grant, and among namespaces already listed it could only leave some out. List the namespaces to watch in watchNamespaces, or leave watchNamespaces empty and select them by label" }}
{{- end }}
{{- $args = append $args (printf "--namespace-selector=%s" .) }}
{{- end }}
{{- with $v.resourceLabelSelector }}
{{- $args = append $args (printf "--resource-label-selector=%s" .) }}
{{- end }}
{{- with (include "kube-reloader.ignoredResources" .) }}
{{- $args = append $args (printf "--resources-to-ignore=%s" .) }}
{{- end }}
{{- if ne (join "," $v.kinds) "Deployment,StatefulSet,DaemonSet,CronJob,Rollout" }}
{{- $args = append $args (printf "--kinds=%s" (join "," $v.kinds)) }}
{{- end }}
{{- /* As listed: the binary resolves replacements as the helper below does for RBAC. */}}
{{- $_ := include "kube-reloader.workloadKinds" . }}
{{- range $v.workloadKinds }}
{{- if kindIs "map" . }}
{{- $args = append $args (printf "--workload-kind=%s" .kind) }}
{{- else }}
{{- $args = append $args (printf "--workload-kind=%s" .) }}
{{- end }}
{{- end }}
{{- if not $v.reloaderCompat }}
{{- $args = append $args "--reloader-compat=false" }}
{{- end }}
{{- if $v.autoReloadAll }}
{{- $args = append $args "--auto-reload-all" }}
{{- end }}
{{- if $v.csi.enabled }}
{{- $args = append $args "--enable-csi-integration" }}
{{- end }}
{{- if $v.progressive.enabled }}
{{- $args = append $args "--progressive" }}
{{- end }}
{{- if ne $v.progressive.waves "1,10%" }}
{{- $args = append $args (printf "--rollout-waves=%s" $v.progressive.waves) }}
{{- end }}
{{- if ne $v.progressive.rolloutTimeout "10m" }}
{{- $args = append $args (printf "--rollout-timeout=%s" $v.progressive.rolloutTimeout) }}
{{- end }}
{{- if ne $v.progressive.rolloutSoak "0s" }}
{{- $args = append $args (printf "--rollout-soak=%s" $v.progressive.rolloutSoak) }}
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
{{- if not (has $v.alerts.format (list "json" "slack" "teams" "gchat")) }}
{{- fail (printf "alerts.format must be json, slack, teams or gchat, not %q" $v.alerts.format) }}
{{- else if ne $v.alerts.format "json" }}
{{- $args = append $args (printf "--alert-format=%s" $v.alerts.format) }}
{{- end }}
{{- with $v.alerts.proxy }}
{{- /* Not quoted in the message: a URL with credentials would show them. */}}
{{- if not (regexMatch "^https?://[^/@?#[:space:]]+(/[^@[:space:]]*)?$" .) }}
{{- fail "alerts.proxy must be an http:// or https:// URL without credentials, such as http://proxy.corp:3128 (pass a URL with credentials from a Secret through extraEnv, as KUBE_RELOADER_ALERT_PROXY)" }}
{{- end }}
{{- $args = append $args (printf "--alert-proxy=%s" .) }}
{{- end }}
{{- with $v.clusterName }}
{{- $args = append $args (printf "--cluster-name=%s" .) }}
{{- end }}
{{- concat $args $v.extraArgs | toYaml }}
{{- end }}

{{/*
The workload kinds the controller rolls, as the binary resolves --kinds and --workload-kind: the
built-in kinds of `kinds`, then each of `workloadKinds`, one replacing an earlier kind of the same
group and kind in its place. A JSON list of {group, kind, resource}: `resource` is what RBAC
names (the map's `resource`, or the regular English plural of the lowercase kind, as most kinds'
resources are named). Fails on an entry the binary would refuse (when the schema is skipped).
*/}}
{{- define "kube-reloader.workloadKinds" -}}
{{- $builtIn := dict
  "Deployment" (dict "group" "apps" "resource" "deployments")
  "StatefulSet" (dict "group" "apps" "resource" "statefulsets")
  "DaemonSet" (dict "group" "apps" "resource" "daemonsets")
  "CronJob" (dict "group" "batch" "resource" "cronjobs")
  "Rollout" (dict "group" "argoproj.io" "resource" "rollouts") }}
{{- if not .Values.kinds }}
{{- fail "kinds: list at least one built-in kind (Deployment, StatefulSet, DaemonSet, CronJob or Rollout); kube-reloader refuses an empty --kinds" }}
{{- end }}
{{- $order := list }}
{{- $byId := dict }}
{{- range .Values.kinds }}
{{- $b := get $builtIn . }}
{{- if not $b }}
{{- fail (printf "kinds: %q is not a built-in kind (Deployment, StatefulSet, DaemonSet, CronJob or Rollout); add other kinds with workloadKinds" .) }}
{{- end }}
{{- $id := printf "%s/%s" $b.group . }}
{{- if not (hasKey $byId $id) }}
{{- $order = append $order $id }}
{{- end }}
{{- $_ := set $byId $id (dict "group" $b.group "kind" . "resource" $b.resource) }}
{{- end }}
{{- range .Values.workloadKinds }}
{{- $flag := . }}
{{- $resource := "" }}
{{- if kindIs "map" . }}
{{- $flag = .kind | default "" }}
{{- $resource = .resource | default "" }}
{{- end }}
{{- if not (regexMatch "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?v[0-9]+((alpha|beta)[0-9]+)?/[A-Z][A-Za-z0-9]*(=[A-Za-z0-9_]+(\\.[A-Za-z0-9_]+)*)?$" (toString $flag)) }}
{{- fail (printf "workloadKinds: %s is neither GROUP/VERSION/KIND[=PATH] (e.g. apps.kruise.io/v1alpha1/CloneSet) nor {kind: GROUP/VERSION/KIND[=PATH], resource: PLURAL}" (toJson .)) }}
{{- end }}
{{- $parts := splitList "/" (first (splitList "=" $flag)) }}
{{- $group := ternary (first $parts) "" (eq (len $parts) 3) }}
{{- $kind := last $parts }}
{{- $id := printf "%s/%s" $group $kind }}
{{- if not $resource }}
{{- $lower := lower $kind }}
{{- if regexMatch "(s|x|z|ch|sh)$" $lower }}
{{- $resource = printf "%ses" $lower }}
{{- else if regexMatch "(^|[^aeiou])y$" $lower }}
{{- $resource = printf "%sies" (trimSuffix "y" $lower) }}
{{- else }}
{{- $resource = printf "%ss" $lower }}
{{- end }}
{{- end }}
{{- if not (hasKey $byId $id) }}
{{- $order = append $order $id }}
{{- end }}
{{- $_ := set $byId $id (dict "group" $group "kind" $kind "resource" $resource) }}
{{- end }}
{{- $kinds := list }}
{{- range $order }}
{{- $kinds = append $kinds (get $byId .) }}
{{- end }}
{{- toJson $kinds }}
{{- end }}

{{/*
The one kind of config object resourcesToIgnore leaves out, "configmaps" or "secrets", or "" for
none. Fails on what the binary would refuse (when the schema is skipped): another word, or both.
*/}}
{{- define "kube-reloader.ignoredResources" -}}
{{- $ignored := .Values.resourcesToIgnore | default list }}
{{- range $ignored }}
{{- if not (has . (list "configmaps" "secrets")) }}
{{- fail (printf "resourcesToIgnore: %s is neither configmaps nor secrets" (toJson .)) }}
{{- end }}
{{- end }}
{{- if gt (len (uniq $ignored)) 1 }}
{{- fail "resourcesToIgnore: list configmaps or secrets, not both; with both ignored kube-reloader has nothing to watch and refuses to start" }}
{{- end }}
{{- first $ignored | default "" }}
{{- end }}

{{/* What the controller needs in each watched namespace, or cluster-wide. */}}
{{- define "kube-reloader.watchRules" -}}
{{- $ignored := include "kube-reloader.ignoredResources" . -}}
- apiGroups: [""]
  resources: [{{ without (list "configmaps" "secrets") $ignored | join ", " }}]
  verbs: [list, watch]
{{- /* The workloads of each kind rolled, one rule per API group, in the order of the kinds. */}}
{{- $groups := list }}
{{- $resources := dict }}
{{- range (include "kube-reloader.workloadKinds" . | fromJsonArray) }}
{{- if not (hasKey $resources .group) }}
{{- $groups = append $groups .group }}
{{- $_ := set $resources .group list }}
{{- end }}
{{- $_ := set $resources .group (append (get $resources .group) .resource | uniq) }}
{{- end }}
{{- range $groups }}
- apiGroups: {{ list . | toJson }}
  resources: {{ get $resources . | toJson | replace "," ", " }}
  verbs: [list, watch, patch]
{{- end }}
{{- if .Values.csi.enabled }}
# csi.enabled: the Secrets Store CSI driver's SecretProviderClasses (their ignore and match
# annotations, their names) and the status objects it writes per pod.
- apiGroups: [secrets-store.csi.x-k8s.io]
  resources: [secretproviderclasses, secretproviderclasspodstatuses]
  verbs: [list, watch]
# A status object names only its Pod: the workload is found through the Pod's ownerReferences,
# then its ReplicaSet's (a metadata read of each, once).
- apiGroups: [""]
  resources: [pods]
  verbs: [get]
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [get]
{{- end }}
{{- if or .Values.progressive.enabled .Values.progressive.listPods }}
# progressive: the pods of a workload whose progressive rollout is under way, by its selector, to
# see its new pods crash-loop.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
{{- end }}
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}
