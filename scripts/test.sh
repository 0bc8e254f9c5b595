#!/usr/bin/env bash
# Runs every test of the project on a fresh machine (Rust toolchain, Python 3.11 + pip,
# Node 20 + npm): installs the real MCP peers the interop tests talk to into local,
# ignored folders (.peers/), then runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-peers.sh
cargo test --workspace
