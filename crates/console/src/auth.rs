//! Approver accounts, login sessions and CSRF tokens.
//!
//! Approvers are people, authenticated apart from agents: an account is a name and the
//! SHA-256 of a high-entropy key (at least 128 random bits; `conductor console` prints
//! how to make one). SHA-256 and not a slow password hash because the key is random,
//! not chosen by a person: there is nothing to guess faster.
//!
//! INVARIANT: a login session id and a CSRF token are 256 random bits from the
//! operating system; if the generator fails, nobody is logged in. Sessions are kept
//! by the SHA-256 of their id, so the map never holds a usable cookie.
//!
//! INVARIANT: every comparison of a secret (key hash, CSRF token) is constant-time.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// How long a login lasts at most.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// A login unused for this long ends.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// Logins kept at once; the oldest goes first.
const MAX_SESSIONS: usize = 1024;
/// Failed logins of one name (or of all names) before logins pause.
const MAX_FAILURES: u32 = 5;
/// How long failures are remembered.
const FAILURE_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Why the approver accounts cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ApproversError {
    #[error("cannot read approvers file `{path}`: {message}")]
    Read { path: String, message: String },
    #[error("approvers file `{path}` is invalid: {message}")]
    Invalid { path: String, message: String },
}

/// One approver account.
#[derive(Clone, PartialEq, Eq)]
pub struct Approver {
    /// The name recorded in the audit trail for what this person decides.
    pub name: String,
    sha256: [u8; 32],
}

impl std::fmt::Debug for Approver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approver")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Approver {
    /// An account from a name and the hex SHA-256 of its key.
    pub fn new(name: &str, sha256_hex: &str) -> Result<Approver, String> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        {
            return Err(format!(
                "approver name `{}` must be 1 to 64 of a-z, A-Z, 0-9, `-`, `_`, `.`, `@`",
                conductor_types::display::shown(name, 80)
            ));
        }
        let bytes = hex::decode(sha256_hex.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                format!("the `sha256` of approver `{name}` must be 64 hex digits (the SHA-256 of the key)")
            })?;
        Ok(Approver {
            name: name.to_string(),
            sha256: bytes,
        })
    }

    /// An account for `key` (tests and tools that make keys).
    pub fn with_key(name: &str, key: &str) -> Result<Approver, String> {
        Approver::new(name, &hex::encode(Sha256::digest(key.as_bytes())))
    }
}

/// The approver accounts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approvers {
    list: Vec<Approver>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: u64,
    approvers: Vec<RawApprover>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprover {
    name: String,
    sha256: String,
}

impl Approvers {
    /// Accounts from a list.
    pub fn new(list: Vec<Approver>) -> Result<Approvers, String> {
        let mut seen = std::collections::BTreeSet::new();
        for a in &list {
            if !seen.insert(a.name.as_str()) {
                return Err(format!("approver `{}` is named twice", a.name));
            }
        }
        Ok(Approvers { list })
    }

    /// Read an approvers file:
    ///
    /// ```yaml
    /// version: 1
    /// approvers:
    ///   - {name: alice, sha256: "<hex SHA-256 of alice's key>"}
    /// ```
    pub fn load(path: &Path) -> Result<Approvers, ApproversError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ApproversError::Read {
            path: p.clone(),
            message: e.to_string().to_lowercase(),
        })?;
        Approvers::parse(&text).map_err(|message| ApproversError::Invalid { path: p, message })
    }

    /// Parse the text of an approvers file.
    pub fn parse(text: &str) -> Result<Approvers, String> {
        let raw: RawFile = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        if raw.version != 1 {
            return Err(format!("`version` must be 1, not {}", raw.version));
        }
        let mut list = Vec::new();
        let mut problems = Vec::new();
        for a in raw.approvers {
            match Approver::new(&a.name, &a.sha256) {
                Ok(a) => list.push(a),
                Err(e) => problems.push(e),
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Approvers::new(list)
    }

    /// How many accounts there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none (then nobody can log in).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The account `name` whose key is `key`, if both match.
    pub fn check(&self, name: &str, key: &str) -> Option<&Approver> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        // INVARIANT: every account's hash is compared (constant-time), whatever the
        // name, so the time taken says nothing about which names or keys exist.
        let mut found = None;
        for a in &self.list {
            let key_ok = ct_eq(&a.sha256, &digest);
            let name_ok = ct_eq(a.name.as_bytes(), name.as_bytes());
            if key_ok && name_ok {
                found = Some(a);
            }
        }
        found
    }
}

impl Approvers {
    /// The account whose key is `key` (the approvals API, where a key alone is
    /// presented), if exactly one account has it.
    pub fn by_key(&self, key: &str) -> Option<&Approver> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        // INVARIANT: every account's hash is compared (constant-time); a key two
        // accounts share names nobody.
        let mut found = None;
        let mut matches = 0u32;
        for a in &self.list {
            if ct_eq(&a.sha256, &digest) {
                found = Some(a);
                matches = matches.saturating_add(1);
            }
        }
        (matches == 1).then_some(found).flatten()
    }

    /// These accounts and `other`'s (a name in both is a problem).
    pub fn merged(&self, other: &Approvers) -> Result<Approvers, String> {
        Approvers::new(self.list.iter().chain(other.list.iter()).cloned().collect())
    }
}

/// Constant-time equality of two byte strings (the length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// 256 random bits as hex, or `None` when the generator fails.
pub fn random_token() -> Option<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).ok()?;
    Some(hex::encode(b))
}

fn id_key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// A logged-in approver.
#[derive(Debug, Clone)]
pub struct Login {
    /// The approver's name.
    pub approver: String,
    /// The CSRF token every POST of this login must carry.
    pub csrf: String,
    created: Instant,
    used: Instant,
}

