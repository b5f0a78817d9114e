#!/usr/bin/env bash
# Generates the Python code for every proto under protos/ into OUT (default libs/genproto/src),
# and a descriptor set with their comments (kiln/descriptors/protos.binpb).
# Used by `make proto` and, into a temporary folder, by `make lint` to find stale code.
set -euo pipefail
out=${1:-libs/genproto/src}
cd "$(dirname "$0")/.."
mapfile -t files < <(find protos -name '*.proto' | sort)
rm -rf "$out/kiln/auth" "$out/kiln/tasks" "$out/kiln/imagegen" "$out/kiln/descriptors"
mkdir -p "$out/kiln/descriptors"
python -m grpc_tools.protoc -Iprotos --python_out="$out" --pyi_out="$out" \
  --grpc_python_out="$out" "${files[@]}"
# The same files with their comments (source info), which the generated code leaves out, and
# the files they import: server reflection serves these, so `grpcurl describe` shows comments.
python -m grpc_tools.protoc -Iprotos --include_source_info --include_imports \
  --descriptor_set_out="$out/kiln/descriptors/protos.binpb" "${files[@]}"
# Regular packages below the `kiln` namespace, so mypy and importers see one package tree.
find "$out/kiln" -mindepth 1 -type d -exec touch {}/__init__.py \;
