{{/*
Names. The fullname behaves as upstream's: a release named job-executor-service gets the fullname
job-executor-service (Jobs carry it as app.kubernetes.io/managed-by).
*/}}
{{- define "jes.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jes.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "jes.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jes.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jes.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "jes.labels" -}}
helm.sh/chart: {{ include "jes.chart" . }}
{{ include "jes.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
"true" when a value is true: a boolean true or the string "true" (any case). Values files written
for the original chart sometimes quote booleans.
*/}}
{{- define "jes.isTrue" -}}
{{- if kindIs "string" . }}{{ if eq (lower .) "true" }}true{{ end }}{{ else if . }}true{{ end }}
{{- end }}

{{/*
Images. The original images (keptncontrib/job-executor-service[-initcontainer]) cannot run jes, so
a values file that still names them gets the jes image instead (NOTES.txt says so).
*/}}
{{- define "jes.isUpstreamImage" -}}
{{- $repo := . | default "" | trimPrefix "docker.io/" | trimPrefix "index.docker.io/" }}
{{- if or (eq $repo "keptncontrib/job-executor-service") (eq $repo "keptncontrib/job-executor-service-initcontainer") }}true{{ end }}
{{- end }}

{{- define "jes.imageTag" -}}
{{- if or (include "jes.isUpstreamImage" .Values.image.repository) (not .Values.image.tag) }}
{{- .Chart.AppVersion }}
{{- else }}
{{- .Values.image.tag | toString }}
{{- end }}
{{- end }}

{{- define "jes.image" -}}
{{- $repo := .Values.image.repository | default "ghcr.io/jes-project/jes" }}
{{- if include "jes.isUpstreamImage" $repo }}{{ $repo = "ghcr.io/jes-project/jes" }}{{ end }}
{{- $image := printf "%s:%s" $repo (include "jes.imageTag" .) }}
{{- if and .Values.image.digest (not (include "jes.isUpstreamImage" .Values.image.repository)) }}
{{- $image = printf "%s@%s" $image .Values.image.digest }}
{{- end }}
{{- $image }}
{{- end }}

{{- define "jes.initImage" -}}
{{- $init := .Values.jobexecutorserviceinitcontainer.image }}
{{- if and $init.repository (not (include "jes.isUpstreamImage" $init.repository)) }}
{{- printf "%s:%s" $init.repository ($init.tag | default "" | toString | default (include "jes.imageTag" .)) }}
{{- else }}
{{- include "jes.image" . }}
{{- end }}
{{- end }}

