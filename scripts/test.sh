#!/usr/bin/env bash
# Runs every test of the project on a fresh machine (Rust toolchain, Python 3.11 + pip,
# Node 20 + npm): installs the real MCP peers the interop tests talk to into local,
# ignored folders (.peers/), then runs the whole test suite and prints one total line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-peers.sh
bash scripts/setup-debian.sh
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
# The Python library (wheel + venv + pytest): prints a cargo-style `test result:` line.
bash scripts/test-python.sh 2>&1 | tee -a "$log" || status=$?
# One closing line for the whole suite (cargo prints one `test result:` line per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1); if ($(i) ~ /^ignored;?$/) s += $(i-1) } }
     END { printf "conductor: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
