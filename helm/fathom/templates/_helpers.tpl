{{- define "fathom.name" -}}{{ .Chart.Name }}{{- end -}}

{{- define "fathom.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "fathom.labels" -}}
app.kubernetes.io/name: {{ include "fathom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fathom.selector" -}}
app.kubernetes.io/name: {{ include "fathom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fathom.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "fathom.keysSecret" -}}
{{- .Values.apiKeys.existingSecret | default (printf "%s-api-keys" (include "fathom.fullname" .)) -}}
{{- end -}}

{{/* Environment shared by the API and the workers: everything points at shared state. */}}
{{- define "fathom.env" -}}
- name: FATHOM_STORE__BACKEND
  value: server
- name: FATHOM_STORE__URL
  value: {{ .Values.qdrant.url | quote }}
- name: FATHOM_STORE__COLLECTION_PREFIX
  value: {{ .Values.qdrant.collectionPrefix | quote }}
- name: FATHOM_STORE__TIMEOUT_S
  value: {{ .Values.qdrant.timeoutSeconds | quote }}
{{- if .Values.qdrant.apiKeySecret }}
- name: FATHOM_STORE__API_KEY
  valueFrom: {secretKeyRef: {name: {{ .Values.qdrant.apiKeySecret }}, key: api-key}}
{{- end }}
- name: FATHOM_REDIS_URL
  valueFrom: {secretKeyRef: {name: {{ required "redis.urlSecret is required" .Values.redis.urlSecret }}, key: url}}
- name: FATHOM_REGISTRY_URL
  valueFrom: {secretKeyRef: {name: {{ required "registry.urlSecret is required" .Values.registry.urlSecret }}, key: url}}
- name: FATHOM_HOME
  value: /var/lib/fathom
- name: FATHOM_MODELS__DIR
  value: /opt/fathom/models
- name: FATHOM_MODELS__THREADS
  value: {{ .Values.api.modelThreads | quote }}
- name: FATHOM_SERVICE__API_KEYS_FILE
  value: /etc/fathom/keys/api_keys.json
- name: FATHOM_SERVICE__TENANTS_FILE
  value: /etc/fathom/config/tenants.json
- name: FATHOM_SERVICE__LOG_LEVEL
  value: {{ .Values.observability.logLevel | quote }}
- name: FATHOM_OBSERVABILITY__TRACE_EXPORTER
  value: {{ .Values.observability.otelExporter | quote }}
{{- if .Values.observability.otlpEndpoint }}
- name: FATHOM_OBSERVABILITY__OTLP_ENDPOINT
  value: {{ .Values.observability.otlpEndpoint | quote }}
{{- end }}
- name: FATHOM_RERANK__KIND
  value: {{ .Values.rerank.kind | quote }}
- name: FATHOM_RERANK__DEPTH
  value: {{ .Values.rerank.depth | quote }}
- name: FATHOM_RERANK__BUDGET_MS
  value: {{ .Values.rerank.budgetMs | quote }}
{{- range $k, $v := .Values.settings }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- end -}}

{{- define "fathom.volumes" -}}
- name: keys
  secret: {secretName: {{ include "fathom.keysSecret" . }}}
- name: config
  configMap: {name: {{ include "fathom.fullname" . }}-config}
- name: home
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "fathom.volumeMounts" -}}
- {name: keys, mountPath: /etc/fathom/keys, readOnly: true}
- {name: config, mountPath: /etc/fathom/config, readOnly: true}
- {name: home, mountPath: /var/lib/fathom}
- {name: tmp, mountPath: /tmp}
{{- end -}}
