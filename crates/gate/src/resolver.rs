//! The gate's resolver: fixed answers (`--resolve`), `--no-dns`, a bounded cache, and
//! system lookups (`getaddrinfo`, so `/etc/hosts` and nsswitch are honoured) on a small
//! fixed pool of threads shared by every session of the process.
//!
//! Lookups of the same name in flight at the same time are made once (single flight),
//! a lookup that takes longer than the timeout fails as [`ResolveError::Timeout`] for
//! its waiters (a `getaddrinfo` cannot be cancelled: it finishes on its thread and its
//! answer is cached), and async callers never block a runtime thread.
//!
//! INVARIANT: every failure — not found, timeout, a pool that cannot start — is an
//! error the core turns into a deny; nothing here ever answers "no addresses" as a
//! success.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use conductor_net::{Host, ResolveError, Resolver};

/// How long one system lookup may take before it counts as [`ResolveError::Timeout`].
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a successful lookup is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// How long a failed lookup is reused.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// How many host names the cache holds.
pub const CACHE_SIZE: usize = 1024;
/// Threads making system lookups (shared by the whole process).
pub const LOOKUP_THREADS: usize = 4;

type Answer = Result<Vec<IpAddr>, ResolveError>;
type Lookup = dyn Fn(&str) -> Answer + Send + Sync;
type Waiter = Box<dyn FnOnce(Answer) + Send>;

/// A `--resolve HOST=IP[,IP…]` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}`: {why}; expected HOST=IP[,IP…]")]
pub struct FixedError {
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub why: String,
}

/// Parse one `HOST=IP[,IP…]` value into a canonical host name and its addresses.
pub fn parse_fixed(value: &str) -> Result<(String, Vec<IpAddr>), FixedError> {
    let bad = |why: &str| FixedError {
        value: value.to_string(),
        why: why.to_string(),
    };
    let Some((host, ips)) = value.split_once('=') else {
        return Err(bad("no `=`"));
    };
    let host = match conductor_net::canon::canonical_host_text(host.trim()) {
        Ok(Host::Name(n)) => n,
        Ok(Host::Ip(_)) => return Err(bad("HOST is an IP address, which is never resolved")),
        Err(e) => return Err(bad(&e)),
    };
    let mut addrs = Vec::new();
    for ip in ips.split(',') {
        let t = ip.trim();
        let t = t
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(t);
        match t.parse::<IpAddr>() {
            Ok(a) => addrs.push(a),
            Err(_) => return Err(bad(&format!("`{t}` is not an IP address"))),
        }
    }
    Ok((host, addrs))
}

/// How a [`GateResolver`] answers.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// Names with fixed answers (canonical names, see [`parse_fixed`]); they win over DNS.
    pub fixed: HashMap<String, Vec<IpAddr>>,
    /// Every name not in `fixed` is unresolvable.
    pub no_dns: bool,
    /// How long one lookup may take.
    pub timeout: Duration,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            fixed: HashMap::new(),
            no_dns: false,
            timeout: LOOKUP_TIMEOUT,
        }
    }
}

impl ResolverConfig {
    /// A configuration from `--resolve` values (repeating a host adds addresses: the
    /// union is the safe reading, since every address is checked) and `--no-dns`.
    pub fn from_args(values: &[String], no_dns: bool) -> Result<ResolverConfig, FixedError> {
        let mut fixed: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for value in values {
            let (host, addrs) = parse_fixed(value)?;
            let entry = fixed.entry(host).or_default();
            for a in addrs {
                if !entry.contains(&a) {
                    entry.push(a);
                }
            }
        }
        Ok(ResolverConfig {
            fixed,
            no_dns,
            timeout: LOOKUP_TIMEOUT,
        })
    }
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, (Instant, Answer)>,
}

impl Cache {
    fn get(&mut self, host: &str, now: Instant) -> Option<Answer> {
        let (at, r) = self.entries.get(host)?;
        let ttl = if r.is_ok() { CACHE_TTL } else { NEGATIVE_TTL };
        if now.saturating_duration_since(*at) < ttl {
            Some(r.clone())
        } else {
            self.entries.remove(host);
            None
        }
    }

