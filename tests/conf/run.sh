#!/usr/bin/env bash
# Checks of the deployment files in conf/, with the tools their users run:
#   1. Prometheus alert rules: `promtool check rules` and `promtool test rules`;
#   2. conf/docker-compose.yml against the Compose specification's JSON schema;
#   3. every Kubernetes object in conf/k8s/ against the Kubernetes schemas,
#      offline (kubernetes-validate), and the ConfigMap equal to conf/mcpgate.yaml;
#   4. every metric the Grafana dashboard queries exists on a live instance
#      (the debug binary with its edge, after a little traffic);
#   5. with MCPGATE_TEST_DATABASE_URL, MCPGATE_TEST_REDIS_URL and
#      MCPGATE_TEST_PGBOUNCER_URL: the compose topology as local processes —
#      both gateway replicas started from the compose file's own
#      `environment:` (hosts, ports and the database name are this test's),
#      through PgBouncer and Redis, each answering /ready.
# Installs what it needs from PyPI into $MCPGATE_CONF_CACHE (default
# ~/.cache/mcpgate-conf). Last line: "conf: N passed, M failed".
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${MCPGATE_CONF_CACHE:-$HOME/.cache/mcpgate-conf}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcpgate-target}"
log() { printf '[conf] %s\n' "$*" >&2; }
mkdir -p "$CACHE"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

PASS=0; FAIL=0
check() { # check NAME CMD...
  local name=$1; shift
  if "$@" >"$WORK/step.log" 2>&1; then PASS=$((PASS + 1)); log "PASS $name"; else FAIL=$((FAIL + 1)); log "FAIL $name"; fi
  sed 's/^/    /' "$WORK/step.log" >&2
}

# --- tools ---------------------------------------------------------------------
PY="$CACHE/venv/bin/python"
if [ ! -x "$PY" ]; then
  python3 -m venv "$CACHE/venv" || { log "python3 -m venv failed (Debian: apt-get install python3-venv)"; exit 1; }
fi
if ! cmp -s "$HERE/requirements.txt" "$CACHE/requirements.txt"; then
  "$CACHE/venv/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt" >&2 || { log "pip install failed"; exit 1; }
  cp "$HERE/requirements.txt" "$CACHE/requirements.txt"
fi
# The Compose specification's schema, as the docker-compose package ships it.
if [ ! -s "$CACHE/compose_spec.json" ]; then
  "$CACHE/venv/bin/pip" download -q --no-deps --disable-pip-version-check -d "$CACHE/dl" docker-compose==1.29.2 >&2 \
    && "$PY" - "$CACHE" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/dl/docker_compose-*.whl")[0]
open(sys.argv[1] + "/compose_spec.json", "wb").write(zipfile.ZipFile(whl).read("compose/config/compose_spec.json"))
PY
fi

# --- 1. alert rules ------------------------------------------------------------------
promtool_checks() {
  command -v promtool >/dev/null || { echo "promtool is missing (Debian: apt-get install prometheus)"; return 1; }
  (cd "$ROOT/conf/prometheus" && promtool check rules alerts.yaml && promtool test rules alerts.test.yaml)
}
check "alert rules: promtool check and test" promtool_checks

# --- 2. compose ------------------------------------------------------------------------
compose_schema() {
  "$PY" - "$ROOT/conf/docker-compose.yml" "$CACHE/compose_spec.json" <<'PY'
import json, sys, yaml, jsonschema
doc = yaml.safe_load(open(sys.argv[1]))
schema = json.load(open(sys.argv[2]))
jsonschema.validate(doc, schema)
services = doc["services"]
gateways = [n for n in services if n.startswith("gateway")]
assert len(gateways) >= 2, "two gateway replicas"
for name, s in services.items():
    assert "healthcheck" in s, f"{name} has no healthcheck"
    for dep, cond in (s.get("depends_on") or {}).items():
        assert cond.get("condition") == "service_healthy", f"{name} -> {dep}"
# Secrets only from the environment file.
text = open(sys.argv[1]).read()
for secret in ("JWT_SECRET_KEY", "AUTH_ENCRYPTION_SECRET", "POSTGRES_PASSWORD"):
    for line in text.splitlines():
        if secret + ":" in line and "#" not in line.split(secret)[0]:
            assert "${" in line, f"{secret} is a literal: {line.strip()}"
print(f"valid: {len(services)} services ({', '.join(services)})")
PY
}
check "compose file: Compose specification schema, healthchecks, secrets from .env" compose_schema

