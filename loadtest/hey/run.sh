#!/usr/bin/env bash
# The reference's hey runs against a gateway:
#   hey -n 10000 -c 200 -m POST -T application/json -D payload.json ...
#
#   loadtest/hey/run.sh [BASE_URL] [TOKEN]
# BASE_URL defaults to http://127.0.0.1:4444; TOKEN defaults to $TOKEN.
# N and C override the request count and concurrency. hey saturates near
# 40k requests/s on a 2-core machine: use loadtest/run (wrk) for comparisons.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BASE=${1:-http://127.0.0.1:4444}
TOKEN=${2:-${TOKEN:-}}
N=${N:-10000}
C=${C:-200}
command -v hey >/dev/null || { echo "hey is missing (Debian: apt-get install hey)" >&2; exit 1; }
auth=()
[ -n "$TOKEN" ] && auth=(-H "Authorization: Bearer $TOKEN")

run() { echo; echo "=== $1"; shift; hey -n "$N" -c "$C" "$@"; }
run "GET /health" "$BASE/health"
run "POST /rpc tools/list" -m POST -T application/json -D "$HERE/payloads/tools-list.json" "${auth[@]}" "$BASE/rpc"
run "POST /rpc tools/call fixture-echo" -m POST -T application/json -D "$HERE/payloads/tools-call.json" "${auth[@]}" "$BASE/rpc"
run "GET /v1/tools" "${auth[@]}" "$BASE/v1/tools"
