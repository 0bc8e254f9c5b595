#!/usr/bin/env python3
# Per-download timeline of the sandbox bench from `perf trace` output (see
# crates/sandbox/BENCHMARKS.md, "Where the first byte's +1.2 ms goes"):
#   python3 scripts/proxy-phases.py pt.txt
# Tied to this harness: it tells proxied from direct downloads by the request size (curl
# 7.88: 133 bytes to the proxy, 99 bytes forwarded upstream, 79 direct).
import re, sys, statistics as st
# perf trace lines: "  914.448 ( 0.160 ms): curl/14655 connect(...) = ..."
pat = re.compile(r'^\s*([\d.]+|\?) \(\s*([\d.]*)\s*(?:ms)?\): (\S+)/(\d+) (.*)$')
ev = []
for line in open(sys.argv[1]):
    m = pat.match(line)
    if not m or m.group(1) == '?': continue
    t0 = float(m.group(1)); dur = float(m.group(2)) if m.group(2) else None
    comm, tid, rest = m.group(3), int(m.group(4)), m.group(5)
    if rest.endswith('...'): continue   # start of an unfinished call; the continued line has it
    cont = '[continued]' in rest
    name = re.search(r'(\w+)\(', rest.replace('... [continued]: ', ''))
    name = name.group(1) if name else '?'
    ret = rest.rsplit('=', 1)[-1].strip() if '=' in rest else ''
    end = t0 + (dur or 0)
    ev.append((end, t0, comm, tid, name, rest, ret))
ev.sort()
# group by curl process: each curl pid does one download
curls = {}
for e in ev:
    if e[2] == 'curl': curls.setdefault(e[3], []).append(e)
def first(lst, pred):
    for e in lst:
        if pred(e): return e
res = {'direct': [], 'proxied': []}
for pid, lst in curls.items():
    c = first(lst, lambda e: e[4]=='connect' and 'EINPROGRESS' in e[5])
    s = first(lst, lambda e: e[4]=='sendto')
    r = first(lst, lambda e: e[4]=='recvfrom' and e[0] > (s[0] if s else 0))
    if not (c and s and r): continue
    size = int(re.search(r'len: (\d+)', s[5]).group(1))
    kind = 'proxied' if size > 100 else 'direct'
    # other threads' events between curl connect start and curl first byte
    win = [e for e in ev if c[1] <= e[0] <= r[0] and e[2] != 'curl']
    d = {'connect->send': s[1]-c[0], 'send->firstbyte': r[0]-s[1], 'connect->firstbyte': r[0]-c[1]}
    if kind == 'proxied':
        px = [e for e in win if e[2].startswith('conductor-pro')]
        req = first(px, lambda e: e[4]=='recvfrom' and e[6]=='133')
        sock = first(px, lambda e: e[4]=='socket')
        up = first(px, lambda e: e[4]=='sendto' and 'len: 99' in e[5])
        ans = first(px, lambda e: e[4]=='recvfrom' and req and e[0]>req[0] and e[6] not in ('133',) and 'EAGAIN' not in e[6])
        out = first(px, lambda e: e[4]=='sendto' and up and e[0]>up[0])
        acc = first(px, lambda e: e[4]=='accept4' and 'EAGAIN' not in e[6])
        nwait = len([e for e in px if e[4]=='epoll_wait'])
        if req and sock and up and ans and out:
            d.update({'curl send->proxy has request': req[0]-s[1], 'request->decided+committed(socket)': sock[1]-req[0],
                      'socket->upstream send': up[0]-sock[1], 'upstream send->answer read': ans[0]-up[0],
                      'answer read->sent to curl': out[0]-ans[0], 'sent to curl->curl first byte': r[0]-out[0],
                      'proxy epoll_waits': nwait, 'proxy syscalls': len(px)})
    else:
        sv = [e for e in win if e[2] not in ('curl',)]
        srecv = first(sv, lambda e: e[4]=='recvfrom')
        ssend = first(sv, lambda e: e[4]=='sendto')
        if srecv and ssend:
            d.update({'curl send->server has request': srecv[0]-s[1], 'server recv->first send': ssend[1]-srecv[0], 'server send->curl first byte': r[0]-ssend[0]})
    res[kind].append(d)
for kind, rows in res.items():
    print(f'== {kind}: {len(rows)} downloads; median ms (p10, p90)')
    keys = []
    for r in rows:
        for k in r:
            if k not in keys: keys.append(k)
    for k in keys:
        v = sorted(r[k] for r in rows if k in r)
        if not v: continue
        q = lambda p: v[round((len(v)-1)*p)]
        print(f'  {k:40s} {st.median(v):8.3f} ({q(.1):.3f}, {q(.9):.3f})  n={len(v)}')
