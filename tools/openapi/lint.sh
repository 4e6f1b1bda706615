#!/usr/bin/env bash
# redocly lint of api/openapi.json with the pinned @redocly/cli of
# package-lock.json (recommended-strict rules, see redocly.yaml). Run by
# .ci/run; by hand: tools/openapi/lint.sh (needs node >= 20.19 and npm).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x node_modules/.bin/redocly ] || ! cmp -s package-lock.json node_modules/.package-lock.json.ci 2>/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.package-lock.json.ci
fi
echo "== redocly $(node_modules/.bin/redocly --version 2>/dev/null | head -1)"
# The CLI prints a Node 20 end-of-life banner on stderr; the verdict is the exit code.
node_modules/.bin/redocly lint --config redocly.yaml --format=stylish ../../api/openapi.json 2> >(grep -v '[║╔╚]' >&2)
