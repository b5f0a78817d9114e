#!/usr/bin/env bash
# Generates the Python code for every proto under protos/ into OUT (default libs/genproto/src).
# Used by `make proto` and, into a temporary folder, by `make lint` to find stale code.
set -euo pipefail
out=${1:-libs/genproto/src}
cd "$(dirname "$0")/.."
mapfile -t files < <(find protos -name '*.proto' | sort)
rm -rf "$out/kiln/auth" "$out/kiln/tasks" "$out/kiln/imagegen"
mkdir -p "$out"
python -m grpc_tools.protoc -Iprotos --python_out="$out" --pyi_out="$out" \
  --grpc_python_out="$out" "${files[@]}"
# Regular packages below the `kiln` namespace, so mypy and importers see one package tree.
find "$out/kiln" -mindepth 1 -type d -exec touch {}/__init__.py \;
