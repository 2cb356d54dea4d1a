{{/* Environment of each service (README "Configuration"); every secret by secretKeyRef. */}}

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
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_SERVICE_AUTH__SERVICE_KEY" "secret" $v.serviceAuth.secretName "key" $v.serviceAuth.keys.identity) }}
{{- include "bizops.trustedCallersEnv" (dict "root" . "env" "BIZOPS_SERVICE_AUTH__TRUSTED_CALLERS" "callers" (list "gateway")) }}
- name: BIZOPS_DELETION__CATALOG_URL
  value: {{ include "bizops.grpcUrl" (dict "root" . "c" "catalog") | quote }}
- name: BIZOPS_DELETION__EXECUTOR_URL
  value: {{ include "bizops.grpcUrl" (dict "root" . "c" "executor") | quote }}
- name: BIZOPS_DELETION__VAULT_URL
  value: {{ include "bizops.grpcUrl" (dict "root" . "c" "vault") | quote }}
{{ include "bizops.natsEnv" . }}
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_NOTIFICATIONS__RESEND_API_KEY" "secret" $v.providerKeys.secretName "key" $v.providerKeys.resendKey "optional" true) }}
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
- name: BIZOPS_AUTH__IDENTITY_URL
  value: {{ include "bizops.grpcUrl" (dict "root" . "c" "identity") | quote }}
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_AUTH__SERVICE_KEY" "secret" $v.serviceAuth.secretName "key" $v.serviceAuth.keys.catalog) }}
{{- include "bizops.trustedCallersEnv" (dict "root" . "env" "BIZOPS_AUTH__TRUSTED_CALLERS" "callers" (list "gateway" "executor" "identity")) }}
{{ include "bizops.natsEnv" . }}
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_WEBHOOKS__ENCRYPTION_KEYS" "secret" $v.catalogKeys.secretName "key" $v.catalogKeys.encryptionKeysKey) }}
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
- name: BIZOPS_AUTH__IDENTITY_URL
  value: {{ include "bizops.grpcUrl" (dict "root" . "c" "identity") | quote }}
{{- include "bizops.trustedCallersEnv" (dict "root" . "env" "BIZOPS_AUTH__TRUSTED_CALLERS" "callers" (list "gateway" "executor" "identity" "ops")) }}
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_KEYS__KEYRING" "secret" $v.vaultKeys.secretName "key" $v.vaultKeys.keyringKey) }}
- name: BIZOPS_KEYS__ACTIVE_VERSION
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
- name: BIZOPS_AUTH__IDENTITY_URL
  value: {{ include "bizops.grpcUrl" (dict "root" . "c" "identity") | quote }}
{{ include "bizops.secretEnv" (dict "env" "BIZOPS_AUTH__SERVICE_KEY" "secret" $v.serviceAuth.secretName "key" $v.serviceAuth.keys.executor) }}
{{- include "bizops.trustedCallersEnv" (dict "root" . "env" "BIZOPS_AUTH__TRUSTED_CALLERS" "callers" (list "gateway" "identity" "catalog")) }}
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
