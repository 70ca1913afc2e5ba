{{/* Names, labels and the environment the services share. */}}

{{- define "alumini.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "alumini.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one service; call with (dict "root" $ "name" "collector"). */}}
{{- define "alumini.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "alumini.componentLabels" -}}
{{ include "alumini.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "alumini.secretName" -}}
{{- default (include "alumini.fullname" .) .Values.secrets.name -}}
{{- end -}}

{{- define "alumini.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "alumini.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "alumini.registryConfigMap" -}}
{{- default (printf "%s-clients" (include "alumini.fullname" .)) .Values.registry.existingConfigMap -}}
{{- end -}}

{{/* The environment variable envflag reads a flag from: kafka-brokers -> ALUMINI_KAFKA_BROKERS. */}}
{{- define "alumini.envName" -}}
{{- printf "ALUMINI_%s" (. | upper | replace "-" "_" | replace "." "_") -}}
{{- end -}}

{{/* A plain flag as an EnvVar; call with (list "flag-name" value). */}}
{{- define "alumini.flagEnv" -}}
{{- $value := index . 1 -}}
{{- /* Values files give numbers as float64: 2097152, not 2.097152e+06. */ -}}
{{- if and (kindIs "float64" $value) (eq $value (floor $value)) -}}
{{- $value = int64 $value -}}
{{- end -}}
- name: {{ include "alumini.envName" (index . 0) }}
  value: {{ $value | toString | quote }}
{{- end -}}

{{/* Kafka settings; call with the root context. */}}
{{- define "alumini.kafkaEnv" -}}
{{- $k := .Values.kafka -}}
{{ include "alumini.flagEnv" (list "kafka-brokers" $k.brokers) }}
{{ include "alumini.flagEnv" (list "kafka-raw-topic" $k.topics.raw) }}
{{ include "alumini.flagEnv" (list "kafka-enriched-topic" $k.topics.enriched) }}
{{ include "alumini.flagEnv" (list "kafka-dead-letter-topic" $k.topics.deadLetter) }}
{{ include "alumini.flagEnv" (list "kafka-partitions" $k.partitions) }}
{{ include "alumini.flagEnv" (list "kafka-replication-factor" $k.replicationFactor) }}
{{- if $k.tls.enabled }}
{{ include "alumini.flagEnv" (list "kafka-tls" "true") }}
{{- if $k.tls.serverName }}
{{ include "alumini.flagEnv" (list "kafka-tls-server-name" $k.tls.serverName) }}
{{- end }}
{{- if $k.tls.secretName }}
{{ include "alumini.flagEnv" (list "kafka-tls-ca-file" "/etc/alumini/kafka-tls/ca.crt") }}
{{- if $k.tls.clientCertificate }}
{{ include "alumini.flagEnv" (list "kafka-tls-cert-file" "/etc/alumini/kafka-tls/tls.crt") }}
{{ include "alumini.flagEnv" (list "kafka-tls-key-file" "/etc/alumini/kafka-tls/tls.key") }}
{{- end }}
{{- end }}
{{- end }}
{{- if $k.sasl.mechanism }}
{{ include "alumini.flagEnv" (list "kafka-sasl-mechanism" $k.sasl.mechanism) }}
{{ include "alumini.flagEnv" (list "kafka-sasl-username" $k.sasl.username) }}
- name: {{ include "alumini.envName" "kafka-sasl-password" }}
  valueFrom:
    secretKeyRef:
      name: {{ include "alumini.secretName" . }}
      key: kafka-sasl-password
{{- end }}
{{- end -}}

{{/* ClickHouse settings; call with the root context. */}}
{{- define "alumini.clickhouseEnv" -}}
{{- $c := .Values.clickhouse -}}
{{ include "alumini.flagEnv" (list "clickhouse-addr" $c.addr) }}
{{ include "alumini.flagEnv" (list "clickhouse-database" $c.database) }}
{{ include "alumini.flagEnv" (list "clickhouse-user" $c.user) }}
- name: {{ include "alumini.envName" "clickhouse-password" }}
  valueFrom:
    secretKeyRef:
      name: {{ include "alumini.secretName" . }}
      key: clickhouse-password
      optional: true
{{- if $c.cluster }}
{{ include "alumini.flagEnv" (list "clickhouse-cluster" $c.cluster) }}
{{- end }}
{{- if $c.tls.enabled }}
{{ include "alumini.flagEnv" (list "clickhouse-tls" "true") }}
{{- if $c.tls.serverName }}
{{ include "alumini.flagEnv" (list "clickhouse-tls-server-name" $c.tls.serverName) }}
{{- end }}
{{- if $c.tls.caSecretName }}
{{ include "alumini.flagEnv" (list "clickhouse-tls-ca-file" "/etc/alumini/clickhouse-tls/ca.crt") }}
{{- end }}
{{- end }}
{{- end -}}
