#!/usr/bin/env bash
# Runs `buf breaking` against the newest v* release tag. Before the first release there is
# none, and the API may still change, so there is nothing to compare with.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=$(git tag --list 'v*' --sort=-v:refname 2>/dev/null | head -n 1)
if [ -z "$tag" ]; then
  echo "buf breaking: no v* release tag yet; skipped"
  exit 0
fi
.venv/bin/buf breaking --against ".git#tag=$tag"
echo "buf breaking: compatible with $tag"
