{{/* Environment of each service (README "Configuration"); every secret by secretKeyRef.
     The wiring (URLs of the services each one calls, its keys, the callers it trusts)
     follows libs/topology/topology.toml; scripts/chart-lint checks that it does. */}}

{{- define "bizops.env.identity" -}}
{{- $v := .Values -}}
{{- $s := $v.services.identity -}}
- name: BIZOPS_GRPC_ADDR
  value: "0.0.0.0:{{ $s.grpcPort }}"
- name: BIZOPS_METRICS_ADDR
  value: "0.0.0.0:{{ $s.metricsPort }}"
{{ include "bizops.commonEnv" . }}
{{ include "bizops.databaseEnv" (dict "root" . "role" "identity") }}
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_KEYS__SIGNING_KEY" "secret" $v.identityKeys.secretName "key" $v.identityKeys.signingKeyKey) }}
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_KEYS__PREVIOUS_PUBLIC_KEYS" "secret" $v.identityKeys.secretName "key" $v.identityKeys.previousPublicKeysKey "optional" true) }}
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_AUTH__SERVICE_KEY" "secret" $v.serviceAuth.secretName "key" $v.serviceAuth.keys.identity) }}
{{- include "bizops.trustedCallersEnv" (dict "root" . "callers" (list "gateway")) }}
- name: BIZOPS_CATALOG_URL
  value: {{ include "bizops.grpcUrl" (dict "root" . "c" "catalog") | quote }}
- name: BIZOPS_EXECUTOR_URL
  value: {{ include "bizops.grpcUrl" (dict "root" . "c" "executor") | quote }}
- name: BIZOPS_VAULT_URL
  value: {{ include "bizops.grpcUrl" (dict "root" . "c" "vault") | quote }}
{{ include "bizops.natsEnv" . }}
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_NOTIFICATIONS__RESEND_API_KEY" "secret" $v.providerKeys.secretName "key" $v.providerKeys.resendKey "optional" true) }}
# Password hashes at once follow the container's memory limit (128 MiB each).
- name: BIZOPS_SCRYPT__MEMORY_MIB
  valueFrom:
    resourceFieldRef:
      resource: limits.memory
      divisor: 1Mi
{{- include "bizops.extraEnv" $s.env }}
{{- end -}}

{{- define "bizops.env.catalog" -}}
{{- $v := .Values -}}
{{- $s := $v.services.catalog -}}
- name: BIZOPS_GRPC_ADDR
  value: "0.0.0.0:{{ $s.grpcPort }}"
- name: BIZOPS_METRICS_ADDR
  value: "0.0.0.0:{{ $s.metricsPort }}"
{{ include "bizops.commonEnv" . }}
{{ include "bizops.databaseEnv" (dict "root" . "role" "catalog") }}
- name: BIZOPS_IDENTITY_URL
  value: {{ include "bizops.grpcUrl" (dict "root" . "c" "identity") | quote }}
{{- include "bizops.trustedCallersEnv" (dict "root" . "callers" (list "gateway" "executor" "identity")) }}
{{ include "bizops.natsEnv" . }}
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_KEYS__KEYRING" "secret" $v.catalogKeys.secretName "key" $v.catalogKeys.encryptionKeysKey) }}
{{- include "bizops.extraEnv" $s.env }}
{{- end -}}

{{- define "bizops.env.vault" -}}
{{- $v := .Values -}}
{{- $s := $v.services.vault -}}
- name: BIZOPS_GRPC_ADDR
  value: "0.0.0.0:{{ $s.grpcPort }}"
- name: BIZOPS_METRICS_ADDR
  value: "0.0.0.0:{{ $s.metricsPort }}"
{{ include "bizops.commonEnv" . }}
{{ include "bizops.databaseEnv" (dict "root" . "role" "vault") }}
- name: BIZOPS_IDENTITY_URL
  value: {{ include "bizops.grpcUrl" (dict "root" . "c" "identity") | quote }}
{{- include "bizops.trustedCallersEnv" (dict "root" . "callers" (list "executor" "identity" "ops")) }}
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_KEYS__KEYRING" "secret" $v.vaultKeys.secretName "key" $v.vaultKeys.keyringKey) }}
- name: BIZOPS_KEYS__ACTIVE
  value: {{ $v.vaultKeys.activeVersion | quote }}
{{- include "bizops.extraEnv" $s.env }}
{{- end -}}

{{- define "bizops.env.executor" -}}
{{- $v := .Values -}}
{{- $s := $v.services.executor -}}
- name: BIZOPS_GRPC_ADDR
  value: "0.0.0.0:{{ $s.grpcPort }}"
- name: BIZOPS_METRICS_ADDR
  value: "0.0.0.0:{{ $s.metricsPort }}"
{{ include "bizops.commonEnv" . }}
{{ include "bizops.databaseEnv" (dict "root" . "role" "executor") }}
- name: BIZOPS_IDENTITY_URL
  value: {{ include "bizops.grpcUrl" (dict "root" . "c" "identity") | quote }}
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_AUTH__SERVICE_KEY" "secret" $v.serviceAuth.secretName "key" $v.serviceAuth.keys.executor) }}
{{- include "bizops.trustedCallersEnv" (dict "root" . "callers" (list "identity")) }}
- name: BIZOPS_CATALOG_URL
  value: {{ include "bizops.grpcUrl" (dict "root" . "c" "catalog") | quote }}
- name: BIZOPS_VAULT_URL
  value: {{ include "bizops.grpcUrl" (dict "root" . "c" "vault") | quote }}
{{ include "bizops.natsEnv" . }}
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_AI__SERVER_KEY" "secret" $v.providerKeys.secretName "key" $v.providerKeys.anthropicKey "optional" true) }}
{{- include "bizops.extraEnv" $s.env }}
{{- end -}}

{{- define "bizops.env.gateway" -}}
{{- $v := .Values -}}
{{- $s := $v.services.gateway -}}
- name: BIZOPS_HTTP_ADDR
  value: "0.0.0.0:{{ $s.httpPort }}"
- name: BIZOPS_METRICS_ADDR
  value: "0.0.0.0:{{ $s.metricsPort }}"
{{ include "bizops.commonEnv" . }}
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_AUTH__SERVICE_KEY" "secret" $v.serviceAuth.secretName "key" $v.serviceAuth.keys.gateway) }}
- name: BIZOPS_IDENTITY_URL
  value: {{ include "bizops.grpcUrl" (dict "root" . "c" "identity") | quote }}
- name: BIZOPS_CATALOG_URL
  value: {{ include "bizops.grpcUrl" (dict "root" . "c" "catalog") | quote }}
- name: BIZOPS_VAULT_URL
  value: {{ include "bizops.grpcUrl" (dict "root" . "c" "vault") | quote }}
- name: BIZOPS_EXECUTOR_URL
  value: {{ include "bizops.grpcUrl" (dict "root" . "c" "executor") | quote }}
{{ include "bizops.natsEnv" . }}
- name: BIZOPS_PUBLIC_ORIGIN
  value: {{ $s.publicOrigin | quote }}
{{- if $s.clientIpHeader }}
- name: BIZOPS_CLIENT_IP_HEADER
  value: {{ $s.clientIpHeader | quote }}
{{- end }}
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_CSRF_KEY" "secret" $v.gatewayKeys.secretName "key" $v.gatewayKeys.csrfKeyKey) }}
{{- include "bizops.extraEnv" $s.env }}
{{- end -}}
