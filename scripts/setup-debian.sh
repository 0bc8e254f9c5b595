#!/usr/bin/env bash
# Installs the Debian packages some tests need, when they are missing (as root with
# apt-get; elsewhere it says what to install and the tests that need them skip loudly,
# or fail under CI):
#   golang-go — the Go reader of the member-smuggling test (crates/cli/tests/it/wrap_go.rs).
#   chromium — the web console's browser test (crates/console/tests/it/chromium.rs), driven
#              over the DevTools protocol; the system browser, nothing downloaded.
#   wrk — the load generator of `serve`'s benchmark (crates/serve/bench/wrk.sh), a separate
#         lean process so that the generator does not take the gateway's cores.
set -euo pipefail
want=()
command -v go >/dev/null 2>&1 || [ -x /usr/lib/go/bin/go ] || want+=(golang-go)
[ -x /usr/bin/chromium ] || want+=(chromium)
command -v wrk >/dev/null 2>&1 || want+=(wrk)
[ ${#want[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  printf 'setup-debian: installing %s\n' "${want[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
else
  printf 'setup-debian: missing %s (install them with apt-get as root)\n' "${want[*]}" >&2
fi
