#!/usr/bin/env bash
# Whole-process time per `conductor hook claude-code` call, as Claude Code runs it (one
# process per tool call): process start, policy load, audit + session store open,
# decision, audit commit, answer. Baseline from the same run: `conductor --version`
# (process start only) and `conductor policy validate` (start + policy load).
# Usage: bash crates/cli/bench/hook-process.sh [N]   (needs a release build;
# CONDUCTOR_BIN=PATH times another binary, e.g. a copy built before a change)
set -euo pipefail
cd "$(dirname "$0")/../../.."
n="${1:-200}"
bin="${CONDUCTOR_BIN:-target/release/conductor}"
export CONDUCTOR_FINGERPRINT_KEY_FILE=crates/cli/tests/fixtures/fingerprint.key
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
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
per_call "baseline: conductor --version" "$bin" --version
per_call "baseline: policy validate" "$bin" policy validate "$policy"
input="$pre";      per_call "hook PreToolUse WebFetch (allow)" "$bin" "${hook[@]}"
input="$bash_pre"; per_call "hook PreToolUse Bash metadata curl (deny)" "$bin" "${hook[@]}"
input="$post";     per_call "hook PostToolUse Read (label)" "$bin" "${hook[@]}"
