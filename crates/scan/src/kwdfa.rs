//! The keyword prefilter: an Aho-Corasick automaton over every rule keyword (ASCII
//! case-insensitive, every occurrence reported, overlapping ones too), compiled to a
//! dense DFA over byte classes.
//!
//! A DFA walk is bound by the latency of one table look-up per byte (each step needs
//! the previous state). Long texts are therefore cut into four segments that are
//! walked in lock-step, so that four independent chains of look-ups overlap; each
//! segment starts `maxlen - 1` bytes early so that a keyword crossing a cut is still
//! seen, and reports only matches that end inside it.

/// A compiled keyword set.
#[derive(Debug, Clone)]
pub(crate) struct KwDfa {
    class: [u8; 256],
    stride: usize,
    /// `trans[state + class]` is the next state; states are premultiplied by `stride`.
    /// A full 64 Ki table, so that a 16-bit index needs no bounds check.
    trans: Box<[u16; 65536]>,
    /// Premultiplied states at or above this one have outputs.
    first_match: usize,
    /// For match state `m = (state - first_match) / stride`: `outs[out_at[m]..out_at[m + 1]]`.
    out_at: Vec<u32>,
    outs: Vec<u32>,
    lens: Vec<usize>,
    maxlen: usize,
}

/// Too many states for 16-bit premultiplied ids.
#[derive(Debug)]
pub(crate) struct TooLarge;