{{/* Service accounts: jes's own, and the default one of job pods. */}}
{{- define "jes.serviceAccountName" -}}
{{- if include "jes.isTrue" .Values.serviceAccount.create }}
{{- default (include "jes.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "jes.jobServiceAccountName" -}}
{{- $sa := .Values.jobConfig.serviceAccount }}
{{- if include "jes.isTrue" $sa.create }}
{{- printf "%s-%s" (include "jes.fullname" .) ($sa.name | default "default-job-account") | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $sa.name | default "" }}
{{- end }}
{{- end }}

{{- define "jes.secretName" -}}
{{- .Values.remoteControlPlane.api.existingSecret | default (printf "%s-keptn-api" (include "jes.fullname" .)) }}
{{- end }}

{{- define "jes.oauth" -}}
{{- if eq (.Values.remoteControlPlane.api.authMode | default "token") "oauth" }}true{{ end }}
{{- end }}

{{- define "jes.autoDetect" -}}
{{- include "jes.isTrue" .Values.remoteControlPlane.autoDetect.enabled }}
{{- end }}

{{/*
NATS mode: remoteControlPlane.enabled set to false (the 0.1.x meaning: jes beside Keptn, events
from Keptn's NATS, Keptn's services in-cluster without a token). Unset or true: HTTP polling of
remoteControlPlane.api, as every value file since 0.2 expects.
*/}}
{{- define "jes.natsMode" -}}
{{- $enabled := .Values.remoteControlPlane.enabled }}
{{- if and (not (kindIs "invalid" $enabled)) (not (include "jes.isTrue" $enabled)) }}true{{ end }}
{{- end }}

{{- define "jes.apiProxy" -}}
{{- include "jes.isTrue" ((.Values.apiProxy | default dict).enabled) }}
{{- end }}

{{- define "jes.apiProxy.forTasks" -}}
{{- include "jes.isTrue" (((.Values.apiProxy | default dict).forTasks | default dict).enabled) }}
{{- end }}

{{- define "jes.apiProxy.port" -}}
{{- (.Values.apiProxy | default dict).port | default 8081 | int }}
{{- end }}

{{- define "jes.apiProxy.taskPort" -}}
{{- ((.Values.apiProxy | default dict).forTasks | default dict).port | default 8082 | int }}
{{- end }}

{{/* The Service through which tasks reach the API proxy (apiProxy.forTasks). */}}
{{- define "jes.apiProxy.service" -}}
{{- printf "%s-api-proxy" (include "jes.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Combinations that cannot work, refused with a message saying what to change. Included by every
template that could otherwise fail first with a less helpful message.
*/}}
{{- define "jes.checks" -}}
{{- if and (include "jes.natsMode" .) (include "jes.autoDetect" .) }}
{{- fail "remoteControlPlane.enabled=false (NATS mode: jes runs beside Keptn) and remoteControlPlane.autoDetect.enabled=true (find Keptn's API gateway and poll it over HTTP) contradict each other; set one of them differently" }}
{{- end }}
{{- if and (include "jes.apiProxy.forTasks" .) (not (include "jes.apiProxy" .)) }}
{{- fail "apiProxy.forTasks.enabled=true requires apiProxy.enabled=true: tasks reach the API proxy that jes serves; enable apiProxy too, or disable apiProxy.forTasks" }}
{{- end }}
{{- if include "jes.apiProxy" . }}
{{- $port := include "jes.apiProxy.port" . | int }}
{{- if eq $port 8080 }}
{{- fail "apiProxy.port=8080 is the port of /health, /ready and /metrics; choose another one (the default is 8081)" }}
{{- end }}
{{- if include "jes.apiProxy.forTasks" . }}
{{- $task := include "jes.apiProxy.taskPort" . | int }}
{{- if or (eq $task 8080) (eq $task $port) }}
{{- fail (printf "apiProxy.forTasks.port=%d is taken (8080: /health and /metrics; %d: apiProxy.port); choose another one (the default is 8082)" $task $port) }}
{{- end }}
{{- end }}
{{- end }}
{{- include "jes.checks.natsTasks" . }}
{{- end }}

{{/*
NATS mode with apiProxy.forTasks: Keptn's in-cluster services (shipyard-controller,
resource-service, mongodb-datastore) and NATS answer anyone without authentication, so a task that
can reach them bypasses its scoped token entirely. The token is a boundary only when tasks cannot:
the Jobs must run outside Keptn's namespace (the release namespace in NATS mode), and the job
NetworkPolicy must be on with blockCIDRs (the cluster's pod and Service CIDRs: most CNIs match pod
IPs against an ipBlock of 0.0.0.0/0, so without them the policy lets a task reach every pod).
*/}}
{{- define "jes.checks.natsTasks" -}}
{{- if and (include "jes.natsMode" .) (include "jes.apiProxy.forTasks" .) }}
{{- $why := "in NATS mode Keptn's services (shipyard-controller, resource-service, mongodb-datastore) and NATS answer without authentication, so a task that reaches them bypasses its scoped API-proxy token" }}
{{- if has .Release.Namespace (splitList "," (include "jes.jobNamespaces" .)) }}
{{- $where := ternary (printf "tasks may run in the release namespace %q (it is listed in jobConfig.extraNamespaces)" .Release.Namespace) (printf "Jobs run in the release namespace %q" .Release.Namespace) (ne (include "jes.jobNamespace" .) .Release.Namespace) }}
{{- fail (printf "apiProxy.forTasks.enabled=true with remoteControlPlane.enabled=false: %s, beside Keptn's services and Secrets; %s. Set jobNamespace to a namespace of their own (it must exist; not %q, and not in jobConfig.extraNamespaces), or disable apiProxy.forTasks" $where $why .Release.Namespace) }}
{{- end }}
{{- $policy := .Values.jobConfig.networkPolicy | default dict }}
{{- if not (and (include "jes.isTrue" $policy.enabled) $policy.blockCIDRs) }}
{{- fail (printf "apiProxy.forTasks.enabled=true with remoteControlPlane.enabled=false needs jobConfig.networkPolicy.enabled=true and jobConfig.networkPolicy.blockCIDRs set to the cluster's pod and Service CIDRs (e.g. --set 'jobConfig.networkPolicy.blockCIDRs={10.244.0.0/16,10.96.0.0/12}'): %s; most CNIs let an ipBlock of 0.0.0.0/0 match pod IPs, so only these exceptions keep tasks away from Keptn's pods (tasks still reach Keptn's API gateway, which requires the Keptn token, and jes's proxy)" $why) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Auto-detection (as upstream): exactly one Service api-gateway-nginx whose label
app.kubernetes.io/part-of starts with "keptn", in autoDetect.namespace or in any namespace.
`lookup` needs a cluster: under `helm template` (or --dry-run=client) it finds nothing and fails.
*/}}
{{- define "jes.autoDetect.namespace" -}}
{{- $ns := .Values.remoteControlPlane.autoDetect.namespace | default "" }}
{{- $where := ternary "in any namespace" (printf "in namespace %q" $ns) (eq $ns "") }}
{{- $found := list }}
{{- $services := lookup "v1" "Service" $ns "" | default dict }}
{{- range $svc := ($services.items | default list) }}
{{- $partOf := get ($svc.metadata.labels | default dict) "app.kubernetes.io/part-of" | default "" }}
{{- if and (eq $svc.metadata.name "api-gateway-nginx") (hasPrefix "keptn" $partOf) }}
{{- $found = append $found $svc.metadata.namespace }}
{{- end }}
{{- end }}
{{- if eq (len $found) 0 }}
{{- fail (printf "Unable to detect Keptn in the kubernetes cluster: no Service api-gateway-nginx labelled app.kubernetes.io/part-of=keptn* %s. remoteControlPlane.autoDetect needs a cluster (helm install/upgrade, or --dry-run=server); `helm template` cannot look it up. Otherwise set remoteControlPlane.autoDetect.enabled=false and give remoteControlPlane.api.hostname and remoteControlPlane.api.token." $where) }}
{{- end }}
{{- if gt (len $found) 1 }}
{{- fail (printf "Detected more than one Keptn installation (namespaces: %s); set remoteControlPlane.autoDetect.namespace to one of them." (join ", " $found)) }}
{{- end }}
{{- first $found }}
{{- end }}

{{/* The base64 token read from Keptn's own Secret keptn-api-token at install time. */}}
{{- define "jes.autoDetect.tokenB64" -}}
{{- $ns := include "jes.autoDetect.namespace" . }}
{{- $secret := lookup "v1" "Secret" $ns "keptn-api-token" | default dict }}
{{- $token := dig "data" "keptn-api-token" "" $secret }}
{{- if not $token }}
{{- fail (printf "Please provide an api token: remoteControlPlane.autoDetect found Keptn in namespace %q but not the Secret keptn-api-token (key keptn-api-token) there, or may not read it." $ns) }}
{{- end }}
{{- $token }}
{{- end }}

{{/* KEPTN_API_ENDPOINT: <protocol>://<hostname>/api, or the detected gateway. */}}
{{- define "jes.apiEndpoint" -}}
{{- if include "jes.autoDetect" . }}
{{- printf "http://api-gateway-nginx.%s/api" (include "jes.autoDetect.namespace" .) }}
{{- else }}
{{- $api := .Values.remoteControlPlane.api }}
{{- printf "%s://%s/api" $api.protocol (trimSuffix "/" $api.hostname) }}
{{- end }}
{{- end }}

{{/* The original chart's default remoteControlPlane.topicSubscription, which the original ignored
(since 0.3.0 it subscribed to subscription.pubsubTopic): a values file copied from it means no choice. */}}
{{- define "jes.upstreamDefaultTopics" -}}
sh.keptn.event.test.triggered,sh.keptn.event.deployment.triggered,sh.keptn.event.evaluation.triggered,sh.keptn.event.release.triggered,sh.keptn.event.approval.triggered
{{- end }}

{{/* "true" when remoteControlPlane.topicSubscription is the original chart's default (then ignored). */}}
{{- define "jes.topicSubscriptionIsUpstreamDefault" -}}
{{- $given := .Values.remoteControlPlane.topicSubscription | default "" | replace " " "" }}
{{- if eq $given (include "jes.upstreamDefaultTopics" .) }}true{{ end }}
{{- end }}

{{/* PUBSUB_TOPIC: remoteControlPlane.topicSubscription wins over subscription.pubsubTopic, unless it is
the original chart's default (which the original ignored). */}}
{{- define "jes.pubsubTopic" -}}
{{- $source := "subscription.pubsubTopic" }}
{{- $topics := .Values.subscription.pubsubTopic | default "" }}
{{- if and .Values.remoteControlPlane.topicSubscription (not (include "jes.topicSubscriptionIsUpstreamDefault" .)) }}
{{- $source = "remoteControlPlane.topicSubscription" }}
{{- $topics = .Values.remoteControlPlane.topicSubscription }}
{{- end }}
{{- $topics = $topics | replace " " "" }}
{{- if and (or (contains ">" $topics) (contains "*" $topics)) (not (include "jes.natsMode" .)) }}
{{- fail (printf "%s=%q: wildcards cannot be polled over HTTP; list exact event types, e.g. sh.keptn.event.test.triggered (NATS mode, remoteControlPlane.enabled=false, allows them)" $source $topics) }}
{{- end }}
{{- $topics }}
{{- end }}

{{/* A securityContext with capability names upper-cased (upstream's values say "all"). */}}
{{- define "jes.securityContext" -}}
{{- $ctx := deepCopy (. | default dict) }}
{{- with $ctx.capabilities }}
{{- range $field := list "add" "drop" }}
{{- if hasKey $ctx.capabilities $field }}
{{- $names := list }}
{{- range (get $ctx.capabilities $field | default list) }}{{ $names = append $names (upper .) }}{{ end }}
{{- $_ := set $ctx.capabilities $field $names }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $ctx }}
{{- end }}

{{/* Environment for talking to the control plane (jes serve and the helm test pod). */}}
{{- define "jes.apiEnv" -}}
{{- $api := .Values.remoteControlPlane.api }}
{{- $secret := include "jes.secretName" . -}}
- name: KEPTN_API_ENDPOINT
  value: {{ include "jes.apiEndpoint" . | quote }}
{{- if include "jes.usesToken" . }}
- name: KEPTN_API_TOKEN_FILE
  value: /etc/jes/keptn-api/keptn-api-token
{{- end }}
- name: HTTP_SSL_VERIFY
  value: {{ if or (kindIs "invalid" $api.apiValidateTls) (include "jes.isTrue" $api.apiValidateTls) }}"true"{{ else }}"false"{{ end }}
{{- if $api.caBundle.configMap }}
- name: HTTP_SSL_CA_BUNDLE
  value: /etc/jes/ca/{{ $api.caBundle.key | default "ca.crt" }}
{{- end }}
- name: JES_HTTP_TIMEOUT_S
  value: {{ $api.timeoutSeconds | default 30 | toString | quote }}
- name: JES_HTTP_MAX_CONNECTIONS
  value: {{ $api.maxConnections | default 8 | int64 | toString | quote }}
- name: JES_RESOURCE_SERVICE_PATH
  value: {{ $api.resourceServicePath | default "resource-service" | quote }}
{{- if include "jes.oauth" . }}
- name: OAUTH_CLIENT_ID
  value: {{ $api.oauth.clientId | quote }}
- name: OAUTH_CLIENT_SECRET_FILE
  value: /etc/jes/keptn-api/oauth-client-secret
- name: OAUTH_DISCOVERY
  value: {{ $api.oauth.clientDiscovery | default "" | quote }}
- name: OAUTH_SCOPES
  value: {{ $api.oauth.scopes | default "" | quote }}
{{- if $api.oauth.tokenUrl }}
- name: OAUTH_TOKEN_URL
  value: {{ $api.oauth.tokenUrl | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Environment for NATS mode: Keptn's NATS, the queue group (default: the fullname, so the replicas of
this release share the events and other releases get their own copy), the reconciliation poll, and
the in-cluster API's request settings. No endpoint and no credentials: Keptn's services are called
in-cluster without a token, as the distributor does.
*/}}
{{- define "jes.natsEnv" -}}
{{- $nats := .Values.nats | default dict }}
{{- $api := .Values.remoteControlPlane.api | default dict -}}
- name: PUBSUB_URL
  value: {{ $nats.url | default "nats://keptn-nats" | quote }}
- name: PUBSUB_GROUP
  value: {{ $nats.queueGroup | default (include "jes.fullname" .) | quote }}
- name: JES_NATS_RECONCILE_S
  value: {{ $nats.reconcileSeconds | default 30 | toString | quote }}
- name: JES_HTTP_TIMEOUT_S
  value: {{ $api.timeoutSeconds | default 30 | toString | quote }}
- name: JES_HTTP_MAX_CONNECTIONS
  value: {{ $api.maxConnections | default 8 | int64 | toString | quote }}
- name: JES_RESOURCE_SERVICE_PATH
  value: {{ $api.resourceServicePath | default "resource-service" | quote }}
{{- end }}

{{/*
The distributor's API proxy (apiProxy.enabled), on 127.0.0.1 unless apiProxy.host says otherwise,
and its door for tasks (apiProxy.forTasks): a port of its own behind the Service
<fullname>-api-proxy, whose URL tasks get as KEPTN_API_PROXY_URL.
*/}}
{{- define "jes.apiProxyEnv" -}}
{{- if include "jes.apiProxy" . }}
{{- $proxy := .Values.apiProxy }}
- name: API_PROXY_PORT
  value: {{ include "jes.apiProxy.port" . | quote }}
- name: API_PROXY_PATH
  value: {{ $proxy.path | default "/" | quote }}
- name: API_PROXY_HTTP_TIMEOUT
  value: {{ ternary 30 $proxy.httpTimeoutSeconds (kindIs "invalid" $proxy.httpTimeoutSeconds) | toString | quote }}
- name: API_PROXY_MAX_PAYLOAD_BYTES_KB
  value: {{ ternary 64 $proxy.maxPayloadBytesKB (kindIs "invalid" $proxy.maxPayloadBytesKB) | int64 | toString | quote }}
- name: EVENT_FORWARDING_PATH
  value: {{ $proxy.eventForwardingPath | default "/event" | quote }}
{{- with $proxy.host }}
- name: JES_API_PROXY_HOST
  value: {{ . | quote }}
{{- end }}
{{- if include "jes.apiProxy.forTasks" . }}
{{- $port := include "jes.apiProxy.taskPort" . }}
- name: JES_API_PROXY_TASK_PORT
  value: {{ $port | quote }}
- name: JES_API_PROXY_TASK_URL
  value: {{ printf "http://%s.%s.svc:%s" (include "jes.apiProxy.service" .) .Release.Namespace $port | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Secrets no task may use (JES_PROTECTED_SECRETS): jes's own credentials; in NATS mode, where jes
holds none and runs in Keptn's namespace, Keptn's API token Secret.
*/}}
{{- define "jes.protectedSecrets" -}}
{{- if include "jes.natsMode" . }}keptn-api-token{{ else }}{{ include "jes.secretName" . }}{{ end }}
{{- end }}

{{/* Whether jes sends an API token (not only OAuth). */}}
{{- define "jes.usesToken" -}}
{{- $api := .Values.remoteControlPlane.api }}
{{- if or (not (include "jes.oauth" .)) $api.token $api.existingSecret }}true{{ end }}
{{- end }}

{{/*
jes's credentials reach it as files of the Secret mounted read-only (never as environment
variables, which every process of the container and a crash dump could show); Kubernetes
updates the files when the Secret changes, and jes reads the token again.
*/}}
{{- define "jes.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if not (include "jes.natsMode" .) }}
- name: keptn-api
  secret:
    secretName: {{ include "jes.secretName" . }}
    defaultMode: 0400
    items:
      {{- if include "jes.usesToken" . }}
      - key: keptn-api-token
        path: keptn-api-token
      {{- end }}
      {{- if include "jes.oauth" . }}
      - key: oauth-client-secret
        path: oauth-client-secret
      {{- end }}
    {{- $api := .Values.remoteControlPlane.api }}
    {{- if and (include "jes.oauth" .) $api.existingSecret (not $api.token) }}
    optional: true
    {{- end }}
{{- with .Values.remoteControlPlane.api.caBundle.configMap }}
- name: ca-bundle
  configMap:
    name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{- define "jes.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if not (include "jes.natsMode" .) }}
- name: keptn-api
  mountPath: /etc/jes/keptn-api
  readOnly: true
{{- if .Values.remoteControlPlane.api.caBundle.configMap }}
- name: ca-bundle
  mountPath: /etc/jes/ca
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/* The namespace Jobs run in unless a task names another: jobNamespace, else the release's. */}}
{{- define "jes.jobNamespace" -}}
{{- .Values.jobNamespace | default .Release.Namespace }}
{{- end }}

{{/* Namespaces Jobs may run in: jes.jobNamespace first, then jobConfig.extraNamespaces. */}}
{{- define "jes.jobNamespaces" -}}
{{- $all := list (include "jes.jobNamespace" .) }}
{{- range .Values.jobConfig.extraNamespaces }}{{ if not (has . $all) }}{{ $all = append $all . }}{{ end }}{{ end }}
{{- join "," $all }}
{{- end }}

{{/*
Egress targets of jes, as JSON: {"api": [{"cidr", "port"}], "hosts": [cidr], "unresolved": [host]}.
The Kubernetes API comes from networkPolicy.egress.k8sMasterCIDR/Port or, as upstream, from the
`kubernetes` endpoints in the default namespace (install time only). Hosts (Keptn API, OAuth) are
used as /32 when they are IP addresses, else resolved with getHostByName, which works only with
`helm --enable-dns`; what cannot be resolved is listed in "unresolved" (NOTES.txt warns).
*/}}
{{- define "jes.egressTargets" -}}
{{- $egress := .Values.networkPolicy.egress | default dict }}
{{- $legacy := .Values.networkPolicy }}
{{- $cidr := $egress.k8sMasterCIDR | default $legacy.k8sMasterCIDR | default "" }}
{{- $port := $egress.k8sMasterPort | default $legacy.k8sMasterPort | default 0 | int }}
{{- $api := list }}
{{- if $cidr }}
{{- $api = append $api (dict "cidr" $cidr "port" $port) }}
{{- else }}
{{- $slice := lookup "discovery.k8s.io/v1" "EndpointSlice" "default" "kubernetes" | default dict }}
{{- range $p := ($slice.ports | default list) }}
{{- if eq ($p.name | default "") "https" }}
{{- range $e := ($slice.endpoints | default list) }}
{{- range $ip := ($e.addresses | default list) }}
{{- $api = append $api (dict "cidr" (printf "%s/32" $ip) "port" ($p.port | int)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if not $api }}
{{- $endpoints := lookup "v1" "Endpoints" "default" "kubernetes" | default dict }}
{{- range $s := ($endpoints.subsets | default list) }}
{{- range $p := ($s.ports | default list) }}
{{- if eq ($p.name | default "") "https" }}
{{- range $a := ($s.addresses | default list) }}
{{- $api = append $api (dict "cidr" (printf "%s/32" $a.ip) "port" ($p.port | int)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- $hosts := list }}
{{- $nats := include "jes.natsMode" . }}
{{- if not (or $nats (include "jes.autoDetect" .)) }}
{{- $hosts = append $hosts (.Values.remoteControlPlane.api.hostname | default "") }}
{{- end }}
{{- if and (include "jes.oauth" .) (not $nats) }}
{{- $oauth := .Values.remoteControlPlane.api.oauth }}
{{- range $url := list $oauth.clientDiscovery $oauth.tokenUrl }}
{{- if $url }}{{ $hosts = append $hosts (urlParse $url).host }}{{ end }}
{{- end }}
{{- end }}
{{- $cidrs := list }}
{{- $unresolved := list }}
{{- range $h := $hosts }}
{{- $host := regexReplaceAll ":[0-9]+$" ($h | trimSuffix "/") "" }}
{{- if $host }}
{{- if regexMatch "^[0-9]{1,3}(\\.[0-9]{1,3}){3}$" $host }}
{{- $cidrs = append $cidrs (printf "%s/32" $host) }}
{{- else }}
{{- $ip := getHostByName $host }}
{{- if $ip }}
{{- $cidrs = append $cidrs (printf "%s/32" $ip) }}
{{- else if not (or (hasSuffix ".svc" $host) (hasSuffix ".svc.cluster.local" $host) (le (len (splitList "." $host)) 2)) }}
{{- $unresolved = append $unresolved $host }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- dict "api" $api "hosts" (uniq $cidrs) "unresolved" (uniq $unresolved) | toJson }}
{{- end }}

{{- define "jes.networkPolicy.ingress" -}}
{{- if or (include "jes.isTrue" .Values.networkPolicy.ingress.enabled) (include "jes.isTrue" .Values.networkPolicy.enabled) }}true{{ end }}
{{- end }}

{{- define "jes.networkPolicy.egress" -}}
{{- if or (include "jes.isTrue" .Values.networkPolicy.egress.enabled) (include "jes.isTrue" .Values.networkPolicy.enabled) }}true{{ end }}
{{- end }}

{{/* Egress to kube-dns (UDP and TCP 53) in any namespace. */}}
{{- define "jes.dnsEgressRule" -}}
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}

{{/*
NATS mode: egress to the pods of the release namespace (Keptn's) on NATS's client port and the
port of Keptn's services (shipyard-controller, resource-service, mongodb-datastore, api-service).
*/}}
{{- define "jes.inClusterEgressRule" -}}
- to:
    - podSelector: {}
  ports:
    - protocol: TCP
      port: 4222
    - protocol: TCP
      port: 8080
{{- end }}

{{/* Job pods of this release in the job namespaces, as NetworkPolicy peers. */}}
{{- define "jes.jobPodPeers" -}}
{{- $fullname := include "jes.fullname" . }}
{{- range $ns := splitList "," (include "jes.jobNamespaces" .) }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ $ns }}
  podSelector:
    matchLabels:
      app.kubernetes.io/managed-by: {{ $fullname }}
{{- end }}
{{- end }}

{{/* Egress to Keptn's api-gateway-nginx pods in any namespace. */}}
{{- define "jes.keptnGatewayEgressRule" -}}
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          app.kubernetes.io/name: api-gateway-nginx
          app.kubernetes.io/instance: keptn
{{- end }}

{{/*
checkov findings we accept, as checkov skip annotations with the reason (docs/helm.md explains
each; `make scan` fails on any other finding). Called with (dict "kind" ... "digest" ...).
*/}}
{{- define "jes.checkovSkips" -}}
{{- $skips := list }}
{{- if not .digest }}
{{- $skips = append $skips "CKV_K8S_43=The image is pinned by tag (appVersion); set image.digest to pin it by digest" }}
{{- end }}
{{- $skips = append $skips "CKV_K8S_15=IfNotPresent with a pinned tag or digest; Always only adds a registry round trip per start" }}
{{- if eq .kind "Deployment" }}
{{- $skips = append $skips "CKV_K8S_38=jes needs its service account token to create and watch Jobs through the Kubernetes API" }}
{{- else }}
{{- $skips = append $skips "CKV_K8S_8=a one-shot helm test pod has nothing to probe" }}
{{- $skips = append $skips "CKV_K8S_9=a one-shot helm test pod has nothing to probe" }}
{{- end }}
{{- range $i, $skip := $skips }}
checkov.io/skip{{ add1 $i }}: {{ $skip | quote }}
{{- end }}
{{- end }}

{{/* A securityContext from values written for the original chart, whose podSecurityContext spelled
RunAsUser, RunAsGroup, RunAsNonRoot: such keys are renamed (runAsUser, ...) and win over the same key
in lower case, which can only come from this chart's defaults merged in by Helm. As JSON. */}}
{{- define "jes.lowerKeysJson" -}}
{{- $out := dict }}
{{- range $key, $value := (. | default dict) }}
{{- if not (regexMatch "^[A-Z]" $key) }}{{ $_ := set $out $key $value }}{{ end }}
{{- end }}
{{- range $key, $value := (. | default dict) }}
{{- if regexMatch "^[A-Z]" $key }}{{ $_ := set $out (printf "%s%s" (lower (substr 0 1 $key)) (substr 1 -1 $key)) $value }}{{ end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* The capitalised keys of a map (the original chart's spelling), comma separated. */}}
{{- define "jes.capitalisedKeys" -}}
{{- $keys := list }}
{{- range $key, $value := (. | default dict) }}{{ if regexMatch "^[A-Z]" $key }}{{ $keys = append $keys $key }}{{ end }}{{ end }}
{{- join ", " $keys }}
{{- end }}
