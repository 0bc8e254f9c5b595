//! The CLI's resolver: the system's (timeout ≤ 2 s, small cache), `--resolve`, `--no-dns`.
//!
//! CONTRACT (used by `check` and `wrap`): [`ResolveArgs`] (flatten it into a command's
//! arguments) and [`ResolveArgs::build`] → [`CliResolver`], which implements
//! [`conductor_net::Resolver`].

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use conductor_net::{Host, ResolveError, Resolver};

/// How long one system lookup may take before it counts as [`ResolveError::Timeout`].
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a successful lookup is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// How long a failed lookup is reused.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// How many host names the cache holds.
pub const CACHE_SIZE: usize = 256;

/// Resolver options shared by the commands that decide.
#[derive(Debug, Clone, Default, Args)]
pub struct ResolveArgs {
    /// Fix what HOST resolves to (like curl's `--resolve`); repeatable.
    #[arg(long = "resolve", value_name = "HOST=IP[,IP…]")]
    pub resolve: Vec<String>,
    /// Make every host that `--resolve` does not name unresolvable.
    #[arg(long = "no-dns")]
    pub no_dns: bool,
}

impl ResolveArgs {
    /// Build the resolver; the error names the bad `--resolve` value.
    pub fn build(&self) -> Result<CliResolver, String> {
        let mut fixed: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for value in &self.resolve {
            let (host, addrs) = parse_fixed(value)?;
            // Repeating a host adds addresses, as repeating curl's `--resolve` does not;
            // the union is the safe reading (every address is checked).
            let entry = fixed.entry(host).or_default();
            for a in addrs {
                if !entry.contains(&a) {
                    entry.push(a);
                }
            }
        }
        Ok(CliResolver {
            fixed,
            no_dns: self.no_dns,
            timeout: LOOKUP_TIMEOUT,
            cache: Mutex::new(Cache::default()),
            system: Arc::new(system_lookup),
        })
    }
}

/// Parse one `--resolve HOST=IP[,IP…]` value into a canonical host and its addresses.
fn parse_fixed(value: &str) -> Result<(String, Vec<IpAddr>), String> {
    // Callers put this after their own context ("invalid `--resolve`: …").
    let bad = |why: &str| format!("`{value}`: {why}; expected HOST=IP[,IP…]");
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

type Lookup = dyn Fn(&str) -> Result<Vec<IpAddr>, ResolveError> + Send + Sync;

/// The resolver the CLI injects into the core.
pub struct CliResolver {
    fixed: HashMap<String, Vec<IpAddr>>,
    no_dns: bool,
    timeout: Duration,
    cache: Mutex<Cache>,
    system: Arc<Lookup>,
}

impl std::fmt::Debug for CliResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CliResolver")
            .field("fixed", &self.fixed)
            .field("no_dns", &self.no_dns)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, (Instant, Result<Vec<IpAddr>, ResolveError>)>,
}

impl Cache {
    fn get(&mut self, host: &str, now: Instant) -> Option<Result<Vec<IpAddr>, ResolveError>> {
        let (at, r) = self.entries.get(host)?;
        let ttl = if r.is_ok() { CACHE_TTL } else { NEGATIVE_TTL };
        if now.saturating_duration_since(*at) < ttl {
            Some(r.clone())
        } else {
            self.entries.remove(host);
            None
        }
    }

