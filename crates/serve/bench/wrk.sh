#!/usr/bin/env bash
# `serve` load benchmark with a lean generator: three processes — the zero-work upstream
# (`bench upstream`), the gateway (`bench gateway`), and `wrk` (one thread) — so that the
# generator neither shares a runtime with the gateway nor costs what a reqwest client does.
# Direct (wrk → upstream) and through serve (wrk → serve → upstream) are alternated in
# one run with the same generator, the same body and the same headers: a `tools/call` of
# the stateless 2026-07-28 revision (`Mcp-Method`/`Mcp-Name`/`MCP-Protocol-Version`, no
# session). Every call through serve is decided and its audit record committed before it
# is forwarded; the gateway's `/metrics` is read after each phase to prove that every
# request was an allowed, forwarded call (no refusal, no error passed for a success).
#
# For each authentication (none, api-key, jwt: an ES256 token whose key is cached) it also
# runs AuthZEN single evaluations (`POST /access/v1/evaluation`) and `GET /healthz` through
# the same listener, and reports the gateway's CPU time per call (user+sys of the gateway
# process / calls: less sensitive to the machine's load than wall-clock figures) and, with
# PERF=1, its instructions per call (`perf stat -e instructions -p`; `n/a` on a VM without
# a PMU, as the 2-core development VM is).
#
#   cargo build --release -p conductor-serve --example bench
#   bash crates/serve/bench/wrk.sh [ROUNDS] [SECONDS] [AUTH...]
#
# BENCH_BIN: the bench binary (default target/release/examples/bench); UPSTREAM_BIN: the
# one whose upstream role to run (default BENCH_BIN), to keep "direct" the same while
# comparing gateways built differently (another allocator, an older commit).
#
# Needs `wrk` (scripts/setup-debian.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROUNDS=${1:-3}
SECS=${2:-5}
shift 2 2>/dev/null || shift $#
AUTHS=("${@:-none}")
[ ${#AUTHS[@]} -eq 0 ] && AUTHS=(none)
BIN=${BENCH_BIN:-target/release/examples/bench}
CLIENTS=${CLIENTS:-64}
command -v wrk >/dev/null || { echo "wrk is missing: bash scripts/setup-debian.sh" >&2; exit 1; }
[ -x "$BIN" ] || { echo "build first: cargo build --release -p conductor-serve --example bench" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# Start "$@" in the background, its stdout in $work/$name.out; wait for `listening ADDR`.
start() {
  local name=$1; shift
  "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  echo $! >"$work/$name.pid"
  for _ in $(seq 200); do
    grep -q '^listening ' "$work/$name.out" 2>/dev/null && break
    sleep 0.05
  done
  grep -q '^listening ' "$work/$name.out" || { cat "$work/$name.err" >&2; exit 1; }
}
addr() { sed -n 's/^listening //p' "$work/$1.out"; }

cat >"$work/mcp.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"noop","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = "noop"
local a = os.getenv("BENCH_AUTHORIZATION")
if a and a ~= "" then wrk.headers["Authorization"] = a end
EOF
cat >"$work/authzen.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"subject":{"type":"agent","id":"bench"},"action":{"name":"tools/call"},"resource":{"type":"tool","id":"up.noop","properties":{"arguments":{"q":"hello"}}},"context":{"session":"bench"}}'
wrk.headers["Content-Type"] = "application/json"
local a = os.getenv("BENCH_AUTHORIZATION")
if a and a ~= "" then wrk.headers["Authorization"] = a end
EOF
cat >"$work/get.lua" <<'EOF'
EOF
for f in mcp authzen get; do
  cat >>"$work/$f.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %.0f %d %d\n", summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout,
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99)))
end
EOF
done

# cpu_ticks PID: user+sys clock ticks of the process so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# metric NAME LABEL_FILTER: the sum of a gateway counter's samples matching a filter.
metric() {
  curl -s "http://$(addr gw)/metrics" | awk -v n="$1" -v f="$2" \
    '$1 ~ "^"n"(\\{|$)" && index($1, f) { s += $2 } END { printf "%d\n", s }'
}

