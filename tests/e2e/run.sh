#!/usr/bin/env bash
# End-to-end suite with software nobody on this project wrote:
#   1. the official MCP conformance suite against a virtual server of mcpgate
#      that federates our fixture server (prefix_mode never), after checking
#      that the fixture itself passes;
#   2. the official Python SDK and TypeScript SDK as clients, through mcpgate,
#      against @modelcontextprotocol/server-everything registered upstream in
#      Streamable HTTP mode and in stdio mode, with prefixed names.
# Installs what it needs from npm and PyPI into $MCPGATE_E2E_CACHE (default
# ~/.cache/mcpgate-e2e). Everything listens on 127.0.0.1 and is stopped on exit.
# Last line: "e2e: N passed, M failed".
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${MCPGATE_E2E_CACHE:-$HOME/.cache/mcpgate-e2e}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcpgate-target}"
log() { printf '[e2e] %s\n' "$*" >&2; }
mkdir -p "$CACHE"

# --- tools ---------------------------------------------------------------------
command -v node >/dev/null && command -v npm >/dev/null || { log "node and npm are required (apt-get install nodejs npm)"; exit 1; }
if ! cmp -s "$HERE/package.json" "$CACHE/package.json" || [ ! -d "$CACHE/node_modules/@modelcontextprotocol/conformance" ]; then
  log "installing npm packages into $CACHE"
  cp "$HERE/package.json" "$CACHE/package.json"
  (cd "$CACHE" && npm install --no-audit --no-fund --loglevel=error >&2)
fi
NODE=$(command -v node)
NODE22=$NODE
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 22 ]; then
  case "$(uname -m)" in x86_64|amd64) arch=x64 ;; aarch64|arm64) arch=arm64 ;; *) log "unsupported arch"; exit 1 ;; esac
  NODE22="$CACHE/node22/node_modules/node-linux-$arch/bin/node"
  if [ ! -x "$NODE22" ]; then
    log "system node is older than 22 (the conformance CLI needs 22): installing node-linux-$arch@22"
    mkdir -p "$CACHE/node22"
    npm install --prefix "$CACHE/node22" --no-audit --no-fund --loglevel=error "node-linux-$arch@22" >&2
  fi
fi
if [ ! -x "$CACHE/venv/bin/python" ]; then
  log "creating the Python venv"
  python3 -m venv "$CACHE/venv"
fi
if ! cmp -s "$HERE/requirements.txt" "$CACHE/requirements.txt"; then
  "$CACHE/venv/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt" >&2
  cp "$HERE/requirements.txt" "$CACHE/requirements.txt"
fi
cp "$HERE/ts_client.mjs" "$HERE/conformance-summary.mjs" "$CACHE/"

log "building mcpgate"
(cd "$ROOT" && cargo build --bins -q)
BIN="$CARGO_TARGET_DIR/debug"

