#!/usr/bin/env bash
# schemathesis against a real `pyoco server`: every check, every phase
# (examples, coverage, fuzzing and the stateful phase that follows the
# document's links: POST /runs -> GET /runs/{run_id}, .../logs, .../cancel).
#
# Not part of .ci/run: schemathesis comes from PyPI, which CI's machines do
# not reach. CI runs the same checks with kin-openapi instead
# (api/openapi_conformance_test.go, TestOpenAPIConformance) and redocly lint
# (tools/openapi/lint.sh). Run this where PyPI is reachable:
#
#   tools/schemathesis/run.sh                 # builds pyoco, memory store
#   SCHEMATHESIS_MAX_EXAMPLES=500 tools/schemathesis/run.sh
#   PYOCO_SERVER_URL=http://host:8000 PYOCO_API_TOKEN=... tools/schemathesis/run.sh
#
# Exit code: schemathesis's (0 = no failure).
set -euo pipefail
cd "$(dirname "$0")/../.."

venv="${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/pyoco/schemathesis-venv}"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'schemathesis>=4.1,<5'
fi
"$venv/bin/schemathesis" --version

url="${PYOCO_SERVER_URL:-}"
if [ -z "$url" ]; then
  work=$(mktemp -d)
  trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
  go build -o "$work/pyoco" ./cmd/pyoco
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  PYOCO_API_TOKEN="${PYOCO_API_TOKEN:-schemathesis}" OTEL_TRACES_EXPORTER=none \
    "$work/pyoco" server --addr "127.0.0.1:$port" --flows deploy/flows >"$work/server.log" 2>&1 &
  pid=$!
  url="http://127.0.0.1:$port"
  for _ in $(seq 100); do
    curl -fsS "$url/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  export PYOCO_API_TOKEN="${PYOCO_API_TOKEN:-schemathesis}"
fi

auth=()
[ -n "${PYOCO_API_TOKEN:-}" ] && auth=(--header "Authorization: Bearer $PYOCO_API_TOKEN")
"$venv/bin/schemathesis" run "$url/openapi.json" --url "$url" "${auth[@]}" \
  --checks all \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-100}" \
  --request-timeout 30
