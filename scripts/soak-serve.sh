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
NAME=soak
# shellcheck source=scripts/lib/serve-bench.sh
source scripts/lib/serve-bench.sh
echo "soak: serve (pid $gwpid, $PROFILE) on $gw, upstream $up, $RATE calls/s for $SECS s"
"$bin/examples/gateways" soak "http://$gw/mcp/up" noop "$gwpid" "$RATE" "$SECS"
echo "soak: audit database $(du -k "$work/audit.db" | cut -f1) KiB at the end"