# --- processes -----------------------------------------------------------------
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  log "nothing listens on 127.0.0.1:$1; logs:"; tail -n 20 "$WORK"/*.log >&2; return 1
}

FX_PORT=$(free_port)
"$BIN/mcpgate-fixture" --port "$FX_PORT" >"$WORK/fixture.log" 2>&1 &
PIDS+=($!)
SE_PORT=$(free_port)
SE="$CACHE/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
(cd "$CACHE" && PORT=$SE_PORT exec "$NODE" -r "$HERE/loopback.cjs" "$SE" streamableHttp) >"$WORK/everything.log" 2>&1 &
PIDS+=($!)
GW_PORT=$(free_port)
SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
export JWT_SECRET_KEY=$SECRET AUTH_ENCRYPTION_SECRET=$SECRET DATABASE_URL="sqlite://$WORK/gw.db"
(cd "$WORK" && PORT=$GW_PORT EDGE_PORT=0 SSRF_ALLOW_LOCALHOST=true MCP_REQUIRE_AUTH=false LOG_LEVEL=warn exec "$BIN/mcpgate" serve) >"$WORK/gateway.log" 2>&1 &
PIDS+=($!)
wait_port "$FX_PORT"; wait_port "$SE_PORT"; wait_port "$GW_PORT"
TOKEN=$("$BIN/mcpgate" token create --username admin@example.com --admin --exp 120)
GW="http://127.0.0.1:$GW_PORT"

PASS=0; FAIL=0
check() { # check NAME CMD...
  local name=$1; shift
  if "$@" >"$WORK/step.log" 2>&1; then PASS=$((PASS + 1)); log "PASS $name"; else FAIL=$((FAIL + 1)); log "FAIL $name"; cat "$WORK/step.log" >&2; fi
  sed 's/^/    /' "$WORK/step.log" >&2
}
api() { curl -fsS -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' "$@"; }
register() { api -X POST "$GW/v1/gateways" -d "{\"name\": \"$1\", \"url\": \"$2\", \"transport\": \"$3\"}" >/dev/null; }

check "register fixture (Streamable HTTP)" register fixture "http://127.0.0.1:$FX_PORT/mcp" STREAMABLEHTTP
check "register server-everything (Streamable HTTP)" register everything "http://127.0.0.1:$SE_PORT/mcp" STREAMABLEHTTP
check "register server-everything (stdio)" register "everything stdio" "$NODE $SE stdio" STDIO

FXID=$(api "$GW/v1/gateways" | python3 -c 'import json,sys; print([g["id"] for g in json.load(sys.stdin) if g["name"]=="fixture"][0])')
ids() { api "$GW/v1/$1?gateway_id=$FXID&limit=500" | python3 -c 'import json,sys; print(json.dumps([x["id"] for x in json.load(sys.stdin)]))'; }
make_server() {
  api -X POST "$GW/v1/servers" -d "{\"id\": \"conformance\", \"name\": \"conformance\", \"prefix_mode\": \"never\",
    \"associated_tools\": $(ids tools), \"associated_resources\": $(ids resources), \"associated_prompts\": $(ids prompts)}" >/dev/null
}
check "virtual server over the fixture" make_server

conformance() { # conformance NAME URL
  "$NODE22" "$CACHE/node_modules/@modelcontextprotocol/conformance/dist/index.js" server --url "$2" \
    --spec-version 2025-11-25 -o "$WORK/conf-$1" >"$WORK/conf-$1.log" 2>&1 || true
  "$NODE" "$CACHE/conformance-summary.mjs" "$WORK/conf-$1"
}
check "conformance: fixture directly" conformance fixture "http://127.0.0.1:$FX_PORT/mcp"
check "conformance: through mcpgate /servers/conformance/mcp" conformance gateway "$GW/servers/conformance/mcp"

PY="$CACHE/venv/bin/python"
DOC="demo://resource/static/document/architecture.md"
for mode in auto legacy; do
  check "python SDK ($mode) -> everything (Streamable HTTP)" "$PY" "$HERE/py_client.py" "$GW/mcp" --token "$TOKEN" --mode "$mode" \
    --tool everything-echo --args '{"message": "hello from python"}' --expect "hello from python" \
    --resource "$DOC" --prompt everything-args-prompt --prompt-args '{"city": "Oslo"}'
  check "python SDK ($mode) -> everything (stdio)" "$PY" "$HERE/py_client.py" "$GW/mcp" --token "$TOKEN" --mode "$mode" \
    --tool everything-stdio-get-sum --args '{"a": 2, "b": 3}' --expect "5" --prompt everything-stdio-simple-prompt
done
check "typescript SDK -> everything (Streamable HTTP)" "$NODE" "$CACHE/ts_client.mjs" "$GW/mcp" "$TOKEN" everything-echo \
  '{"message": "hello from typescript"}' "hello from typescript" "$DOC" everything-args-prompt '{"city": "Oslo"}'
check "typescript SDK -> everything (stdio)" "$NODE" "$CACHE/ts_client.mjs" "$GW/mcp" "$TOKEN" everything-stdio-get-sum \
  '{"a": 2, "b": 3}' "5" "" everything-stdio-simple-prompt '{}'

echo "e2e: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
