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
NAME=bench-gateways
# shellcheck source=scripts/lib/serve-bench.sh
source scripts/lib/serve-bench.sh
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

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