impl KwDfa {
    /// Compile `keywords` (lowercase, non-empty).
    pub(crate) fn new(keywords: &[String]) -> Result<KwDfa, TooLarge> {
        // Byte classes: one per distinct (lowercased) keyword byte, 0 for the rest.
        let mut class = [0u8; 256];
        let mut nclass = 1usize;
        for k in keywords {
            for &b in k.as_bytes() {
                let l = b.to_ascii_lowercase();
                if class.get(usize::from(l)).copied() == Some(0) {
                    if nclass > 255 {
                        return Err(TooLarge);
                    }
                    let c = nclass as u8;
                    nclass += 1;
                    if let Some(x) = class.get_mut(usize::from(l)) {
                        *x = c;
                    }
                    if let Some(x) = class.get_mut(usize::from(l.to_ascii_uppercase())) {
                        *x = c;
                    }
                }
            }
        }
        // Trie, as one flat table `next[state * nclass + class]` (one allocation, not
        // one per state: building runs in every process that loads a policy, and the
        // Claude Code hook is a process per tool call).
        const NONE: u32 = u32::MAX;
        let mut next: Vec<u32> = vec![NONE; nclass];
        let mut out: Vec<Vec<u32>> = vec![Vec::new()];
        for (pid, k) in keywords.iter().enumerate() {
            let mut s = 0usize;
            for &b in k.as_bytes() {
                let c = usize::from(class.get(usize::from(b)).copied().unwrap_or(0));
                let at = s * nclass + c;
                let cur = next.get(at).copied().unwrap_or(NONE);
                s = if cur == NONE {
                    let id = out.len();
                    next.resize(next.len() + nclass, NONE);
                    out.push(Vec::new());
                    if let Some(x) = next.get_mut(at) {
                        *x = id as u32;
                    }
                    id
                } else {
                    cur as usize
                };
            }
            if let Some(o) = out.get_mut(s) {
                o.push(pid as u32);
            }
        }
        // Failure links (breadth first) and the full transition function, flat too.
        let n = out.len();
        if n * nclass > usize::from(u16::MAX) {
            return Err(TooLarge);
        }
        let mut fail = vec![0u32; n];
        let mut dfa = vec![0u32; n * nclass];
        let mut queue = std::collections::VecDeque::new();
        // Breadth-first order of the states (the root first), for the numbering below.
        let mut bfs: Vec<usize> = vec![0];
        for c in 0..nclass {
            let child = next.get(c).copied().unwrap_or(NONE);
            if child != NONE {
                if let Some(x) = dfa.get_mut(c) {
                    *x = child;
                }
                queue.push_back(child as usize);
            }
        }
        while let Some(s) = queue.pop_front() {
            bfs.push(s);
            let f = fail.get(s).copied().unwrap_or(0) as usize;
            if f != s && out.get(f).is_some_and(|o| !o.is_empty()) {
                let inherited = std::mem::take(out.get_mut(f).ok_or(TooLarge)?);
                if let Some(o) = out.get_mut(s) {
                    for &p in &inherited {
                        if !o.contains(&p) {
                            o.push(p);
                        }
                    }
                }
                if let Some(o) = out.get_mut(f) {
                    *o = inherited;
                }
            }
            // Row by row, without an index check per cell: `f` is shallower than `s`,
            // so its row is final; copied out first (rows of one table).
            let mut frow = [0u32; 256];
            if let (Some(dst), Some(src)) = (
                frow.get_mut(..nclass),
                dfa.get(f * nclass..(f + 1) * nclass),
            ) {
                dst.copy_from_slice(src);
            }
            let (Some(nrow), Some(srow)) = (
                next.get(s * nclass..(s + 1) * nclass),
                dfa.get_mut(s * nclass..(s + 1) * nclass),
            ) else {
                return Err(TooLarge);
            };
            for ((&child, &via_fail), cell) in nrow.iter().zip(frow.iter()).zip(srow.iter_mut()) {
                if child == NONE {
                    *cell = via_fail;
                } else {
                    *cell = child;
                    if let Some(x) = fail.get_mut(child as usize) {
                        *x = via_fail;
                    }
                    queue.push_back(child as usize);
                }
            }
        }
        // Renumber: states without outputs first (the root stays 0), match states last,
        // each group in breadth-first order: the states a text sits in most of the time
        // (shallow ones) get the smallest ids, which keeps the OR of four streams' states
        // below `first_match` (the lock-step's cheap "no match" test) most of the time.
        let mut order: Vec<usize> = bfs
            .iter()
            .copied()
            .filter(|&s| out.get(s).is_some_and(Vec::is_empty))
            .collect();
        let first_plain = order.len();
        order.extend(
            bfs.iter()
                .copied()
                .filter(|&s| out.get(s).is_some_and(|o| !o.is_empty())),
        );
        if order.len() != n {
            // Unreachable: every state is reached from the root.
            return Err(TooLarge);
        }
        let mut new_id = vec![0usize; n];
        for (i, &s) in order.iter().enumerate() {
            if let Some(x) = new_id.get_mut(s) {
                *x = i;
            }
        }
        let mut trans: Box<[u16; 65536]> = vec![0u16; 65536]
            .into_boxed_slice()
            .try_into()
            .map_err(|_| TooLarge)?;
        let mut out_at = vec![0u32];
        let mut outs = Vec::new();
        for (i, &s) in order.iter().enumerate() {
            let (Some(row), Some(cells)) = (
                dfa.get(s * nclass..(s + 1) * nclass),
                trans.get_mut(i * nclass..(i + 1) * nclass),
            ) else {
                return Err(TooLarge);
            };
            for (&to, cell) in row.iter().zip(cells.iter_mut()) {
                let pre = new_id.get(to as usize).copied().unwrap_or(0) * nclass;
                *cell = pre as u16;
            }
            if i >= first_plain {
                outs.extend(out.get(s).cloned().unwrap_or_default());
                out_at.push(outs.len() as u32);
            }
        }
        Ok(KwDfa {
            class,
            stride: nclass,
            trans,
            first_match: first_plain * nclass,
            out_at,
            outs,
            lens: keywords.iter().map(String::len).collect(),
            maxlen: keywords.iter().map(String::len).max().unwrap_or(1),
        })
    }

    /// Every keyword occurrence in `t`, as `(keyword index, start, end)`, ordered by end.
    pub(crate) fn find_all(&self, t: &[u8], hits: &mut Vec<(usize, usize, usize)>) {
        let n = t.len();
        if n < 64 || n < 2 * self.maxlen {
            // Short strings (most keys and values of a JSON document): one stream,
            // matches reported as they end (the order the buffered path gives).
            let mut s = 0usize;
            for (i, &b) in t.iter().enumerate() {
                s = self.step(s, b);
                if s >= self.first_match {
                    self.report(s, i + 1, hits);
                }
            }
            return;
        }
        let mut ends: Vec<(usize, usize)> = Vec::new();
        self.walk4(t, &mut ends);
        for (state, end) in ends {
            self.report(state, end, hits);
        }
    }

    /// The keywords that match state `state` (a match state) ending at `end`.
    fn report(&self, state: usize, end: usize, hits: &mut Vec<(usize, usize, usize)>) {
        let m = (state - self.first_match) / self.stride;
        let (a, b) = (
            self.out_at.get(m).copied().unwrap_or(0) as usize,
            self.out_at.get(m + 1).copied().unwrap_or(0) as usize,
        );
        for &p in self.outs.get(a..b).unwrap_or(&[]) {
            let p = p as usize;
            let len = self.lens.get(p).copied().unwrap_or(0);
            hits.push((p, end - len, end));
        }
    }