    fn put(&mut self, host: &str, now: Instant, r: Answer) {
        if self.entries.len() >= CACHE_SIZE && !self.entries.contains_key(host) {
            self.entries.retain(|_, (at, r)| {
                let ttl = if r.is_ok() { CACHE_TTL } else { NEGATIVE_TTL };
                now.saturating_duration_since(*at) < ttl
            });
            if self.entries.len() >= CACHE_SIZE
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(host.to_string(), (now, r));
    }
}

struct Shared {
    cache: Mutex<Cache>,
    /// Names being looked up, with who waits for them.
    inflight: Mutex<HashMap<String, Vec<Waiter>>>,
    system: Arc<Lookup>,
}

/// The resolver every transport of a process shares. Cheap to clone.
#[derive(Clone)]
pub struct GateResolver {
    config: Arc<ResolverConfig>,
    shared: Arc<Shared>,
    jobs: Arc<Mutex<Option<mpsc::Sender<String>>>>,
}

impl std::fmt::Debug for GateResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateResolver")
            .field("fixed", &self.config.fixed.len())
            .field("no_dns", &self.config.no_dns)
            .field("timeout", &self.config.timeout)
            .finish_non_exhaustive()
    }
}

impl GateResolver {
    /// A resolver using the system's `getaddrinfo`.
    pub fn new(config: ResolverConfig) -> GateResolver {
        GateResolver::with_lookup(config, Arc::new(system_lookup))
    }

    /// A resolver with another lookup function in place of `getaddrinfo` (tests).
    pub fn with_lookup(config: ResolverConfig, lookup: Arc<Lookup>) -> GateResolver {
        GateResolver {
            config: Arc::new(config),
            shared: Arc::new(Shared {
                cache: Mutex::new(Cache::default()),
                inflight: Mutex::new(HashMap::new()),
                system: lookup,
            }),
            jobs: Arc::new(Mutex::new(None)),
        }
    }

    /// The answer known without a lookup: fixed, `--no-dns`, or cached.
    pub fn known(&self, host: &str) -> Option<Answer> {
        if let Some(addrs) = self.config.fixed.get(host) {
            return Some(Ok(addrs.clone()));
        }
        if self.config.no_dns {
            return Some(Err(ResolveError::NotFound {
                host: host.to_string(),
            }));
        }
        self.shared.cache.lock().ok()?.get(host, Instant::now())
    }

    /// Resolve `host` without blocking the calling thread.
    pub async fn resolve_async(&self, host: &str) -> Answer {
        if let Some(r) = self.known(host) {
            return r;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.start(
            host,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        match tokio::time::timeout(self.config.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ResolveError::Failed {
                host: host.to_string(),
                message: "the resolver stopped".into(),
            }),
            Err(_) => Err(ResolveError::Timeout {
                host: host.to_string(),
            }),
        }
    }

    /// Resolve every host concurrently into an [`Answers`] map, within one timeout.
    pub async fn resolve_all(&self, hosts: &[String]) -> Answers {
        let mut answers = Answers::default();
        let mut waiting = Vec::new();
        for h in hosts {
            if answers.contains(h) {
                continue;
            }
            match self.known(h) {
                Some(r) => answers.insert(h.clone(), r),
                None => {
                    // Every lookup starts now; they are awaited together below.
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    self.start(
                        h,
                        Box::new(move |r| {
                            let _ = tx.send(r);
                        }),
                    );
                    waiting.push((h.clone(), rx));
                }
            }
        }
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        for (h, rx) in waiting {
            let r = match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(ResolveError::Failed {
                    host: h.clone(),
                    message: "the resolver stopped".into(),
                }),
                Err(_) => Err(ResolveError::Timeout { host: h.clone() }),
            };
            answers.insert(h, r);
        }
        answers
    }

