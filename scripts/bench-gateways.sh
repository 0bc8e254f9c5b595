#!/usr/bin/env bash
# Side by side: the zero-work upstream of crates/serve/examples/gateways.rs called directly,
# through `conductor serve` and through IBM ContextForge (PyPI `mcp-contextforge-gateway`),
# each gateway its own process on 127.0.0.1, the same client load (the `bench` mode of that
# example: 2,000 sequential tools/call after 200 warm-up, then 64 concurrent clients for
# SECONDS), alternated round by round. Not a test: figures for crates/serve/BENCHMARKS.md.
#   bash scripts/bench-gateways.sh [ROUNDS, default 1] [SECONDS, default 3]
# PROFILE=release (default) or debug: how conductor and the load generator are built.
# ContextForge is installed on first use into .peers/contextforge (a venv; PyPI only).
# 1.1.0 needs Python >= 3.12; with an older python3 the newest release for it is used.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-1}"
SECS="${2:-3}"
PROFILE="${PROFILE:-release}"
PEERS_DIR="${PEERS_DIR:-$PWD/.peers}"
PYTHON="${PYTHON:-python3}"
if "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then
  CF_PIN="mcp-contextforge-gateway==1.1.0"
else
  CF_PIN="mcp-contextforge-gateway==1.0.7.post20260921"
fi
CF="$PEERS_DIR/contextforge"
if [ "$(cat "$CF/stamp" 2>/dev/null)" != "$CF_PIN" ] || [ ! -x "$CF/bin/mcpgateway" ]; then
  echo "bench-gateways: installing $CF_PIN into $CF" >&2
  rm -rf "$CF"
  "$PYTHON" -m venv "$CF"
  "$CF/bin/python" -m pip install --quiet --disable-pip-version-check "$CF_PIN"
  echo "$CF_PIN" >"$CF/stamp"
fi
flag=(); [ "$PROFILE" = release ] && flag=(--release)
cargo build "${flag[@]}" -q -p conductor-cli --bin conductor
cargo build "${flag[@]}" -q -p conductor-serve --example gateways
bin="$PWD/target/$PROFILE"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
for v in HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy; do unset "$v"; done
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

"$bin/examples/gateways" upstream >"$work/up.out" &
pids+=($!)
for _ in $(seq 100); do grep -q '^UPSTREAM ' "$work/up.out" 2>/dev/null && break; sleep 0.1; done
up="$(sed -n 's/^UPSTREAM //p' "$work/up.out")"
[ -n "$up" ] || { echo "bench-gateways: the upstream did not start" >&2; exit 1; }

# conductor serve: the same policy and gateway file as examples/bench.rs (every call
# decided and committed to the audit database).
cat >"$work/policy.yaml" <<'YAML'
version: 1
agents:
  bench: {roles: [r]}
roles:
  r:
    allow:
      - tools: ["up.*"]
        actions: [read]
tools:
  up.noop: {action: read, destinations: []}
YAML
cat >"$work/gateway.yaml" <<YAML
version: 1
listen: "127.0.0.1:0"
servers:
  up: {url: "$up"}
auth: {none: {agent: bench}}
limits: {max_sessions: 100000}
YAML
(cd "$work" && exec "$bin/conductor" serve --policy policy.yaml --config gateway.yaml \
  --audit audit.db --print-address >"$work/gw.out" 2>"$work/gw.err") &
pids+=($!)
for _ in $(seq 200); do [ -s "$work/gw.out" ] && break; sleep 0.1; done
gw="$(head -1 "$work/gw.out")"
[ -n "$gw" ] || { echo "bench-gateways: serve did not start" >&2; cat "$work/gw.err" >&2; exit 1; }

# ContextForge: one worker (its `mcpgateway` default), SQLite, in-memory cache, no UI, its
# rate limiter off (100 calls/min by default would be the figure), JWT
# auth on (its default) with a token minted for the run; the upstream registered as a
# Streamable HTTP gateway and its tool put in a virtual server.
cfport="$(free_port)"
secret="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
(cd "$work" && exec env HOST=127.0.0.1 PORT="$cfport" DATABASE_URL="sqlite:///$work/cf.db" \
  JWT_SECRET_KEY="$secret" PLATFORM_ADMIN_EMAIL=admin@example.com \
  PLATFORM_ADMIN_PASSWORD="Bench-$secret" BASIC_AUTH_PASSWORD="Bench-$secret" \
  MCPGATEWAY_UI_ENABLED=false MCPGATEWAY_ADMIN_API_ENABLED=true SSRF_ALLOW_LOCALHOST=true \
  CACHE_TYPE=memory LOG_LEVEL=ERROR OTEL_ENABLE_OBSERVABILITY=false RATE_LIMITING_ENABLED=false \
  "$CF/bin/mcpgateway" --host 127.0.0.1 --port "$cfport" >"$work/cf.log" 2>&1) &
pids+=($!)
for _ in $(seq 600); do curl -sf -m 2 "http://127.0.0.1:$cfport/health" >/dev/null && break; sleep 1; done
curl -sf -m 2 "http://127.0.0.1:$cfport/health" >/dev/null \
  || { echo "bench-gateways: ContextForge did not start" >&2; tail -20 "$work/cf.log" >&2; exit 1; }
token="$(JWT_SECRET_KEY="$secret" "$CF/bin/python" -m mcpgateway.utils.create_jwt_token \
  --username admin@example.com --exp 120 --secret "$secret" | tail -1)"
api() { curl -sf -m 120 -H "Authorization: Bearer $token" -H 'content-type: application/json' "$@"; }
api -X POST "http://127.0.0.1:$cfport/gateways" \
  -d "{\"name\":\"zero\",\"url\":\"$up\",\"transport\":\"STREAMABLEHTTP\"}" >/dev/null
tool_id="$(api "http://127.0.0.1:$cfport/tools" | "$PYTHON" -c \
  'import json,sys; print([t["id"] for t in json.load(sys.stdin) if t["name"] == "zero-noop"][0])')"
server_id="$(api -X POST "http://127.0.0.1:$cfport/servers" \
  -d "{\"server\":{\"name\":\"bench\",\"associated_tools\":[\"$tool_id\"]},\"visibility\":\"public\"}" \
  | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["id"])')"

echo "bench-gateways: $PROFILE build; upstream $up; serve $gw; ContextForge ($CF_PIN) 127.0.0.1:$cfport"
HEADER_CONTEXTFORGE="Authorization: Bearer $token" "$bin/examples/gateways" bench "$ROUNDS" "$SECS" \
  direct "$up" noop \
  serve "http://$gw/mcp/up" noop \
  contextforge "http://127.0.0.1:$cfport/servers/$server_id/mcp" zero-noop