    fn put(&mut self, host: &str, now: Instant, r: Result<Vec<IpAddr>, ResolveError>) {
        if self.entries.len() >= CACHE_SIZE && !self.entries.contains_key(host) {
            // Drop expired entries; if none, drop the oldest.
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

/// One lookup through the system resolver (`getaddrinfo`).
fn system_lookup(host: &str) -> Result<Vec<IpAddr>, ResolveError> {
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

impl CliResolver {
    /// Run the system lookup on a helper thread and give up after the timeout (the
    /// thread is left to finish on its own; `getaddrinfo` cannot be cancelled).
    fn lookup_with_timeout(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let (tx, rx) = mpsc::channel();
        let name = host.to_string();
        let system = Arc::clone(&self.system);
        let spawned = std::thread::Builder::new()
            .name("conductor-dns".into())
            .spawn(move || {
                let _ = tx.send(system(&name));
            });
        if spawned.is_err() {
            return Err(ResolveError::Failed {
                host: host.to_string(),
                message: "could not start a resolver thread".into(),
            });
        }
        match rx.recv_timeout(self.timeout) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(ResolveError::Timeout {
                host: host.to_string(),
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(ResolveError::Failed {
                host: host.to_string(),
                message: "the resolver thread stopped".into(),
            }),
        }
    }
}

impl Resolver for CliResolver {
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        if let Some(addrs) = self.fixed.get(host) {
            return Ok(addrs.clone());
        }
        if self.no_dns {
            return Err(ResolveError::NotFound {
                host: host.to_string(),
            });
        }
        let now = Instant::now();
        if let Ok(mut cache) = self.cache.lock()
            && let Some(r) = cache.get(host, now)
        {
            return r;
        }
        let r = self.lookup_with_timeout(host);
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(host, Instant::now(), r.clone());
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn args(resolve: &[&str], no_dns: bool) -> ResolveArgs {
        ResolveArgs {
            resolve: resolve.iter().map(|s| s.to_string()).collect(),
            no_dns,
        }
    }

    fn with_system(
        mut r: CliResolver,
        f: impl Fn(&str) -> Result<Vec<IpAddr>, ResolveError> + Send + Sync + 'static,
    ) -> CliResolver {
        r.system = Arc::new(f);
        r
    }

    #[test]
    fn fixed_hosts_are_canonical_and_win() {
        let r = args(
            &[
                "API.Example.COM.=198.51.100.7,[2001:db8::1]",
                "api.example.com=198.51.100.8",
            ],
            true,
        )
        .build()
        .unwrap();
        let got = r.resolve("api.example.com").unwrap();
        assert_eq!(
            got,
            vec![
                "198.51.100.7".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap(),
                "198.51.100.8".parse().unwrap()
            ]
        );
    }

    #[test]
    fn no_dns_makes_other_hosts_unresolvable() {
        let r = args(&["a.example=192.0.2.1"], true).build().unwrap();
        let r = with_system(r, |_| {
            panic!("the system resolver must not be asked under --no-dns")
        });
        assert_eq!(
            r.resolve("b.example"),
            Err(ResolveError::NotFound {
                host: "b.example".into()
            })
        );
    }

    #[test]
    fn bad_values_are_named() {
        for (v, needle) in [
            ("example.com", "no `=`"),
            ("example.com=", "is not an IP address"),
            ("example.com=1.2.3.4,nope", "`nope` is not an IP address"),
            ("=1.2.3.4", "expected HOST=IP"),
            ("1.2.3.4=5.6.7.8", "never resolved"),
            ("exa mple.com=1.2.3.4", "expected HOST=IP"),
        ] {
            let e = args(&[v], false).build().unwrap_err();
            assert!(e.contains(&format!("`{v}`")), "{e}");
            assert!(e.contains(needle), "{v}: {e}");
        }
    }

    #[test]
    fn results_are_cached() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let r = with_system(args(&[], false).build().unwrap(), move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(vec!["203.0.113.5".parse().unwrap()])
        });
        for _ in 0..3 {
            assert_eq!(r.resolve("x.example").unwrap().len(), 1);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        r.resolve("y.example").unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn cache_is_bounded() {
        let r = with_system(args(&[], false).build().unwrap(), |_| {
            Ok(vec!["203.0.113.5".parse().unwrap()])
        });
        for i in 0..(CACHE_SIZE + 10) {
            r.resolve(&format!("h{i}.example")).unwrap();
        }
        assert!(r.cache.lock().unwrap().entries.len() <= CACHE_SIZE);
    }

    #[test]
    fn slow_lookups_time_out() {
        let mut r = with_system(args(&[], false).build().unwrap(), |_| {
            std::thread::sleep(Duration::from_millis(500));
            Ok(vec!["203.0.113.5".parse().unwrap()])
        });
        r.timeout = Duration::from_millis(20);
        assert_eq!(
            r.resolve("slow.example"),
            Err(ResolveError::Timeout {
                host: "slow.example".into()
            })
        );
    }

    #[test]
    fn errors_pass_through() {
        let r = with_system(args(&[], false).build().unwrap(), |h| {
            Err(ResolveError::NotFound { host: h.into() })
        });
        assert_eq!(
            r.resolve("gone.example"),
            Err(ResolveError::NotFound {
                host: "gone.example".into()
            })
        );
    }

    #[test]
    fn timeout_is_at_most_two_seconds() {
        assert!(LOOKUP_TIMEOUT <= Duration::from_secs(2));
        assert_eq!(args(&[], false).build().unwrap().timeout, LOOKUP_TIMEOUT);
    }

    #[test]
    fn localhost_resolves_to_loopback() {
        // The one real lookup: `localhost` never leaves the machine.
        let r = args(&[], false).build().unwrap();
        if let Ok(addrs) = r.resolve("localhost") {
            assert!(addrs.iter().all(|a| a.is_loopback()), "{addrs:?}");
        }
    }
}
