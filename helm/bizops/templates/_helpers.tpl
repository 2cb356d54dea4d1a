{{/* Names */}}
{{- define "bizops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "bizops.fullname" -}}
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

{{/* The ordered list of components (keys of .Values.services). */}}
{{- define "bizops.components" -}}identity catalog vault executor gateway{{- end -}}
{{- define "bizops.grpcComponents" -}}identity catalog vault executor{{- end -}}

{{/* <fullname>-<component>; dict "root" $ "c" "identity" */}}
{{- define "bizops.componentName" -}}
{{- printf "%s-%s" (include "bizops.fullname" .root) .c | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "bizops.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "bizops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bizops
{{- end -}}

{{/* dict "root" $ "c" "identity" */}}
{{- define "bizops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bizops.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .c }}
{{- end -}}

{{- define "bizops.componentLabels" -}}
{{ include "bizops.labels" .root }}
app.kubernetes.io/component: {{ .c }}
{{- end -}}

{{/* dict "root" $ "binary" "identity" */}}
{{- define "bizops.image" -}}
{{- $img := .root.Values.image -}}
{{- $digest := index ($img.digests | default dict) .binary | default "" -}}
{{- if $digest -}}
{{- printf "%s/%s@%s" $img.registry .binary $digest -}}
{{- else -}}
{{- printf "%s/%s:%s" $img.registry .binary ($img.tag | default .root.Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* gRPC URL of a component: dict "root" $ "c" "identity" */}}
{{- define "bizops.grpcUrl" -}}
{{- $svc := index .root.Values.services .c -}}
{{- printf "http://%s:%d" (include "bizops.componentName" .) (int $svc.grpcPort) -}}
{{- end -}}

{{/* Comma-joined public keys of the named callers (empty ones skipped). */}}
{{- define "bizops.trustedCallers" -}}
{{- $keys := list -}}
{{- range .callers -}}
{{- $k := index $.root.Values.serviceAuth.publicKeys . | default "" -}}
{{- if $k }}{{ $keys = append $keys $k }}{{ end -}}
{{- end -}}
{{- join "," $keys -}}
{{- end -}}

{{/* env var from an existing Secret: dict "env" NAME "secret" S "key" K "optional" bool */}}
{{- define "bizops.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{/* Env shared by every service. */}}
{{- define "bizops.commonEnv" -}}
- name: BIZOPS_LOG__FORMAT
  value: {{ .Values.logFormat | quote }}
{{- if .Values.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.otlpEndpoint | quote }}
{{- end }}
{{- end -}}

{{- define "bizops.natsEnv" -}}
{{- if .Values.nats.urlSecret.name }}
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_NATS__URL" "secret" .Values.nats.urlSecret.name "key" .Values.nats.urlSecret.key) }}
{{- else }}
- name: BIZOPS_NATS__URL
  value: {{ .Values.nats.url | quote }}
{{- end }}
- name: BIZOPS_NATS__PREFIX
  value: {{ .Values.nats.prefix | quote }}
- name: BIZOPS_NATS__REPLICAS
  value: {{ .Values.nats.replicas | quote }}
- name: BIZOPS_NATS__MAX_AGE
  value: {{ .Values.nats.maxAge | quote }}
{{- end -}}

{{/* Service-role database URLs: dict "root" $ "role" "identity" */}}
{{- define "bizops.databaseEnv" -}}
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_DATABASE__URL" "secret" .root.Values.database.secretName "key" (printf "%s-url" .role)) }}
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_DATABASE__SYSTEM_URL" "secret" .root.Values.database.secretName "key" (printf "%s-system-url" .role)) }}
- name: BIZOPS_DATABASE__MAX_CONNECTIONS
  value: {{ .root.Values.database.maxConnections | quote }}
{{- end -}}

{{/* Extra plain env of a component (map NAME: value). */}}
{{- define "bizops.extraEnv" -}}
{{- range $k, $v := . }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{/* BIZOPS_AUTH__TRUSTED_CALLERS, only when at least one public key is configured. */}}
{{- define "bizops.trustedCallersEnv" -}}
{{- $v := include "bizops.trustedCallers" (dict "root" .root "callers" .callers) -}}
{{- if $v }}
- name: BIZOPS_AUTH__TRUSTED_CALLERS
  value: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/* Egress rule to an external dependency: dict "name" "postgres" "peer" .Values.networkPolicy.postgres */}}
{{- define "bizops.externalEgress" -}}
{{- $p := .peer -}}
{{- if not (or $p.cidrs $p.namespaceSelector $p.podSelector) -}}
{{- fail (printf "networkPolicy.%s: set cidrs, namespaceSelector or podSelector (or disable networkPolicy)" .name) -}}
{{- end -}}
- to:
    {{- range $p.cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
    {{- $sel := dict }}
    {{- with $p.namespaceSelector }}{{ $_ := set $sel "namespaceSelector" . }}{{ end }}
    {{- with $p.podSelector }}{{ $_ := set $sel "podSelector" . }}{{ end }}
    {{- if $sel }}
    - {{ toYaml $sel | nindent 6 | trim }}
    {{- end }}
  ports:
    - port: {{ $p.port }}
      protocol: TCP
{{- end -}}

{{/* One `<binary> migrate` container of the migration Job: dict "root" $ "c" "identity" */}}
{{- define "bizops.migrateContainer" -}}
{{- $root := .root -}}
{{- $s := index $root.Values.services .c -}}
- name: migrate-{{ .c }}
  image: {{ include "bizops.image" (dict "root" $root "binary" $s.binary) | quote }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  args: ["migrate"]
  env:
    - name: BIZOPS_LOG__FORMAT
      value: {{ $root.Values.logFormat | quote }}
    {{- include "bizops.secretEnv" (dict "env" "BIZOPS_DATABASE__MIGRATE_URL" "secret" $root.Values.database.secretName "key" $root.Values.database.migrateUrlKey) | nindent 4 }}
  resources:
    {{- toYaml $root.Values.migration.resources | nindent 4 }}
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
{{- end -}}
