#!/usr/bin/env bash
# Instructions per call of the `serve` gateway under callgrind (load-insensitive, unlike
# wall-clock figures on the shared 2-core VM): `bench upstream`, `bench gateway` under
# valgrind, `wrk -t1 -c8` stateless tools/calls (the body of bench/wrk.sh); the counters are
# zeroed after a 5 s warm-up and dumped after SECONDS; prints calls, instructions and
# instructions per call. Compare binaries in one session (BIN = a copy of the old one).
#   cargo build --release -p conductor-serve --example bench
#   bash crates/serve/bench/callgrind.sh [BIN] [SECONDS, default 20]
# Needs valgrind and wrk.
set -euo pipefail
BIN=${1:-target/release/examples/bench}
SECS=${2:-20}
d=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$d"' EXIT
cat >"$d/mcp.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"noop","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = "noop"
LUA
"$BIN" upstream >"$d/up.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q '^listening ' "$d/up.out" && break; sleep 0.1; done
up=$(sed -n 's/^listening //p' "$d/up.out")
valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" "$BIN" gateway "$up" none >"$d/gw.out" 2>"$d/gw.err" &
gw_pid=$!
pids+=("$gw_pid")
for _ in $(seq 600); do grep -q '^listening ' "$d/gw.out" 2>/dev/null && break; sleep 0.2; done
gw=$(sed -n 's/^listening //p' "$d/gw.out")
[ -n "$gw" ] || { cat "$d/gw.err" >&2; exit 1; }
wrk -t1 -c8 -d5s -s "$d/mcp.lua" "http://$gw/mcp/up" >/dev/null
callgrind_control -z "$gw_pid" >/dev/null
wrk -t1 -c8 -d"${SECS}s" -s "$d/mcp.lua" "http://$gw/mcp/up" >"$d/run.out"
callgrind_control -d "$gw_pid" >/dev/null 2>&1
sleep 1
n=$(awk '/requests in/ {print $1}' "$d/run.out")
ir=$(grep -h '^summary:' "$d"/cg.out.* | awk '{print $2}' | tail -1)
echo "$BIN: $n calls, $ir instructions, $((ir / n)) instructions/call; load average $(cut -d' ' -f1-3 /proc/loadavg)"
