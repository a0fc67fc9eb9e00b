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

{{- define "fathom.storeUrl" -}}
{{- if .Values.store.url -}}{{ .Values.store.url }}
{{- else if .Values.qdrant.enabled -}}http://{{ .Release.Name }}-qdrant:6333
{{- else -}}{{ fail "store.url is required when qdrant.enabled=false (the external Qdrant cluster)" }}
{{- end -}}
{{- end -}}

{{- define "fathom.settingsConfigMap" -}}{{ include "fathom.fullname" . }}-settings{{- end -}}

{{/* Credentials only, from Secrets; every other setting comes from the settings ConfigMap (envFrom). */}}
{{- define "fathom.secretEnv" -}}
{{- if .Values.store.apiKeySecret }}
- name: FATHOM_STORE__API_KEY
  valueFrom: {secretKeyRef: {name: {{ .Values.store.apiKeySecret }}, key: api-key}}
{{- else if and .Values.qdrant.enabled .Values.qdrant.apiKey }}
- name: FATHOM_STORE__API_KEY
  valueFrom: {secretKeyRef: {name: {{ .Release.Name }}-qdrant-apikey, key: api-key}}
{{- end }}
{{- if .Values.redis.enabled }}
{{- if .Values.redis.auth.enabled }}
- name: REDIS_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ .Values.redis.auth.existingSecret | default (printf "%s-redis" .Release.Name) }}, key: {{ .Values.redis.auth.existingSecretPasswordKey | default "redis-password" }}}}
- name: FATHOM_REDIS_URL
  value: "redis://:$(REDIS_PASSWORD)@{{ .Release.Name }}-redis-master:6379/0"
{{- else }}
- name: FATHOM_REDIS_URL
  value: "redis://{{ .Release.Name }}-redis-master:6379/0"
{{- end }}
{{- else }}
- name: FATHOM_REDIS_URL
  valueFrom: {secretKeyRef: {name: {{ required "externalRedis.urlSecret is required when redis.enabled=false" .Values.externalRedis.urlSecret }}, key: url}}
{{- end }}
- name: FATHOM_REGISTRY_URL
  valueFrom: {secretKeyRef: {name: {{ required "registry.urlSecret is required" .Values.registry.urlSecret }}, key: url}}
{{- end -}}

{{/* What a Fathom container reads its configuration from: the shared ConfigMap, then the secrets. */}}
{{- define "fathom.envSources" -}}
envFrom:
  - configMapRef: {name: {{ include "fathom.settingsConfigMap" . }}}
env:
  {{- include "fathom.secretEnv" . | nindent 2 }}
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
