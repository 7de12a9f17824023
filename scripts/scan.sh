#!/bin/sh
# `make scan`: the slow checks that do not belong in `make test`.
#
#   1. the image's dependencies: a throwaway virtualenv gets requirements.lock (hashes required,
#      wheels only, as in the Dockerfile) plus jes itself with --no-deps; `pip check` proves the lock
#      is complete and `jes --help` that it runs;
#   2. checkov (pinned, in its own virtualenv under .tools/) on the chart rendered with the user's
#      install command, with every optional feature switched on, and in NATS mode with the API
#      proxy for tasks, and on the Dockerfile.
#      Accepted findings are skipped where they arise, with a reason (checkov.io/skip annotations in
#      chart/templates/_helpers.tpl, docs/helm.md); anything else fails the scan.
#
# Usage: sh scripts/scan.sh   (from anywhere; needs python3 and `make tools` for helm)
set -eu

CHECKOV_VERSION=3.3.30
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=$ROOT/.tools
HELM=${JES_HELM4:-$TOOLS/helm4/helm}
PYTHON=${PYTHON:-python3}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM

quiet() {  # run a command, show its output only when it fails
    if ! "$@" > "$TMP/out.log" 2>&1; then
        cat "$TMP/out.log" >&2
        echo "scan: failed: $*" >&2
        exit 1
    fi
}

echo "== 1/2 requirements.lock: install into a clean virtualenv and run jes"
"$PYTHON" -m venv "$TMP/venv"
PIP="$TMP/venv/bin/python -m pip --disable-pip-version-check"
quiet $PIP install --require-hashes --no-deps --only-binary=:all: -r "$ROOT/requirements.lock"
quiet $PIP install --no-deps "$ROOT"
quiet $PIP check
"$TMP/venv/bin/jes" --help > /dev/null
echo "jes $("$TMP/venv/bin/jes" --version | sed 's/.*version //') runs with the locked dependencies"

echo "== 2/2 checkov on the rendered chart and the Dockerfile"
if [ ! -x "$HELM" ]; then
    echo "scan: $HELM not found; run make tools" >&2
    exit 1
fi
CHECKOV="$TOOLS/checkov/bin/checkov"
if [ ! -x "$CHECKOV" ] || [ "$("$CHECKOV" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
    echo "installing checkov $CHECKOV_VERSION into $TOOLS/checkov (a few minutes, once)"
    rm -rf "$TOOLS/checkov"
    "$PYTHON" -m venv "$TOOLS/checkov"
    quiet "$TOOLS/checkov/bin/python" -m pip --disable-pip-version-check install "checkov==$CHECKOV_VERSION"
fi

mkdir -p "$TMP/rendered"
# the user's install command (one release per region namespace)
"$HELM" template -n keptn-jes-eu job-executor-service "$ROOT/chart" \
    --set remoteControlPlane.autoDetect.enabled="false" \
    --set remoteControlPlane.topicSubscription="sh.keptn.event.sayhello.triggered" \
    --set remoteControlPlane.api.token="scan-placeholder-token" \
    --set remoteControlPlane.api.hostname="1.2.3.4" \
    --set remoteControlPlane.api.protocol="http" > "$TMP/rendered/user-command.yaml"
# every optional object: network policies, extra job namespaces, OAuth, metrics
"$HELM" template -n keptn-jes-apac job-executor-service "$ROOT/chart" \
    --set remoteControlPlane.api.hostname="1.2.3.4" \
    --set remoteControlPlane.api.authMode=oauth \
    --set remoteControlPlane.api.oauth.clientId=jes \
    --set remoteControlPlane.api.oauth.clientSecret=scan-placeholder-secret \
    --set remoteControlPlane.api.oauth.clientDiscovery=https://10.0.0.5/.well-known/openid-configuration \
    --set remoteControlPlane.api.oauth.scopes=keptn:api \
    --set location=APAC \
    --set replicaCount=2 \
    --set networkPolicy.egress.enabled=true \
    --set networkPolicy.egress.k8sMasterCIDR=10.96.0.1/32 \
    --set jobConfig.networkPolicy.enabled=true \
    --set 'jobConfig.networkPolicy.blockCIDRs={10.0.0.0/8}' \
    --set 'jobConfig.extraNamespaces={jobs-apac}' \
    --set metrics.serviceMonitor.enabled=true > "$TMP/rendered/all-features.yaml"
# NATS mode beside Keptn, with the API proxy for side-cars and tasks
"$HELM" template -n keptn job-executor-service "$ROOT/chart" \
    --set remoteControlPlane.enabled=false \
    --set jobNamespace=keptn-jobs \
    --set apiProxy.enabled=true \
    --set apiProxy.forTasks.enabled=true \
    --set networkPolicy.egress.enabled=true \
    --set networkPolicy.egress.k8sMasterCIDR=10.96.0.1/32 \
    --set jobConfig.networkPolicy.enabled=true \
    --set 'jobConfig.networkPolicy.blockCIDRs={10.244.0.0/16,10.96.0.0/12}' > "$TMP/rendered/nats-api-proxy.yaml"

status=0
"$CHECKOV" --quiet --compact --skip-download --framework kubernetes -d "$TMP/rendered" || status=1
"$CHECKOV" --quiet --compact --skip-download --framework dockerfile -f "$ROOT/Dockerfile" || status=1
if [ "$status" -ne 0 ]; then
    echo "scan: checkov found problems (fix them, or accept them with a reason: docs/helm.md)" >&2
    exit 1
fi
echo "scan: passed"
