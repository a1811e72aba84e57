{{/* Names: <release>-<name>-service, e.g. mart-order-service (fits the 63-character limit). */}}
{{- define "mart.fullname" -}}
{{- printf "%s-%s-service" .root.Release.Name .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mart.labels" -}}
app.kubernetes.io/name: {{ .name }}-service
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: online-mart
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "mart.selector" -}}
app.kubernetes.io/name: {{ .name }}-service
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* The service's values: `defaults` overridden by `services.<name>`. */}}
{{- define "mart.settings" -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.defaults) (deepCopy .svc)) -}}
{{- end -}}

{{- define "mart.image" -}}
{{- $img := .root.Values.image -}}
{{- $repo := ternary (printf "%s/%s" $img.registry $img.repository) $img.repository (ne $img.registry "") -}}
{{- printf "%s/%s:%s" $repo .svc.package $img.tag -}}
{{- end -}}

{{/* secretKeyRef to a key of the secrets Secret. */}}
{{- define "mart.secretRef" -}}
valueFrom:
  secretKeyRef:
    name: {{ .root.Values.secrets.existingSecret }}
    key: {{ .key }}
    {{- if .optional }}
    optional: true
    {{- end }}
{{- end -}}
