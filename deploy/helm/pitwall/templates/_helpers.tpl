{{/* The release's full name, at most 63 characters (a DNS label). */}}
{{- define "pitwall.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "pitwall.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pitwall.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "pitwall.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component (ingest, score). */}}
{{- define "pitwall.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pitwall.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "pitwall.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pitwall.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "pitwall.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The PII hashing key, for the containers that read events (ingestion). */}}
{{- define "pitwall.piiEnv" -}}
- name: PITWALL_PII_KEY
  valueFrom:
    secretKeyRef:
      name: {{ required "piiKeySecret.name is required" .Values.piiKeySecret.name }}
      key: {{ .Values.piiKeySecret.key }}
{{- end -}}

{{/* Environment every pitwall container gets: region, alert sinks, log level. */}}
{{- define "pitwall.env" -}}
- name: AWS_REGION
  value: {{ .Values.aws.region | quote }}
{{- with .Values.alerts.slackWebhook }}
{{- if .name }}
- name: PITWALL_SLACK_WEBHOOK_URL
  valueFrom:
    secretKeyRef: {name: {{ .name }}, key: {{ .key }}}
{{- end }}
{{- end }}
{{- with .Values.alerts.opsgenieApiKey }}
{{- if .name }}
- name: PITWALL_OPSGENIE_API_KEY
  valueFrom:
    secretKeyRef: {name: {{ .name }}, key: {{ .key }}}
{{- end }}
{{- end }}
- name: PITWALL_LOG
  value: {{ .Values.logs.level | quote }}
- name: PITWALL_LOG_JSON
  value: {{ .Values.logs.json | quote }}
{{- with .Values.aws.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