    #[inline(always)]
    #[expect(
        clippy::indexing_slicing,
        reason = "a u16 index into a 65536-entry table is always in bounds"
    )]
    fn step(&self, s: usize, b: u8) -> usize {
        let c = usize::from(self.class.get(usize::from(b)).copied().unwrap_or(0));
        usize::from(self.trans[usize::from((s + c) as u16)])
    }

    /// The lock-step over whole 8-byte blocks of the four streams (blocks of equal
    /// count): one index for all of them, constant offsets within a block, and the
    /// tables in registers. Returns the four states after the last block.
    #[expect(
        clippy::indexing_slicing,
        reason = "`j < n` and every stream has `n` blocks (sliced to `n` first); block offsets are constants below 8; a u16 index into a 65536-entry table"
    )]
    fn lockstep(
        &self,
        blocks: [&[[u8; 8]]; 4],
        found: &mut [Vec<(usize, usize)>; 4],
        begins: [usize; 4],
        reports: [usize; 4],
    ) -> [usize; 4] {
        let n = blocks.iter().map(|b| b.len()).min().unwrap_or(0);
        let (c0, c1, c2, c3) = (
            &blocks[0][..n],
            &blocks[1][..n],
            &blocks[2][..n],
            &blocks[3][..n],
        );
        let class = &self.class;
        let trans: &[u16; 65536] = &self.trans;
        let fm = self.first_match;
        let (mut s0, mut s1, mut s2, mut s3) = (0usize, 0usize, 0usize, 0usize);
        for j in 0..n {
            let (a0, a1, a2, a3) = (&c0[j], &c1[j], &c2[j], &c3[j]);
            macro_rules! step {
                ($k:literal) => {
                    s0 = usize::from(
                        trans[usize::from((s0 + usize::from(class[usize::from(a0[$k])])) as u16)],
                    );
                    s1 = usize::from(
                        trans[usize::from((s1 + usize::from(class[usize::from(a1[$k])])) as u16)],
                    );
                    s2 = usize::from(
                        trans[usize::from((s2 + usize::from(class[usize::from(a2[$k])])) as u16)],
                    );
                    s3 = usize::from(
                        trans[usize::from((s3 + usize::from(class[usize::from(a3[$k])])) as u16)],
                    );
                    // The OR of the states is at least their maximum: below `fm`, no
                    // stream is in a match state.
                    if (s0 | s1 | s2 | s3) >= fm {
                        record4(found, [s0, s1, s2, s3], fm, begins, reports, j * 8 + $k);
                    }
                };
            }
            step!(0);
            step!(1);
            step!(2);
            step!(3);
            step!(4);
            step!(5);
            step!(6);
            step!(7);
        }
        [s0, s1, s2, s3]
    }

    /// Four streams in lock-step.
    fn walk4(&self, t: &[u8], ends: &mut Vec<(usize, usize)>) {
        let n = t.len();
        let back = self.maxlen.saturating_sub(1);
        // Four streams of one length `q` (the last may be shorter): stream `k` begins
        // `back` bytes before the end of stream `k - 1`, so the lock-step covers the
        // whole text and the overlaps cost `3 * back` steps spread over four streams.
        // INVARIANT: `n >= 2 * maxlen` (the caller checks), so `q >= back` and the
        // segment starts below are ordered and at most `n`.
        let q = (n + 3 * back).div_ceil(4);
        let seg = [0, q, 2 * q - back, 3 * q - 2 * back, n];
        let start = |k: usize| seg.get(k).copied().unwrap_or(0);
        let begin = [
            0,
            start(1) - back.min(start(1)),
            start(2) - back,
            start(3) - back,
        ];
        let end = [start(1), start(2), start(3), n];
        let len = |k: usize| end.get(k).copied().unwrap_or(0) - begin.get(k).copied().unwrap_or(0);
        let common = (0..4).map(len).min().unwrap_or(0);
        let (b0, b1, b2, b3) = (begin[0], begin[1], begin[2], begin[3]);
        let (r1, r2, r3) = (start(1), start(2), start(3));
        let mut found: [Vec<(usize, usize)>; 4] = Default::default();
        let (t0, t1, t2, t3) = (
            t.get(b0..b0 + common).unwrap_or(&[]),
            t.get(b1..b1 + common).unwrap_or(&[]),
            t.get(b2..b2 + common).unwrap_or(&[]),
            t.get(b3..b3 + common).unwrap_or(&[]),
        );
        let fm = self.first_match;
        let begins = [b0, b1, b2, b3];
        let reports = [0, r1, r2, r3];
        // The lock-step walks blocks of 8 bytes per stream (constant offsets, no bounds
        // checks) and tests all four states at once: the OR of the states is at least
        // their maximum, so `(s0 | s1 | s2 | s3) < fm` proves that none is a match state;
        // states are numbered breadth first, so the OR of shallow states stays small
        // and the precise test (out of line) runs about as often as a state matches.
        let blocks = [
            t0.as_chunks::<8>().0,
            t1.as_chunks::<8>().0,
            t2.as_chunks::<8>().0,
            t3.as_chunks::<8>().0,
        ];
        let [mut s0, mut s1, mut s2, mut s3] = self.lockstep(blocks, &mut found, begins, reports);
        let i = blocks.first().map_or(0, |b| b.len() * 8);
        let (e0, e1, e2, e3) = (
            t0.get(i..).unwrap_or(&[]),
            t1.get(i..).unwrap_or(&[]),
            t2.get(i..).unwrap_or(&[]),
            t3.get(i..).unwrap_or(&[]),
        );
        for (j, (((&x0, &x1), &x2), &x3)) in e0.iter().zip(e1).zip(e2).zip(e3).enumerate() {
            s0 = self.step(s0, x0);
            s1 = self.step(s1, x1);
            s2 = self.step(s2, x2);
            s3 = self.step(s3, x3);
            if (s0 | s1 | s2 | s3) >= fm {
                record4(&mut found, [s0, s1, s2, s3], fm, begins, reports, i + j);
            }
        }
        // Finish each stream from where the lock-step stopped.
        let states = [s0, s1, s2, s3];
        for (k, f) in found.iter_mut().enumerate() {
            let mut s = states.get(k).copied().unwrap_or(0);
            let from = begin.get(k).copied().unwrap_or(0) + common;
            let to = end.get(k).copied().unwrap_or(0);
            let rep = reports.get(k).copied().unwrap_or(0);
            for (i, &b) in t.get(from..to).unwrap_or(&[]).iter().enumerate() {
                s = self.step(s, b);
                if s >= fm && from + i >= rep {
                    f.push((s, from + i + 1));
                }
            }
            ends.append(f);
        }
    }
}

