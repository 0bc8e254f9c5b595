#!/bin/bash
# Alternate sandbox bench binaries (crates/sandbox/BENCHMARKS.md, 2026-12-03): one line per run.
#   RUNS=20 scripts/proxy-alternate.sh 10 "base:/path/to/old-bench" "head:target/release/deps/sandbox-<hash>" > runs.txt
#   python3 scripts/proxy-alternate-summary.py runs.txt   # medians per label
# PRE="nice -n -20" prefixes each run; ENV=VALUE pairs after a second colon are set for that label.
# usage: alt.sh REPS "label:binary:ENV=.. ENV=.." ...
reps=$1; shift
for r in $(seq $reps); do
  for cfg in "$@"; do
    label=${cfg%%:*}; rest=${cfg#*:}; bin=${rest%%:*}; envs=${rest#*:}
    [ "$envs" = "$rest" ] && envs=""
    la=$(cut -d' ' -f1 /proc/loadavg)
    out=$($PRE env SANDBOX_BENCH_RUNS=${RUNS:-20} $envs $bin 2>&1)
    ratio=$(echo "$out" | grep -o 'proxy/direct throughput [0-9]*%' | grep -o '[0-9]*%')
    dm=$(echo "$out" | grep -o 'direct median [0-9.]* (p10 [0-9.]*, p90 [0-9.]*) = ' | tail -1 | awk '{print $3}')
    xm=$(echo "$out" | grep -o 'through the proxy median [0-9.]* (p10' | tail -1 | awk '{print $5}')
    fb=$(echo "$out" | grep -o 'added [0-9.-]*$' | head -1 | awk '{print $2}')
    tr=$(echo "$out" | grep -o 'proxy/direct [0-9]*%$' | awk '{print $2}')
    cpu=$(echo "$out" | grep -o 'CPU [0-9.]* us, waiting for a CPU [0-9.]* us, sleeps (voluntary switches) [0-9.]*' | awk '{print $2"/"$8"/"$13}')
    cold=$(echo "$out" | grep 'slept 5 ms' | grep -o 'median [0-9.]*' | awk '{print $2}')
    st=$(echo "$out" | grep -o 'added median [0-9.]*$' | awk '{print $3}')
    xp90=$(echo "$out" | grep '1 MiB download' | grep -o 'through the proxy median [0-9.]* (p10 [0-9.]*, p90 [0-9.]*' | awk '{print $9}')
    echo "$r $label load=$la whole=$ratio direct=$dm proxied=$xm fb+=$fb transfer=$tr cpu/wait/sleeps=$cpu cold=$cold startup+=$st xp90=$xp90"
  done
done
