//! An RFC 6962 (§2.1) Merkle tree head over the records, built incrementally, so that a
//! checkpoint of the chain is a real tlog checkpoint (C2SP tlog-checkpoint) that later
//! inclusion and consistency proofs can refer to.
//!
//! Leaf `i` is the canonical text of record `seq = i + 1`: leaf hash
//! `SHA-256(0x00 ‖ bytes)`, interior node `SHA-256(0x01 ‖ left ‖ right)`.

use sha2::{Digest, Sha256};

/// The perfect subtrees of the leaves seen so far, largest (leftmost) first.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tree {
    stack: Vec<(u32, [u8; 32])>,
    size: u64,
}

fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

impl Tree {
    pub(crate) fn push(&mut self, leaf: &[u8]) {
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(leaf);
        let mut cur: (u32, [u8; 32]) = (0, h.finalize().into());
        while let Some(&(height, ref left)) = self.stack.last() {
            if height != cur.0 {
                break;
            }
            cur = (height + 1, node(left, &cur.1));
            self.stack.pop();
        }
        self.stack.push(cur);
        self.size += 1;
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The tree head: `SHA-256("")` for the empty tree.
    pub(crate) fn root(&self) -> [u8; 32] {
        let mut iter = self.stack.iter().rev();
        let Some((_, last)) = iter.next() else {
            return Sha256::digest([]).into();
        };
        let mut acc = *last;
        for (_, left) in iter {
            acc = node(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recursive definition of RFC 6962 §2.1, to check the incremental one against.
    fn mth(leaves: &[&[u8]]) -> [u8; 32] {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => {
                let mut h = Sha256::new();
                h.update([0u8]);
                h.update(leaves[0]);
                h.finalize().into()
            }
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn incremental_root_matches_the_recursive_definition() {
        let data: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; (i % 5) as usize]).collect();
        let mut t = Tree::default();
        assert_eq!(t.root(), mth(&[]));
        for n in 1..=data.len() {
            t.push(&data[n - 1]);
            let refs: Vec<&[u8]> = data[..n].iter().map(Vec::as_slice).collect();
            assert_eq!(t.root(), mth(&refs), "size {n}");
        }
    }

    /// RFC 6962 test vector used by Certificate Transparency implementations: the empty
    /// tree head is SHA-256 of the empty string.
    #[test]
    fn empty_tree_head() {
        assert_eq!(
            hex::encode(Tree::default().root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
