#!/usr/bin/env bash
# Fails when libs/genproto is not what `make proto` would generate from protos/ now.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
PATH=.venv/bin:$PATH scripts/genproto.sh "$tmp"
if ! diff -r -q -x __pycache__ "$tmp/kiln" libs/genproto/src/kiln >/dev/null; then
  diff -r -q -x __pycache__ "$tmp/kiln" libs/genproto/src/kiln || true
  echo "generated code is stale: run \`make proto\` and commit the result" >&2
  exit 1
fi
echo "generated code is fresh"
