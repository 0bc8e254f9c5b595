#!/usr/bin/env bash
# Soak: `conductor serve` as its own process in front of the zero-work upstream of
# crates/serve/examples/gateways.rs, a steady rate of tools/call for a fixed time (4 clients,
# each ending its session with DELETE and opening a new one every 100 calls), the gateway's
# RSS sampled every 10 s; prints start/peak/end and the slope, then the RSS with 1,000 more
# open sessions. Not a test: a figure for crates/serve/BENCHMARKS.md.
#   bash scripts/soak-serve.sh [RATE calls/s, default 200] [SECONDS, default 600]
# PROFILE=release (default) or PROFILE=debug (what to build and run).
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${1:-200}"
SECS="${2:-600}"
PROFILE="${PROFILE:-release}"
flag=(); [ "$PROFILE" = release ] && flag=(--release)
cargo build "${flag[@]}" -q -p conductor-cli --bin conductor
cargo build "${flag[@]}" -q -p conductor-serve --example gateways
bin="$PWD/target/$PROFILE"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
for v in HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy; do unset "$v"; done

"$bin/examples/gateways" upstream >"$work/up.out" &
pids+=($!)
for _ in $(seq 100); do grep -q '^UPSTREAM ' "$work/up.out" 2>/dev/null && break; sleep 0.1; done
up="$(sed -n 's/^UPSTREAM //p' "$work/up.out")"
[ -n "$up" ] || { echo "soak: the upstream did not start" >&2; exit 1; }

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
gwpid=$!
pids+=("$gwpid")
for _ in $(seq 200); do [ -s "$work/gw.out" ] && break; sleep 0.1; done
gw="$(head -1 "$work/gw.out")"
[ -n "$gw" ] || { echo "soak: serve did not start" >&2; cat "$work/gw.err" >&2; exit 1; }
echo "soak: serve (pid $gwpid, $PROFILE) on $gw, upstream $up, $RATE calls/s for $SECS s"
"$bin/examples/gateways" soak "http://$gw/mcp/up" noop "$gwpid" "$RATE" "$SECS"
echo "soak: audit database $(du -k "$work/audit.db" | cut -f1) KiB at the end"
