{{/* Names, labels and the pieces both Deployments share. */}}

{{- define "mailsec-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or just the release name when it already contains the chart name. */}}
{{- define "mailsec-operator.fullname" -}}
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

{{/* Object names per role; short enough for a suffix. */}}
{{- define "mailsec-operator.controller.fullname" -}}
{{- printf "%s-controller" (include "mailsec-operator.fullname" . | trunc 52 | trimSuffix "-") }}
{{- end }}

{{- define "mailsec-operator.serve.fullname" -}}
{{- printf "%s-serve" (include "mailsec-operator.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{- define "mailsec-operator.receiver.fullname" -}}
{{- printf "%s-receiver" (include "mailsec-operator.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "mailsec-operator.receiver.serviceAccountName" -}}
{{- if .Values.reports.receiver.serviceAccount.create }}
{{- default (include "mailsec-operator.receiver.fullname" .) .Values.reports.receiver.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.reports.receiver.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mailsec-operator.controller.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create }}
{{- default (include "mailsec-operator.controller.fullname" .) .Values.controller.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.controller.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mailsec-operator.serve.serviceAccountName" -}}
{{- if .Values.serve.serviceAccount.create }}
{{- default (include "mailsec-operator.serve.fullname" .) .Values.serve.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serve.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mailsec-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mailsec-operator.labels" -}}
helm.sh/chart: {{ include "mailsec-operator.chart" . }}
{{ include "mailsec-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mailsec-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "mailsec-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mailsec-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one role's objects; call with (dict "ctx" $ "component" "controller"). */}}
{{- define "mailsec-operator.componentLabels" -}}
{{ include "mailsec-operator.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "mailsec-operator.componentSelectorLabels" -}}
{{ include "mailsec-operator.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "mailsec-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* image.pullPolicy, or Always for a tag (it can move) and IfNotPresent for a digest. */}}
{{- define "mailsec-operator.imagePullPolicy" -}}
{{- if .Values.image.pullPolicy }}
{{- .Values.image.pullPolicy }}
{{- else if .Values.image.digest }}
{{- "IfNotPresent" }}
{{- else }}
{{- "Always" }}
{{- end }}
{{- end }}

{{/* The policy server's Service: name, port, and the URL the controller checks policies at. */}}
{{- define "mailsec-operator.serve.servicePort" -}}
{{- if .Values.serve.tls.secretName }}{{ .Values.serve.tls.servicePort }}{{ else }}{{ .Values.serve.service.port }}{{ end }}
{{- end }}

{{- define "mailsec-operator.policyServerUrl" -}}
{{- if .Values.controller.policyServerUrl }}
{{- .Values.controller.policyServerUrl }}
{{- else if not .Values.serve.tls.secretName }}
{{- printf "http://%s.%s.svc.%s:%v" (include "mailsec-operator.serve.fullname" .) .Release.Namespace .Values.controller.clusterDomain .Values.serve.service.port }}
{{- end }}
{{- end }}

{{/* The restricted Pod Security Standard: both roles need no privilege at all. */}}
{{- define "mailsec-operator.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "mailsec-operator.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Probes on the admin port: /livez (the process answers) and /readyz. */}}
{{- define "mailsec-operator.probes" -}}
livenessProbe:
  httpGet:
    path: /livez
    port: admin
  initialDelaySeconds: 5
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: admin
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
{{- end }}

{{/* The connection bounds of a public endpoint (serve.limits, reports.receiver.limits) as
`mailsec serve` and `mailsec receive` flags. int64: helm reads numbers as floats, and a float
of a million would print as 1e+06. */}}
{{- define "mailsec-operator.limitArgs" -}}
- --max-connections={{ int64 .maxConnections }}
- --header-timeout={{ .headerTimeout }}
- --idle-timeout={{ .idleTimeout }}
- --max-header-bytes={{ int64 .maxHeaderBytes }}
- --max-requests-per-connection={{ int64 .maxRequestsPerConnection }}
- --max-connection-age={{ .maxConnectionAge }}
{{- end }}
