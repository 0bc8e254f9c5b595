#!/usr/bin/env bash
# Installs the real MCP peers used by interop tests into .peers/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .peers