# --- 3. Kubernetes ---------------------------------------------------------------------
k8s_valid() {
  local ok=0
  for f in "$ROOT"/conf/k8s/*.yaml; do
    case "$f" in *servicemonitor.yaml) echo "skipped (a CRD): $(basename "$f")"; continue ;; esac
    "$CACHE/venv/bin/kubernetes-validate" --strict --kubernetes-version 1.32 "$f" || ok=1
  done
  "$PY" - "$ROOT" <<'PY' || ok=1
import sys, yaml
root = sys.argv[1]
cm = yaml.safe_load(open(root + "/conf/k8s/configmap.yaml"))
assert cm["data"]["mcpgate.yaml"] == open(root + "/conf/mcpgate.yaml").read(), \
    "conf/k8s/configmap.yaml is not conf/mcpgate.yaml: regenerate it"
print("configmap.yaml carries conf/mcpgate.yaml")
PY
  return $ok
}
check "kubernetes objects: valid against the 1.32 schemas" k8s_valid

# --- 4. dashboard metrics exist ------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() { # wait_ready URL
  for _ in $(seq 1 300); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "$1 never answered"; return 1
}
log "building mcpgate"
(cd "$ROOT" && cargo build --bins -q) || { log "build failed"; exit 1; }
BIN="$CARGO_TARGET_DIR/debug"
dashboard_metrics() {
  local port edge metrics
  port=$(free_port); edge=$(free_port); metrics=$(free_port)
  mkdir -p "$WORK/dash"
  (cd "$WORK/dash" && PORT=$port EDGE_PORT=$edge METRICS_PORT=$metrics DATABASE_URL="sqlite://$WORK/dash/gw.db" \
    MCP_REQUIRE_AUTH=false AUTH_REQUIRED=false LOG_LEVEL=warn exec "$BIN/mcpgate" serve) >"$WORK/dash.log" 2>&1 &
  PIDS+=($!)
  wait_ready "http://127.0.0.1:$port/ready" || return 1
  # A little traffic of each kind, so that labelled series exist.
  curl -fs -o /dev/null -X POST "http://127.0.0.1:$port/v1/tools" -H 'content-type: application/json' \
    -d '{"name": "t", "url": "https://api.example.com/x", "request_type": "GET"}'
  for base in "http://127.0.0.1:$port" "http://127.0.0.1:$edge"; do
    curl -fs -o /dev/null "$base/v1/tools"
    curl -fs -o /dev/null "$base/v1/tools"
    curl -fs -o /dev/null -X POST "$base/rpc" -H 'content-type: application/json' -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
    curl -fs -o /dev/null -X POST "$base/rpc" -H 'content-type: application/json' -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t"}}'
  done
  curl -fs "http://127.0.0.1:$metrics/metrics" >"$WORK/metrics.txt" || return 1
  "$PY" - "$ROOT/conf/grafana/mcpgate-dashboard.json" "$WORK/metrics.txt" <<'PY'
import json, re, sys
dash = json.load(open(sys.argv[1]))
lines = open(sys.argv[2]).read().splitlines()
# A family is served once declared (# TYPE), samples or not yet.
names_served = {l.split("{")[0].split(" ")[0] for l in lines if l and not l.startswith("#")}
for l in lines:
    if l.startswith("# TYPE "):
        name, kind = l.split()[2:4]
        names_served.add(name)
        if kind == "histogram":
            names_served.update(name + s for s in ("_bucket", "_sum", "_count"))
functions = {"sum", "by", "rate", "histogram_quantile", "topk", "min", "max", "le", "avg", "count"}
missing, seen = [], set()
for p in dash["panels"]:
    for t in p["targets"]:
        expr = re.sub(r'\{[^}]*\}', "", t["expr"])
        expr = re.sub(r'\([^()]*\)\s*(?=\()', "", expr)
        for name in re.findall(r'[a-zA-Z_:][a-zA-Z0-9_:]*', expr):
            if name in functions or not ("_" in name):
                continue
            if name in ("status", "method", "zone", "gateway", "class", "limit", "tool", "instance", "result", "outcome", "le"):
                continue
            seen.add(name)
            if name not in names_served:
                missing.append(name)
print(f"{len(seen)} metrics queried by the dashboard; served: {len(seen) - len(set(missing))}")
assert not missing, f"queried but not served: {sorted(set(missing))}"
PY
}
check "grafana dashboard: every metric it queries is served" dashboard_metrics

# --- 5. the compose topology as local processes ----------------------------------------------
if [ -n "${MCPGATE_TEST_DATABASE_URL:-}" ] && [ -n "${MCPGATE_TEST_REDIS_URL:-}" ] && [ -n "${MCPGATE_TEST_PGBOUNCER_URL:-}" ] && command -v psql >/dev/null; then
  compose_topology() {
    local db="mcpgate_t_compose_$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
    psql "$MCPGATE_TEST_DATABASE_URL" -qc "DO \$\$ BEGIN CREATE ROLE mcpgate LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$" || return 1
    psql "$MCPGATE_TEST_DATABASE_URL" -qc "CREATE DATABASE $db OWNER mcpgate" || return 1
    printf 'POSTGRES_PASSWORD=%s\nJWT_SECRET_KEY=%s\nAUTH_ENCRYPTION_SECRET=%s\n' \
      "$(openssl rand -hex 16)" "$(openssl rand -base64 48 | tr -d '\n')" "$(openssl rand -base64 48 | tr -d '\n')" >"$WORK/compose.env"
    local ok=0 i=0
    for svc in $("$PY" -c 'import sys, yaml; print(" ".join(n for n in yaml.safe_load(open(sys.argv[1]))["services"] if n.startswith("gateway")))' "$ROOT/conf/docker-compose.yml"); do
      i=$((i + 1))
      local port edge metrics
      port=$(free_port); edge=$(free_port); metrics=$(free_port)
      # The service's environment, interpolated from the env file, with the
      # compose network's hosts mapped to this machine's services.
      "$PY" - "$ROOT/conf/docker-compose.yml" "$svc" "$WORK/compose.env" "$MCPGATE_TEST_PGBOUNCER_URL" "$MCPGATE_TEST_REDIS_URL" "$db" \
        "$port" "$edge" "$metrics" >"$WORK/$svc.env" <<'PY' || return 1
import re, shlex, sys, urllib.parse as u, yaml
compose, svc, envfile, pgb, redis, db, port, edge, metrics = sys.argv[1:]
vals = dict(l.strip().split("=", 1) for l in open(envfile) if "=" in l)
def interpolate(v):
    def one(m):
        name = m.group(1)
        if name not in vals or not vals[name]:
            sys.exit(f"{name} is required by the compose file")
        return vals[name]
    return re.sub(r"\$\{([A-Z_]+)(?::\?[^}]*)?\}", one, str(v))
env = {k: interpolate(v) for k, v in yaml.safe_load(open(compose))["services"][svc]["environment"].items()}
p = u.urlsplit(pgb)
dbu = u.urlsplit(env["DATABASE_URL"])
# Hosts and ports of this machine; the database name is this test's; the
# password is not checked by the test PgBouncer (trust).
env["DATABASE_URL"] = u.urlunsplit(dbu._replace(netloc=f"{dbu.username}:{dbu.password}@{p.hostname}:{p.port}", path="/" + db))
env["REDIS_URL"] = redis
env.update(PORT=port, EDGE_PORT=edge, METRICS_PORT=metrics, HOST="127.0.0.1",
           EDGE_UPGRADE_SOCK=f"/tmp/mcpgate-compose-{port}.sock", HOSTNAME=svc)
for k, v in env.items():
    print(f"export {k}={shlex.quote(v)}")
PY
      ( cd "$WORK" && . "$WORK/$svc.env" && exec "$BIN/mcpgate" serve ) >"$WORK/$svc.log" 2>&1 &
      PIDS+=($!)
      echo "$svc: :$port (edge :$edge)"
      echo "$port" >>"$WORK/ports"
    done
    while read -r port; do
      if wait_ready "http://127.0.0.1:$port/ready"; then
        echo "replica on :$port: $(curl -fs "http://127.0.0.1:$port/ready")"
      else
        ok=1; tail -n 20 "$WORK"/*.log
      fi
    done <"$WORK/ports"
    psql "$MCPGATE_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    return $ok
  }
  check "compose topology: both replicas from the compose environment, through PgBouncer and Redis, ready" compose_topology
else
  log "compose topology: NOT RUN - needs MCPGATE_TEST_DATABASE_URL, MCPGATE_TEST_REDIS_URL, MCPGATE_TEST_PGBOUNCER_URL and psql"
fi

echo "conf: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
