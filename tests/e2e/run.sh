#!/usr/bin/env bash
# End-to-end suite with software nobody on this project wrote:
#   1. the official MCP conformance suite against a virtual server of mcpgate
#      that federates our fixture server (prefix_mode never), after checking
#      that the fixture itself passes;
#   2. the official Python SDK and TypeScript SDK as clients, through mcpgate,
#      against @modelcontextprotocol/server-everything registered upstream in
#      Streamable HTTP mode and in stdio mode, with prefixed names;
#   3. with MCPGATE_TEST_DATABASE_URL and MCPGATE_TEST_REDIS_URL: three
#      replicas on one PostgreSQL and one Redis behind an nginx front that
#      sends every request to the next replica (round robin, no affinity):
#      the conformance suite, and both SDK clients with progress, sampling,
#      elicitation and DELETE, each request on another replica.
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
  # MCPGATE_E2E_KEEP=1 keeps the logs and databases for a look afterwards.
  if [ "${MCPGATE_E2E_KEEP:-0}" = "1" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
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
# The same fixture, asking for sampling and elicitation on its session's
# GET stream (as servers on the TypeScript SDK do).
FXG_PORT=$(free_port)
"$BIN/mcpgate-fixture" --port "$FXG_PORT" --requests-on-get-stream >"$WORK/fixture-get.log" 2>&1 &
PIDS+=($!)
SE_PORT=$(free_port)
SE="$CACHE/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
(cd "$CACHE" && PORT=$SE_PORT exec "$NODE" -r "$HERE/loopback.cjs" "$SE" streamableHttp) >"$WORK/everything.log" 2>&1 &
PIDS+=($!)
GW_PORT=$(free_port)
EDGE=$(free_port)
SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
export JWT_SECRET_KEY=$SECRET AUTH_ENCRYPTION_SECRET=$SECRET DATABASE_URL="sqlite://$WORK/gw.db"
(cd "$WORK" && PORT=$GW_PORT EDGE_PORT=$EDGE SSRF_ALLOW_LOCALHOST=true MCP_REQUIRE_AUTH=false LOG_LEVEL=warn exec "$BIN/mcpgate" serve) >"$WORK/gateway.log" 2>&1 &
PIDS+=($!)
wait_port "$FX_PORT"; wait_port "$FXG_PORT"; wait_port "$SE_PORT"; wait_port "$GW_PORT"; wait_port "$EDGE"
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

PY="$CACHE/venv/bin/python"
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
check "register the fixture that asks on its GET stream" register fixture-get "http://127.0.0.1:$FXG_PORT/mcp" STREAMABLEHTTP
FXGID=$(api "$GW/v1/gateways" | python3 -c 'import json,sys; print([g["id"] for g in json.load(sys.stdin) if g["name"]=="fixture-get"][0])')
make_get_server() {
  local ids
  ids() { api "$GW/v1/$1?gateway_id=$FXGID&limit=500" | python3 -c 'import json,sys; print(json.dumps([x["id"] for x in json.load(sys.stdin)]))'; }
  api -X POST "$GW/v1/servers" -d "{\"id\": \"conformance-get\", \"name\": \"conformance-get\", \"prefix_mode\": \"never\",
    \"associated_tools\": $(ids tools), \"associated_resources\": $(ids resources), \"associated_prompts\": $(ids prompts)}" >/dev/null
}
check "virtual server over the fixture that asks on its GET stream" make_get_server

conformance() { # conformance NAME URL
  "$NODE22" "$CACHE/node_modules/@modelcontextprotocol/conformance/dist/index.js" server --url "$2" \
    --spec-version 2025-11-25 -o "$WORK/conf-$1" >"$WORK/conf-$1.log" 2>&1 || true
  "$NODE" "$CACHE/conformance-summary.mjs" "$WORK/conf-$1"
}
check "conformance: fixture directly" conformance fixture "http://127.0.0.1:$FX_PORT/mcp"
gateway_conformance() { conformance gateway "$GW/servers/conformance/mcp" | tee "$WORK/conf-gateway.summary"; }
check "conformance: through mcpgate /servers/conformance/mcp" gateway_conformance
get_stream_conformance() { # every scenario, the four relayed ones included, as in front of the plain fixture
  conformance gateway-get "$GW/servers/conformance-get/mcp" | tee "$WORK/conf-gateway-get.summary"
  for sc in tools-call-sampling tools-call-elicitation elicitation-sep1034-defaults elicitation-sep1330-enums; do
    grep -q "^PASS  $sc " "$WORK/conf-gateway-get.summary" || { echo "$sc did not pass"; return 1; }
  done
}
check "conformance: through mcpgate in front of an upstream that asks on its GET stream" get_stream_conformance

# The frozen requirement sets of each revision (conformance 0.2.0-alpha.12):
# through the gateway, on :4444 and through the edge, every scenario that
# passes against the fixture directly must pass.
requirements() { # requirements NAME URL SET
  "$NODE22" "$CACHE/node_modules/conformance-next/dist/index.js" server --url "$2" \
    --requirements "$3" -o "$WORK/req-$1-$3" >"$WORK/req-$1-$3.log" 2>&1 || true
  "$NODE" "$CACHE/conformance-summary.mjs" "$WORK/req-$1-$3" >"$WORK/req-$1-$3.summary" || true
}
set_through() { # set_through SET NAME URL
  requirements "$2" "$3" "$1"
  echo "fixture directly: $(tail -n 1 "$WORK/req-fixture-$1.summary"); $2: $(tail -n 1 "$WORK/req-$2-$1.summary")"
  local missing=0
  while read -r verdict scenario _; do
    [ "$verdict" = PASS ] || continue
    grep -q "^PASS  $scenario " "$WORK/req-$2-$1.summary" || { echo "passes directly, not through $2: $scenario"; missing=1; }
  done <"$WORK/req-fixture-$1.summary"
  return $missing
}
for set in 2025-11-25 2026-07-28; do
  requirements fixture "http://127.0.0.1:$FX_PORT/mcp" "$set"
  check "requirements $set: through mcpgate :4444 as directly" set_through "$set" gateway "$GW/servers/conformance/mcp"
  check "requirements $set: through the edge :8080 as directly" set_through "$set" edge "http://127.0.0.1:$EDGE/servers/conformance/mcp"
done

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

# --- the REST API against its own OpenAPI document ------------------------------
openapi_valid() {
  "$PY" - "$GW/openapi.json" <<'PY'
import json, sys, urllib.request
from openapi_spec_validator import validate
doc = json.load(urllib.request.urlopen(sys.argv[1]))
validate(doc)
ops = sum(1 for item in doc["paths"].values() for m in item if m in ("get", "post", "put", "delete"))
print(f"OpenAPI {doc['openapi']}: valid, {len(doc['paths'])} paths, {ops} operations")
PY
}
check "openapi.json is a valid OpenAPI 3.1 document" openapi_valid
# Property-based: every operation with generated valid and invalid input, with
# an admin token, directly and through the edge's cache; no answer may be 5xx.
schemathesis_run() { # schemathesis_run BASE
  (cd "$WORK" && "$CACHE/venv/bin/schemathesis" run "$1/openapi.json" -H "Authorization: Bearer $TOKEN" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples 25 --seed 20261208 --no-color --max-failures 5 --request-timeout 20) >"$WORK/schemathesis.log" 2>&1
  local rc=$?
  grep -E "[0-9]+ generated" "$WORK/schemathesis.log" | tail -n 1
  [ $rc -eq 0 ] || {
    sed -n '/FAILURES/,/WARNINGS/p' "$WORK/schemathesis.log" | head -n 80
    echo "the gateway's errors:"; grep -E "ERROR|panicked" "$WORK/gateway.log" | tail -n 20
    return 1
  }
}
check "schemathesis: the REST API on :4444 (no 5xx, answers as documented)" schemathesis_run "$GW"
check "schemathesis: the REST API through the edge (no 5xx, answers as documented)" schemathesis_run "http://127.0.0.1:$EDGE"

# --- several replicas, every request on the next one -----------------------------
if [ -n "${MCPGATE_TEST_DATABASE_URL:-}" ] && [ -n "${MCPGATE_TEST_REDIS_URL:-}" ] && command -v nginx >/dev/null && command -v psql >/dev/null; then
  DB="mcpgate_e2e_$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
  psql "$MCPGATE_TEST_DATABASE_URL" -qc "CREATE DATABASE $DB" >/dev/null
  drop_db() { psql "$MCPGATE_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true; }
  trap 'cleanup; drop_db' EXIT INT TERM
  RURL=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$MCPGATE_TEST_DATABASE_URL" "$DB")
  PREFIX="mcpgw-e2e-$(python3 -c 'import secrets; print(secrets.token_hex(4))'):"
  RPORTS=()
  for i in 1 2 3; do
    P=$(free_port); RPORTS+=("$P")
    (cd "$WORK" && DATABASE_URL="$RURL" CACHE_TYPE=redis REDIS_URL="$MCPGATE_TEST_REDIS_URL" CACHE_PREFIX="$PREFIX" \
      HOSTNAME="replica-$i" PORT=$P EDGE_PORT=0 EDGE_UPGRADE_SOCK="$WORK/upgrade-$i.sock" SERVER_THREADS=1 EDGE_THREADS=1 \
      DB_POOL_SIZE=5 SSRF_ALLOW_LOCALHOST=true MCP_REQUIRE_AUTH=false LOG_LEVEL=warn exec "$BIN/mcpgate" serve) >"$WORK/replica-$i.log" 2>&1 &
    PIDS+=($!)
  done
  for P in "${RPORTS[@]}"; do wait_port "$P"; done
  FRONT=$(free_port)
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<NGINX
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  log_format upstream '\$upstream_addr';
  access_log $WORK/nginx/access.log upstream;
  client_body_temp_path $WORK/nginx/body; proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fcgi; uwsgi_temp_path $WORK/nginx/uwsgi; scgi_temp_path $WORK/nginx/scgi;
  upstream replicas { server 127.0.0.1:${RPORTS[0]}; server 127.0.0.1:${RPORTS[1]}; server 127.0.0.1:${RPORTS[2]}; }
  server {
    listen 127.0.0.1:$FRONT;
    location / {
      proxy_pass http://replicas; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host 127.0.0.1:$FRONT;
      proxy_buffering off; proxy_cache off; proxy_read_timeout 300s;
      proxy_next_upstream off;
    }
  }
}
NGINX
  nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' >"$WORK/nginx.log" 2>&1 &
  PIDS+=($!)
  wait_port "$FRONT"
  RR="http://127.0.0.1:$FRONT"
  R1="http://127.0.0.1:${RPORTS[0]}"
  rr_register() { curl -fsS -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -X POST "$R1/v1/gateways" \
    -d "{\"name\": \"fixture\", \"url\": \"http://127.0.0.1:$FX_PORT/mcp\", \"transport\": \"STREAMABLEHTTP\"}" >/dev/null; }
  check "replicas: register the fixture on one replica" rr_register
  rr_ids() { curl -fsS -H "Authorization: Bearer $TOKEN" "$R1/v1/$1?limit=500" | python3 -c 'import json,sys; print(json.dumps([x["id"] for x in json.load(sys.stdin)]))'; }
  rr_server() {
    curl -fsS -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -X POST "$R1/v1/servers" \
      -d "{\"id\": \"conformance\", \"name\": \"conformance\", \"prefix_mode\": \"never\", \"associated_tools\": $(rr_ids tools), \"associated_resources\": $(rr_ids resources), \"associated_prompts\": $(rr_ids prompts)}" >/dev/null
    # Every replica serves it before the clients start.
    for P in "${RPORTS[@]}"; do
      for _ in $(seq 1 50); do
        curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$P/v1/servers/conformance" && break
        sleep 0.1
      done
    done
  }
  check "replicas: virtual server over the fixture" rr_server
  rr_conformance() {
    conformance replicas "$RR/servers/conformance/mcp" | tee "$WORK/conf-replicas.summary"
    # Exactly as through one replica.
    [ "$(tail -n 1 "$WORK/conf-replicas.summary")" = "$(tail -n 1 "$WORK/conf-gateway.summary")" ]
  }
  check "replicas: conformance through the round-robin front (as through one replica)" rr_conformance
  # The 2025-11-25 handshake (sessions; the 2026-07-28 era is stateless and
  # asks for sampling differently, issue 14).
  check "replicas: python SDK, every request on the next replica" "$PY" "$HERE/py_client.py" "$RR/servers/conformance/mcp" --token "$TOKEN" --mode legacy \
    --tool echo --args '{"message": "round robin"}' --expect "round robin" --resource test://static-text --prompt test_simple_prompt \
    --progress-tool test_tool_with_progress --sampling-tool test_sampling --elicitation-tool test_elicitation
  check "replicas: typescript SDK, every request on the next replica" env PROGRESS_TOOL=test_tool_with_progress SAMPLING_TOOL=test_sampling \
    ELICITATION_TOOL=test_elicitation "$NODE" "$CACHE/ts_client.mjs" "$RR/servers/conformance/mcp" "$TOKEN" echo \
    '{"message": "round robin"}' "round robin" test://static-text test_simple_prompt '{}'
  rr_spread() { # the front really spread the requests over the three replicas
    python3 - "$WORK/nginx/access.log" <<'PY'
import collections, sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if l and l != "-"]
per = collections.Counter(lines)
print(f"{len(lines)} requests through the front: {dict(per)}")
sys.exit(0 if len(per) == 3 and min(per.values()) >= 10 else 1)
PY
  }
  check "replicas: the front spread the session over the replicas" rr_spread
else
  log "multi-replica e2e: NOT RUN - needs MCPGATE_TEST_DATABASE_URL, MCPGATE_TEST_REDIS_URL, nginx and psql"
fi

echo "e2e: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
