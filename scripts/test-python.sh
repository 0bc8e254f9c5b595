#!/usr/bin/env bash
# The Python library's tests (crates/python + python/conductor): builds the wheel with
# maturin, installs it into a fresh-or-current venv under .peers/pyvenv (ignored by git)
# with the real adapter packages from PyPI, and runs pytest (python/tests). The
# conductor binary the parity tests compare with is the workspace's debug build.
#
# Prints one cargo-style `test result:` line, so scripts/test.sh counts these tests in
# its total. Exit status: pytest's.
# Environment: PYTHON (default python3), PYVENV_DIR (default <repo>/.peers/pyvenv),
# PYVENV_FORCE=1 to recreate the venv.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- pins (bump deliberately; look up with `pip index versions <pkg>`) ---
PIP_PINS=(
  "maturin==1.16.0"
  "pytest==9.2.0"
  "langchain-core==1.8.3"
  "openai-agents==0.24.0"
)

PYTHON="${PYTHON:-python3}"
VENV="${PYVENV_DIR:-$PWD/.peers/pyvenv}"
STAMP="$VENV/conductor-stamp"
say() { printf 'test-python: %s\n' "$*" >&2; }

want="$(printf '%s\n' "python=$("$PYTHON" --version 2>&1)" "${PIP_PINS[@]}")"
if [ "${PYVENV_FORCE:-0}" = 1 ] || [ ! -x "$VENV/bin/python" ] || [ ! -f "$STAMP" ] \
   || [ "$(cat "$STAMP")" != "$want" ]; then
  say "creating $VENV with ${PIP_PINS[*]}"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PIP_PINS[@]}"
  printf '%s\n' "$want" > "$STAMP"
fi

# The wheel: a debug build (the dev profile shares the dependencies `cargo test` built;
# a release build of the whole tree took most of the CI budget), cached in target/.
# Benchmarks build their own release wheel (crates/python/BENCHMARKS.md).
say "building the wheel (maturin build)"
rm -rf target/wheels/conductor_gate-*.whl
"$VENV/bin/maturin" build --quiet \
  -i "$VENV/bin/python" --out target/wheels >&2
wheel="$(ls target/wheels/conductor_gate-*.whl | head -n1)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall "$wheel"

# The CLI the parity tests compare with (already built by `cargo test --workspace`),
# unless CONDUCTOR_BIN names one.
if [ -z "${CONDUCTOR_BIN:-}" ]; then
  cargo build -q -p conductor-cli --bin conductor
  export CONDUCTOR_BIN="$PWD/target/debug/conductor"
fi

# Run from a directory where `import conductor` can only mean the installed wheel.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
(cd python/tests && "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@") 2>&1 | tee "$log" || status=$?
# pytest's last line: "N passed, M failed, K skipped in Xs" (any order, some missing).
summary="$(grep -E '(passed|failed|error|skipped)' "$log" | tail -n1)"
count() { printf '%s\n' "$summary" | grep -oE "[0-9]+ $1" | grep -oE '^[0-9]+' || echo 0; }
passed="$(count passed)"; failed="$(( $(count failed) + $(count error) ))"; skipped="$(count skipped)"
[ "$status" = 0 ] || [ "$failed" -gt 0 ] || failed=1
echo "test result: $([ "$status" = 0 ] && echo ok || echo FAILED). $passed passed; $failed failed; $skipped ignored (python: pytest python/tests)"
exit "$status"
