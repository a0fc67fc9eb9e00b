{{- define "qdrant.fullname" -}}{{ printf "%s-qdrant" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- define "qdrant.labels" -}}
app.kubernetes.io/name: qdrant
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "qdrant-%s" .Chart.Version }}
{{- end -}}
{{- define "qdrant.selector" -}}
app.kubernetes.io/name: qdrant
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "qdrant.apiKeySecret" -}}{{ printf "%s-apikey" (include "qdrant.fullname" .) }}{{- end -}}
