#!/usr/bin/env bash
# CPU time per call of the `conductor wrap` process (user+sys, `perf stat -e task-clock`):
# one session of N2 calls minus one of N1, divided by N2-N1, so start-up cancels out. Less
# sensitive to the machine's load than wall-clock latency. The bench policy and the
# zero-work echo server are those of crates/mcp/examples/bench_client.rs.
#
#   scripts/wrap-cpu.sh [CONDUCTOR...]      (default: target/release/conductor)
#   MODE=seq scripts/wrap-cpu.sh …          (sequential calls instead of pipelined)
#   N1=2000 N2=12000 ROUNDS=1
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-2000}
N2=${N2:-12000}
ROUNDS=${ROUNDS:-1}
bins=("${@:-target/release/conductor}")
server=target/release/examples/bench_echo_server
[ -x "$server" ] || cargo build --release -p conductor-mcp --example bench_echo_server
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/policy.yaml" <<'PY'
import re, sys
src = open("crates/mcp/examples/bench_client.rs").read()
open(sys.argv[1], "w").write(re.search(r'const POLICY: &str = r#"(.*?)"#;', src, re.S).group(1))
PY
cpu() { # BIN N -> task-clock ms
  python3 scripts/lib/wrap_drive.py "$1" "$2" "$work/policy.yaml" "$server" \
    perf stat -e task-clock -x, -o "$work/stat" >/dev/null
  grep task-clock "$work/stat" | cut -d, -f1
}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) ($(date -u +%H:%M:%S) UTC), mode ${MODE:-pipe}"
for r in $(seq 1 "$ROUNDS"); do
  for b in "${bins[@]}"; do
    a=$(cpu "$b" "$N1"); z=$(cpu "$b" "$N2")
    python3 -c "import sys; a,z,n1,n2=map(float,sys.argv[1:5]); print(f'round $r  $b  {(z-a)*1000/(n2-n1):.1f} µs CPU per call')" "$a" "$z" "$N1" "$N2"
  done
done
