# Shared by scripts/bench-gateways.sh and scripts/soak-serve.sh (sourced, not run): build
# `conductor` and the `gateways` example for $PROFILE, start the example's zero-work upstream
# and `conductor serve` in front of it (every call decided and committed to the audit
# database), each its own process on 127.0.0.1, stopped on exit. Sets: bin, work, pids, up
# (the upstream's URL), gw (serve's address), gwpid. $NAME prefixes the error messages.
flag=(); [ "$PROFILE" = release ] && flag=(--release)
cargo build "${flag[@]}" -q -p conductor-cli --bin conductor
cargo build "${flag[@]}" -q -p conductor-serve --example gateways
bin="$PWD/target/$PROFILE"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
for v in HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy; do unset "$v"; done

"$bin/examples/gateways" upstream >"$work/up.out" &
pids+=($!)
for _ in $(seq 100); do grep -q '^UPSTREAM ' "$work/up.out" 2>/dev/null && break; sleep 0.1; done
up="$(sed -n 's/^UPSTREAM //p' "$work/up.out")"
[ -n "$up" ] || { echo "$NAME: the upstream did not start" >&2; exit 1; }

# The same policy and gateway file as examples/bench.rs.
cat >"$work/policy.yaml" <<'YAML'
version: 1
agents:
  bench: {roles: [r]}
roles:
  r:
    allow:
      - tools: ["up.*"]
        actions: [read]
tools:
  up.noop: {action: read, destinations: []}
YAML
cat >"$work/gateway.yaml" <<YAML
version: 1
listen: "127.0.0.1:0"
servers:
  up: {url: "$up"}
auth: {none: {agent: bench}}
limits: {max_sessions: 100000}
YAML
(cd "$work" && exec "$bin/conductor" serve --policy policy.yaml --config gateway.yaml \
  --audit audit.db --print-address >"$work/gw.out" 2>"$work/gw.err") &
gwpid=$!
pids+=("$gwpid")
for _ in $(seq 200); do [ -s "$work/gw.out" ] && break; sleep 0.1; done
gw="$(head -1 "$work/gw.out")"
[ -n "$gw" ] || { echo "$NAME: serve did not start" >&2; cat "$work/gw.err" >&2; exit 1; }
