"""Validates the custom resources of rendered manifests (stdin) against the JSON schemas in
deploy/k8s/schemas: KEDA's ScaledObject, the Prometheus Operator's PodMonitor and
PrometheusRule, and cert-manager's Certificate and Issuer. kubernetes-validate knows only
the built-in kinds and skips these.

Each schema holds the fields Kiln uses, taken from the CRD's published OpenAPI schema, with
unknown fields rejected (like `kubernetes-validate --strict`). A custom resource of a kind
with no bundled schema is an error, so a new kind cannot slip through unchecked.

Usage: kubectl kustomize deploy/k8s/overlays/prod | python scripts/crd_validate.py
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs installed; only Draft7Validator is used
import yaml

SCHEMAS = Path(__file__).resolve().parent.parent / "deploy" / "k8s" / "schemas"
# API groups served by Kubernetes itself: kubernetes-validate covers them.
BUILT_IN_GROUPS = {"", "apps", "batch", "policy", "autoscaling"}


def schema_path(api_version: str, kind: str) -> Path:
    """Where the schema of `kind` in `api_version` (group/version) is bundled."""
    group, _, version = api_version.rpartition("/")
    return SCHEMAS / f"{kind.lower()}-{group}-{version}.json"


def is_custom(api_version: str) -> bool:
    """Whether objects of this apiVersion come from a CRD rather than Kubernetes."""
    group = api_version.rpartition("/")[0]
    return group not in BUILT_IN_GROUPS and not group.endswith(".k8s.io")


def problems(docs: list[dict[str, Any]]) -> tuple[list[str], collections.Counter[str]]:
    """Every schema violation of the custom resources in `docs`, and the kinds checked."""
    found: list[str] = []
    checked: collections.Counter[str] = collections.Counter()
    for doc in docs:
        api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
        if not is_custom(api_version):
            continue
        name = f"{kind}/{doc.get('metadata', {}).get('name', '?')}"
        path = schema_path(api_version, kind)
        if not path.is_file():
            found.append(f"{name}: no schema for {api_version} {kind} in {SCHEMAS}")
            continue
        validator = jsonschema.Draft7Validator(json.loads(path.read_text()))
        for error in validator.iter_errors(doc):
            where = "/".join(str(p) for p in error.absolute_path) or "(top)"
            found.append(f"{name}: {where}: {error.message}")
        checked[kind] += 1
    return found, checked


def main() -> int:
    """Reads manifests from stdin; prints problems; exit status 1 when there are any."""
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    found, checked = problems(docs)
    for problem in found:
        print(f"FAIL: {problem}", file=sys.stderr)
    summary = ", ".join(f"{count} {kind}" for kind, count in sorted(checked.items()))
    if not found:
        print(f"ok: custom resources valid against deploy/k8s/schemas ({summary or 'none'})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
