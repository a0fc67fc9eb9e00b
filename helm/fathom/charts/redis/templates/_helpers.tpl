{{- define "redis.fullname" -}}{{ printf "%s-redis" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- define "redis.labels" -}}
app.kubernetes.io/name: redis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "redis-%s" .Chart.Version }}
{{- end -}}
{{- define "redis.selector" -}}
app.kubernetes.io/name: redis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: master
{{- end -}}
{{- define "redis.secretName" -}}{{ .Values.auth.existingSecret | default (include "redis.fullname" .) }}{{- end -}}
