"""Drive one `conductor wrap` session for a fixed number of `tools/call`s (used by
scripts/wrap-cpu.sh): initialize, tools/list, then N calls, pipelined (a writer thread) or
sequential. Every answer must be an allowed echo. Standard library only.

    python3 scripts/lib/wrap_drive.py CONDUCTOR N POLICY ECHO_SERVER [PREFIX...]

PREFIX (e.g. `perf stat -e task-clock -x, -o FILE`) is put before the conductor command.
MODE=seq in the environment makes the calls sequential.
"""
import json
import os
import subprocess
import sys
import tempfile
import threading

conductor, n, policy, server = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
prefix = sys.argv[5:]
work = tempfile.mkdtemp(prefix="wrap-drive-")
cmd = prefix + [
    conductor, "wrap", "--policy", policy, "--agent", "bench-bot", "--server", "echo",
    "--no-dns", "--audit", os.path.join(work, "audit.db"), "--", server, "--work-us", "0",
]
env = dict(os.environ, XDG_DATA_HOME=os.path.join(work, "data"))
p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)


def send(o):
    p.stdin.write((json.dumps(o) + "\n").encode())
    p.stdin.flush()


send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "wrap-drive", "version": "1"}}})
p.stdout.readline()
p.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
send({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}})
p.stdout.readline()
text = "summarise the latest quarterly report for the team meeting"


def line(i):
    return (json.dumps({"jsonrpc": "2.0", "id": i + 2, "method": "tools/call", "params": {
        "name": "echo", "arguments": {"text": text}}}) + "\n").encode()


def check(answer):
    if b'"isError":false' not in answer:
        sys.exit(f"not an allowed echo: {answer[:200]!r}")


if os.environ.get("MODE", "pipe") == "pipe":
    def writer():
        for i in range(n):
            p.stdin.write(line(i))
        p.stdin.flush()
    t = threading.Thread(target=writer)
    t.start()
    for _ in range(n):
        check(p.stdout.readline())
    t.join()
else:
    for i in range(n):
        p.stdin.write(line(i))
        p.stdin.flush()
        check(p.stdout.readline())
p.stdin.close()
p.wait()
