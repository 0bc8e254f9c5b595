//! API keys: `cnd_` followed by 43 base64url characters (32 random bytes).
//!
//! The gateway file holds only each key's SHA-256. A fast hash is the right one here:
//! the keys are 256-bit random values, not passwords, so there is nothing to guess
//! that a slow hash (bcrypt, argon2) would slow down — a brute force of 2^256 inputs is
//! out of reach at any hash speed — while a slow hash would add tens of milliseconds to
//! every request. The `cnd_` prefix lets secret scanners recognise a leaked key.
//!
//! INVARIANT: a presented key is compared with every configured hash in constant time
//! (`subtle`), and the loop never stops early, so timing tells nothing about which
//! entry (if any) matched.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ApiKey;

/// What every Conductor API key starts with.
pub const PREFIX: &str = "cnd_";

/// Random bytes in a key.
const KEY_BYTES: usize = 32;

/// The configured keys.
#[derive(Debug, Clone, Default)]
pub struct KeyTable {
    entries: Vec<([u8; 32], String)>,
}

/// The SHA-256 of a key's text.
pub fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The key id written in audit records and logs: the first 8 hex digits of the hash.
pub fn key_id(hash: &[u8; 32]) -> String {
    hex::encode(hash.get(..4).unwrap_or(&[]))
}

/// A new key and its hash (hex). `None` when the system has no randomness.
pub fn generate() -> Option<(String, String)> {
    use base64::Engine as _;
    let mut b = [0u8; KEY_BYTES];
    getrandom::fill(&mut b).ok()?;
    let key = format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    );
    let h = hex::encode(hash(&key));
    Some((key, h))
}

/// Whether `s` has the shape of a key this module generates.
pub fn well_formed(s: &str) -> bool {
    s.strip_prefix(PREFIX).is_some_and(|r| {
        r.len() == 43
            && r.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

impl KeyTable {
    pub fn new(keys: &[ApiKey]) -> KeyTable {
        KeyTable {
            entries: keys.iter().map(|k| (k.sha256, k.agent.clone())).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The agent and key id of `presented`, if it is a configured key.
    pub fn find(&self, presented: &str) -> Option<(String, String)> {
        if !well_formed(presented) {
            return None;
        }
        let h = hash(presented);
        let mut found: Option<&String> = None;
        for (want, agent) in &self.entries {
            // INVARIANT: every entry is compared; no early exit.
            let eq: bool = want.ct_eq(&h).into();
            if eq && found.is_none() {
                found = Some(agent);
            }
        }
        found.map(|a| (a.clone(), key_id(&h)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_found_and_others_are_not() {
        let (key, h) = generate().unwrap();
        assert!(well_formed(&key), "{key}");
        let mut sha = [0u8; 32];
        hex::decode_to_slice(&h, &mut sha).unwrap();
        let t = KeyTable::new(&[ApiKey {
            agent: "bot".into(),
            sha256: sha,
        }]);
        let (agent, id) = t.find(&key).unwrap();
        assert_eq!(agent, "bot");
        assert_eq!(id, h[..8]);
        let (other, _) = generate().unwrap();
        assert_eq!(t.find(&other), None);
        // The hash itself is not a key.
        assert_eq!(t.find(&h), None);
        let mut flipped = key.clone();
        flipped.pop();
        flipped.push(if key.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(t.find(&flipped), None);
    }
}