/// The logins of this process (a restart logs everybody out).
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Login>>,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Login>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Start a login for `approver`: `(cookie value, csrf token)`.
    pub fn start(&self, approver: &str) -> Option<(String, String)> {
        let id = random_token()?;
        let csrf = random_token()?;
        let now = Instant::now();
        let mut m = self.lock();
        m.retain(|_, l| live(l, now));
        while m.len() >= MAX_SESSIONS {
            let oldest = m.iter().min_by_key(|(_, l)| l.created).map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    m.remove(&k);
                }
                None => break,
            }
        }
        m.insert(
            id_key(&id),
            Login {
                approver: approver.to_string(),
                csrf: csrf.clone(),
                created: now,
                used: now,
            },
        );
        Some((id, csrf))
    }

    /// The login of a cookie value, if it is live (its idle clock restarts).
    pub fn get(&self, id: &str) -> Option<Login> {
        let now = Instant::now();
        let mut m = self.lock();
        let key = id_key(id);
        let login = m.get_mut(&key)?;
        if !live(login, now) {
            m.remove(&key);
            return None;
        }
        login.used = now;
        Some(login.clone())
    }

    /// End a login.
    pub fn end(&self, id: &str) {
        self.lock().remove(&id_key(id));
    }

    /// Whether logins of `name` are paused after too many failures (per name and in all).
    pub fn throttled(&self, name: &str) -> bool {
        let now = Instant::now();
        let f = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let over = |k: &str, bound: u32| {
            f.get(k).is_some_and(|(n, since)| {
                now.duration_since(*since) < FAILURE_WINDOW && *n >= bound
            })
        };
        // The empty name counts every failure: all names together get ten times the
        // bound of one (an attacker spraying names is slowed too).
        over(name, MAX_FAILURES) || over("", MAX_FAILURES * 10)
    }

    /// Count a failed login of `name` (and of all names, at a higher bound).
    pub fn failed(&self, name: &str) {
        let now = Instant::now();
        let mut f = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f.retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
        if f.len() > 10_000 {
            f.clear();
        }
        if !name.is_empty() {
            let e = f.entry(name.to_string()).or_insert((0, now));
            e.0 = e.0.saturating_add(1);
        }
        let all = f.entry(String::new()).or_insert((0, now));
        all.0 = all.0.saturating_add(1);
    }
}

fn live(l: &Login, now: Instant) -> bool {
    now.duration_since(l.created) < SESSION_LIFETIME && now.duration_since(l.used) < SESSION_IDLE
}

/// The value of cookie `name` in a `Cookie` header, if it is there exactly once.
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    let mut found = None;
    for part in header?.split(';') {
        let (k, v) = part.trim().split_once('=')?;
        if k == name {
            if found.is_some() {
                // INVARIANT: two cookies of one name (one may be planted by a sibling
                // host) are refused, not guessed between.
                return None;
            }
            found = Some(v);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_logs_in_only_its_own_name() {
        let a = Approvers::new(vec![
            Approver::with_key("alice", "k-alice-0123456789abcdef").unwrap(),
            Approver::with_key("bob", "k-bob-0123456789abcdef").unwrap(),
        ])
        .unwrap();
        assert_eq!(
            a.check("alice", "k-alice-0123456789abcdef")
                .map(|a| a.name.as_str()),
            Some("alice")
        );
        assert!(a.check("bob", "k-alice-0123456789abcdef").is_none());
        assert!(a.check("alice", "").is_none());
        assert!(a.check("", "").is_none());
    }

    #[test]
    fn approvers_file_is_strict() {
        let h = hex::encode(Sha256::digest(b"x"));
        assert!(
            Approvers::parse(&format!(
                "version: 1\napprovers:\n  - {{name: alice, sha256: \"{h}\"}}\n"
            ))
            .is_ok()
        );
        assert!(
            Approvers::parse(&format!(
                "version: 1\napprovers:\n  - {{name: alice, sha256: \"{h}\", role: admin}}\n"
            ))
            .is_err()
        );
        assert!(
            Approvers::parse("version: 1\napprovers:\n  - {name: alice, sha256: \"abc\"}\n")
                .is_err()
        );
        assert!(
            Approvers::parse(&format!(
                "version: 2\napprovers:\n  - {{name: a, sha256: \"{h}\"}}\n"
            ))
            .is_err()
        );
        assert!(Approvers::parse(&format!("version: 1\napprovers:\n  - {{name: a, sha256: \"{h}\"}}\n  - {{name: a, sha256: \"{h}\"}}\n")).is_err());
    }

    #[test]
    fn duplicate_cookies_are_refused() {
        assert_eq!(cookie(Some("a=1; b=2"), "b"), Some("2"));
        assert_eq!(cookie(Some("b=1; b=2"), "b"), None);
        assert_eq!(cookie(None, "b"), None);
    }

    #[test]
    fn sessions_end_and_are_not_kept_by_id() {
        let s = Sessions::default();
        let (id, csrf) = s.start("alice").unwrap();
        let l = s.get(&id).unwrap();
        assert_eq!(l.approver, "alice");
        assert_eq!(l.csrf, csrf);
        assert!(s.lock().keys().all(|k| k != id.as_bytes()));
        s.end(&id);
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn repeated_failures_pause_logins_of_that_name() {
        let s = Sessions::default();
        for _ in 0..MAX_FAILURES {
            assert!(!s.throttled("alice"));
            s.failed("alice");
        }
        assert!(s.throttled("alice"));
        assert!(!s.throttled("bob"));
    }
}
