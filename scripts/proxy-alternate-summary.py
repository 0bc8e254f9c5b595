#!/usr/bin/env python3
# Medians per label of scripts/proxy-alternate.sh output.
import re,statistics as st,sys
rows=[l.split() for l in open(sys.argv[1])]
labs=[]
for r in rows:
    if r[1] not in labs: labs.append(r[1])
def val(r,k):
    x=[x for x in r if x.startswith(k+'=')][0].split('=')[1]
    return x
for lab in labs:
    R=[r for r in rows if r[1]==lab]
    f=lambda k,i=0: st.median(float(val(r,k).split('/')[i].rstrip('%')) for r in R)
    print(f"{lab:8s} n={len(R)} whole {f('whole'):.0f}% direct {f('direct'):.2f} proxied {f('proxied'):.2f} fb+ {f('fb+'):.2f} transfer {f('transfer'):.0f}% cpu {f('cpu/wait/sleeps'):.0f} wait {f('cpu/wait/sleeps',1):.0f} sleeps {f('cpu/wait/sleeps',2):.2f} cold {f('cold'):.0f} startup+ {f('startup+'):.2f} load {f('load'):.2f} proxied-p90 {f('xp90'):.2f}")
