#!/usr/bin/env bash
# Instructions per call of `Gate.decide` above `Service::decide_blocking` (see
# callgrind_decide.py): runs each mode under callgrind and prints, per case,
# Ir per service call and Ir the library adds per call. Needs the wheel installed in
# PYTHON's environment (default: python3) and valgrind.
# Usage: PYTHON=.../bin/python bash python/bench/callgrind_decide.sh [N] [CASE...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-python3}"
n="${1:-1000}"; shift || true
cases=("$@"); [ ${#cases[@]} -gt 0 ] || cases=(allow_search deny_metadata allow_fetch_resolved)
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
ir() {  # total instructions of one run
  valgrind --tool=callgrind --callgrind-out-file="$out/$1.$2.out" \
    "$PYTHON" "$here/callgrind_decide.py" "$1" "$n" "$2" >/dev/null 2>"$out/$1.$2.err" \
    || { cat "$out/$1.$2.err" >&2; exit 1; }
  grep -E '^(summary|totals):' "$out/$1.$2.out" | head -n1 | awk '{print $2}'
}
printf '%-22s %14s %14s   (N=%s, Ir per call)\n' case service library "$n"
for c in "${cases[@]}"; do
  none="$(ir none "$c")"; rust="$(ir rust "$c")"; gate="$(ir gate "$c")"
  printf '%-22s %14d %14d\n' "$c" $(( (rust - none) / n )) $(( (gate - rust) / n ))
  if [ -n "${KEEP:-}" ]; then cp "$out/gate.$c.out" "$out/rust.$c.out" "$KEEP/"; fi
done
