#!/usr/bin/env bash
# Build the release binaries and run both `conductor wrap` harnesses: the Rust one
# (crates/mcp/examples/bench_client.rs + bench_echo_server.rs) and the Python one
# (crates/mcp/examples/bench_client.py + bench_echo_server.py, standard library only,
# the machine's python3). Each alternates direct and wrapped runs in one session.
#
#   scripts/bench-wrap.sh [--compare PATH] [--rounds N] [--calls N] [--pipeline N]
#
# --compare PATH adds a third mode (`wrap-b`) through another conductor binary, e.g. a
# copy of target/release/conductor built before a change, so that before/after come
# from the same run. The load average is printed before and after each harness: the
# machine is shared, report it with every figure.
set -euo pipefail
cd "$(dirname "$0")/.."

compare=()
rounds=6
calls=2000
pipeline=5000
while [ $# -gt 0 ]; do
  case "$1" in
    --compare) compare=(--compare "$2"); shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --calls) calls="$2"; shift 2 ;;
    --pipeline) pipeline="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 64 ;;
  esac
done

cargo build --release -p conductor-cli --bin conductor
cargo build --release -p conductor-mcp --example bench_echo_server --example bench_client

load() { echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) ($(date -u +%H:%M:%S) UTC)"; }

echo "== Rust client, Rust echo server"
load
target/release/examples/bench_client --rounds "$rounds" --calls "$calls" --pipeline "$pipeline" "${compare[@]}"
load
echo
echo "== Python client, Python echo server ($(python3 --version))"
load
python3 crates/mcp/examples/bench_client.py --rounds "$rounds" --calls "$calls" --pipeline "$pipeline" "${compare[@]}"
load
