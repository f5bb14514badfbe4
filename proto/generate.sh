#!/usr/bin/env bash
# Regenerate the Python gRPC stubs of proto/asr/v1/asr.proto into the client package,
# where they import as `asr_client.api.asr.v1.asr_pb2` (the server imports them from
# there too). The `-Iasr_client/api=proto` mapping makes protoc see the file under that
# virtual path, so the generated imports are package-qualified.
#
#   proto/generate.sh            # writes client/asr_client/api/asr/v1/*
#   proto/generate.sh OUT_DIR    # writes OUT_DIR/asr_client/api/asr/v1/* (used by the
#                                # test that checks the committed stubs are up to date)
# Needs grpcio-tools; PYTHON selects the interpreter (default: .venv/bin/python if there
# is one, else python3).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/client}"
default_python=python3
[ -x "$root/.venv/bin/python" ] && default_python="$root/.venv/bin/python"
python="${PYTHON:-$default_python}"

mkdir -p "$out/asr_client/api/asr/v1"
"$python" -m grpc_tools.protoc \
    "-Iasr_client/api=$root/proto" \
    "--python_out=$out" "--pyi_out=$out" "--grpc_python_out=$out" \
    asr_client/api/asr/v1/asr.proto
# Package markers, so the stubs import as regular packages.
for d in api api/asr api/asr/v1; do
    [ -f "$out/asr_client/$d/__init__.py" ] || : > "$out/asr_client/$d/__init__.py"
done