/// The match states among the four streams' states after step `i` of the lock-step
/// (out of the hot loop: it runs about as often as a keyword ends).
#[cold]
#[inline(never)]
fn record4(
    found: &mut [Vec<(usize, usize)>; 4],
    states: [usize; 4],
    fm: usize,
    begins: [usize; 4],
    reports: [usize; 4],
    i: usize,
) {
    for (((f, s), b), r) in found.iter_mut().zip(states).zip(begins).zip(reports) {
        // A stream reports only matches that end inside its own segment.
        if s >= fm && b + i >= r {
            f.push((s, b + i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(keywords: &[String], t: &[u8]) -> Vec<(usize, usize, usize)> {
        let lower = t.to_ascii_lowercase();
        let mut v = Vec::new();
        for end in 1..=t.len() {
            for (p, k) in keywords.iter().enumerate() {
                if end >= k.len() && &lower[end - k.len()..end] == k.as_bytes() {
                    v.push((p, end - k.len(), end));
                }
            }
        }
        v
    }

    #[test]
    fn matches_every_occurrence_like_a_naive_search() {
        let kws: Vec<String> = [
            "token",
            "ken",
            "aws",
            "ghp_",
            "secret",
            "sec",
            "-----begin",
            "q~",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let d = KwDfa::new(&kws).unwrap();
        let mut text = String::new();
        let words = [
            "TOKEN",
            "tok",
            "en",
            "Aws",
            "ghp_",
            "SeCrEt",
            "q~",
            "-----BEGIN",
            "x",
            " ",
            "_",
            "sec",
        ];
        let mut r = 12345u64;
        for _ in 0..5000 {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            text.push_str(words[(r % words.len() as u64) as usize]);
        }
        let lens = (0..300).chain([511, 512, 600, 4095, 4096, 5000, text.len()]);
        for len in lens {
            let t = &text.as_bytes()[..len.min(text.len())];
            let mut got = Vec::new();
            d.find_all(t, &mut got);
            got.sort_by_key(|&(p, s, e)| (e, p, s));
            let mut want = naive(&kws, t);
            want.sort_by_key(|&(p, s, e)| (e, p, s));
            assert_eq!(got, want, "len {len}");
        }
    }
}