    /// Queue a lookup of `host` (joining one in flight) with a waiter for its answer.
    fn start(&self, host: &str, waiter: Waiter) {
        let first = match self.shared.inflight.lock() {
            Ok(mut m) => {
                let list = m.entry(host.to_string()).or_default();
                list.push(waiter);
                list.len() == 1
            }
            Err(_) => {
                return;
            }
        };
        if first && !self.submit(host) {
            self.finish(
                host,
                Err(ResolveError::Failed {
                    host: host.to_string(),
                    message: "could not start the resolver threads".into(),
                }),
            );
        }
    }

    fn submit(&self, host: &str) -> bool {
        let Ok(mut jobs) = self.jobs.lock() else {
            return false;
        };
        if jobs.is_none() {
            let (tx, rx) = mpsc::channel::<String>();
            let rx = Arc::new(Mutex::new(rx));
            for i in 0..LOOKUP_THREADS {
                let rx = Arc::clone(&rx);
                let me = self.clone_detached();
                let spawned = std::thread::Builder::new()
                    .name(format!("conductor-dns-{i}"))
                    .spawn(move || {
                        loop {
                            let next = match rx.lock() {
                                Ok(r) => r.recv(),
                                Err(_) => return,
                            };
                            let Ok(host) = next else { return };
                            let r = (me.shared.system)(&host);
                            me.finish(&host, r);
                        }
                    });
                if spawned.is_err() && i == 0 {
                    return false;
                }
            }
            *jobs = Some(tx);
        }
        jobs.as_ref()
            .is_some_and(|tx| tx.send(host.to_string()).is_ok())
    }

    /// A handle for the worker threads: shares the cache and waiters, but not the job
    /// queue (so the queue closes when the last resolver handle is dropped).
    fn clone_detached(&self) -> GateResolver {
        GateResolver {
            config: Arc::clone(&self.config),
            shared: Arc::clone(&self.shared),
            jobs: Arc::new(Mutex::new(None)),
        }
    }

    fn finish(&self, host: &str, r: Answer) {
        if let Ok(mut c) = self.shared.cache.lock() {
            c.put(host, Instant::now(), r.clone());
        }
        let waiters = self
            .shared
            .inflight
            .lock()
            .ok()
            .and_then(|mut m| m.remove(host))
            .unwrap_or_default();
        for w in waiters {
            w(r.clone());
        }
    }
}

impl Resolver for GateResolver {
    /// A blocking lookup (for callers outside an async runtime, e.g. `conductor check`).
    fn resolve(&self, host: &str) -> Answer {
        if let Some(r) = self.known(host) {
            return r;
        }
        let (tx, rx) = mpsc::channel();
        self.start(
            host,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        match rx.recv_timeout(self.config.timeout) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(ResolveError::Timeout {
                host: host.to_string(),
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(ResolveError::Failed {
                host: host.to_string(),
                message: "the resolver stopped".into(),
            }),
        }
    }
}

/// Answers collected before a decision: a [`Resolver`] that never looks anything up.
/// A host it has no answer for is unresolvable.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    map: HashMap<String, Answer>,
}

impl Answers {
    /// Record the answer for `host`.
    pub fn insert(&mut self, host: String, answer: Answer) {
        self.map.insert(host, answer);
    }

    /// Whether an answer for `host` is recorded.
    pub fn contains(&self, host: &str) -> bool {
        self.map.contains_key(host)
    }
}

impl Resolver for Answers {
    fn resolve(&self, host: &str) -> Answer {
        self.map.get(host).cloned().unwrap_or_else(|| {
            Err(ResolveError::NotFound {
                host: host.to_string(),
            })
        })
    }
}

/// One lookup through the system resolver (`getaddrinfo`).
fn system_lookup(host: &str) -> Answer {
    match (host, 0u16).to_socket_addrs() {
        Ok(addrs) => {
            let mut out: Vec<IpAddr> = Vec::new();
            for a in addrs {
                if !out.contains(&a.ip()) {
                    out.push(a.ip());
                }
            }
            if out.is_empty() {
                Err(ResolveError::NotFound {
                    host: host.to_string(),
                })
            } else {
                Ok(out)
            }
        }
        Err(e) => Err(ResolveError::Failed {
            host: host.to_string(),
            message: e.to_string().to_lowercase(),
        }),
    }
}
