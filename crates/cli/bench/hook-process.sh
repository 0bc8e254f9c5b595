#!/usr/bin/env bash
# Whole-process time per `conductor hook claude-code` call, as Claude Code runs it (one
# process per tool call): process start, policy load, audit + session store open,
# decision, audit commit, answer. Baseline from the same run: `/bin/true` (the loop's
# own cost), `conductor --version` (process start only) and `conductor policy validate`
# (start + policy load). The `--resident` rows hand each call to the resident gate the
# first call starts (its socket in a temporary XDG_RUNTIME_DIR; stopped at the end).
# Usage: bash crates/cli/bench/hook-process.sh [N]   (needs a release build;
# CONDUCTOR_BIN=PATH times another binary, e.g. a copy built before a change)
set -euo pipefail
cd "$(dirname "$0")/../../.."
n="${1:-200}"
bin="${CONDUCTOR_BIN:-target/release/conductor}"
export CONDUCTOR_FINGERPRINT_KEY_FILE=crates/cli/tests/fixtures/fingerprint.key
dir="$(mktemp -d)"
export XDG_RUNTIME_DIR="$dir/run"
mkdir -m 700 "$XDG_RUNTIME_DIR"
stop_resident() {
  for lock in "$XDG_RUNTIME_DIR"/conductor-hook/*.lock; do
    [ -e "$lock" ] && kill "$(cat "$lock")" 2>/dev/null || true
  done
}
trap 'stop_resident; rm -rf "$dir"' EXIT
policy=examples/claude-code-policy.yaml
hook=(hook claude-code --policy "$policy" --agent claude-code --audit "$dir/audit.db" --no-dns
      --resolve docs.rs=18.154.227.66)
pre="$(sed s/SESSION/bench/ crates/cli/tests/fixtures/hook/pre-webfetch-docs.json)"
bash_pre="$(sed s/SESSION/bench/ crates/cli/tests/fixtures/hook/pre-bash-metadata.json)"
post="$(sed s/SESSION/bench/ crates/cli/tests/fixtures/hook/post-read-plain.json)"
"$bin" "${hook[@]}" <<<"$pre" >/dev/null   # create the store
per_call() { # label, then the command (stdin from $input)
  local label="$1"; shift
  local start end
  start=$(date +%s%N)
  for _ in $(seq "$n"); do "$@" <<<"$input" >/dev/null; done
  end=$(date +%s%N)
  awk -v l="$label" -v t=$((end - start)) -v n="$n" 'BEGIN { printf "%-42s %7.2f ms/call\n", l, t / n / 1e6 }'
}
input=""
per_call "baseline: /bin/true" /bin/true
per_call "baseline: conductor --version" "$bin" --version
per_call "baseline: policy validate" "$bin" policy validate "$policy"
input="$pre";      per_call "hook PreToolUse WebFetch (allow)" "$bin" "${hook[@]}"
input="$bash_pre"; per_call "hook PreToolUse Bash metadata curl (deny)" "$bin" "${hook[@]}"
input="$post";     per_call "hook PostToolUse Read (label)" "$bin" "${hook[@]}"
resident=("${hook[@]}" --resident)
"$bin" "${resident[@]}" <<<"$pre" >/dev/null   # starts the resident gate
for _ in $(seq 50); do [ -S "$XDG_RUNTIME_DIR"/conductor-hook/*.sock ] && break; sleep 0.1; done
input="$pre";      per_call "hook --resident PreToolUse WebFetch (allow)" "$bin" "${resident[@]}"
input="$bash_pre"; per_call "hook --resident PreToolUse Bash curl (deny)" "$bin" "${resident[@]}"
input="$post";     per_call "hook --resident PostToolUse Read (label)" "$bin" "${resident[@]}"