# run NAME URL LUA CONNECTIONS: one wrk phase; prints a row, sets REQ.
run() {
  local name=$1 url=$2 lua=$3 conns=$4 gwpid t0 t1 perf_out=""
  gwpid=$(cat "$work/gw.pid")
  t0=$(cpu_ticks "$gwpid")
  if [ "${PERF:-0}" = 1 ] && [[ $name == serve* || $name == authzen* || $name == healthz* ]]; then
    perf stat -x, -e instructions -p "$gwpid" -o "$work/perf.txt" -- sleep "$SECS" &
    perf_out=$!
  fi
  local out
  out=$(wrk -t1 -c"$conns" -d"${SECS}s" --timeout 5s -s "$work/$lua.lua" "$url" | sed -n 's/^RESULT //p')
  [ -n "$perf_out" ] && wait "$perf_out"
  t1=$(cpu_ticks "$gwpid")
  read -r REQ ERR RPS P50 P99 <<<"$out"
  local cpu="" ins=""
  if [[ $name != direct* ]]; then
    cpu=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$REQ" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }')
    cpu=" gateway cpu ${cpu} us/call"
  fi
  if [ -n "$perf_out" ]; then
    # A VM without a PMU says `<not supported>`.
    ins=$(awk -F, -v n="$REQ" '$3 ~ /^instructions/ { if ($1 ~ /^[0-9]+$/) printf "%.0f", $1 / n; else printf "n/a" }' "$work/perf.txt")
    ins=" ${ins} instructions/call"
  fi
  printf '%-28s c=%-3s %8s req/s  p50 %6s us  p99 %7s us  errors %s%s%s\n' \
    "$name" "$conns" "$RPS" "$P50" "$P99" "$ERR" "$cpu" "$ins"
  [ "$ERR" = 0 ] || { echo "FAILED: $ERR errors in $name" >&2; exit 1; }
}

# forwarded CALLS: every call of the last phase was an allowed, forwarded tools/call.
check_forwarded() {
  local before=$1 after
  after=$(metric conductor_calls_total 'decision="allow"')
  if [ $((after - before)) -lt "$REQ" ]; then
    echo "FAILED: $REQ requests but $((after - before)) allowed calls counted" >&2
    exit 1
  fi
}

start up "${UPSTREAM_BIN:-$BIN}" upstream
UP=$(addr up)
echo "machine: $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg); rounds $ROUNDS, ${SECS} s per phase; wrk -t1"
for auth in "${AUTHS[@]}"; do
  start gw "$BIN" gateway "$UP" "$auth"
  GW=$(addr gw)
  export BENCH_AUTHORIZATION
  BENCH_AUTHORIZATION=$(sed -n 's/^authorization //p' "$work/gw.out")
  # One call by hand: the answer is the upstream's (`ok`), not a refusal.
  hdr=()
  [ -n "$BENCH_AUTHORIZATION" ] && hdr=(-H "Authorization: $BENCH_AUTHORIZATION")
  body=$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$work/mcp.lua")
  answer=$(curl -s "${hdr[@]}" -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -H 'MCP-Protocol-Version: 2026-07-28' -H 'Mcp-Method: tools/call' -H 'Mcp-Name: noop' \
    --data "$body" "http://$GW/mcp/up")
  [[ $answer == *'"text":"ok"'* && $answer != *isError* ]] || { echo "FAILED: $answer" >&2; exit 1; }
  echo "== auth: $auth (gateway $GW, upstream $UP)"
  for r in $(seq "$ROUNDS"); do
    echo "-- round $r, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    run "direct sequential" "http://$UP/mcp" mcp 1
    b=$(metric conductor_calls_total 'decision="allow"')
    run "serve sequential" "http://$GW/mcp/up" mcp 1
    check_forwarded "$b"
    run "direct $CLIENTS clients" "http://$UP/mcp" mcp "$CLIENTS"
    b=$(metric conductor_calls_total 'decision="allow"')
    run "serve $CLIENTS clients" "http://$GW/mcp/up" mcp "$CLIENTS"
    check_forwarded "$b"
    run "healthz sequential" "http://$GW/healthz" get 1
    run "authzen sequential" "http://$GW/access/v1/evaluation" authzen 1
    run "healthz $CLIENTS clients" "http://$GW/healthz" get "$CLIENTS"
    run "authzen $CLIENTS clients" "http://$GW/access/v1/evaluation" authzen "$CLIENTS"
  done
  echo "gateway RSS $(awk '/VmRSS/ {print $2, $3}' "/proc/$(cat "$work/gw.pid")/status")"
  kill "$(cat "$work/gw.pid")"
  wait "$(cat "$work/gw.pid")" 2>/dev/null || true
done
