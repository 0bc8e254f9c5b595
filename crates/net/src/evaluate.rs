//! The compiled `destinations:` section and the check of one call's destinations.

use std::net::IpAddr;

use crate::canon::{self, Canonical, Host, canonicalize, safe};
use crate::classes::{self, name_hit};
use crate::collect::{Found, collect};
use crate::pattern::{DestPattern, Mode};
use crate::{
    Class, DestOutcome, DestPolicySpec, Destination, PatternError, ResolveError, Resolver,
    Violation,
};

/// At most this many destinations are checked per call; more is a deny
/// (`destinations.limit`), so a call cannot make the gate resolve without bound.
pub const MAX_DESTINATIONS: usize = 64;

/// Longest `input` kept in a [`Destination`]; longer inputs are cut (with `…`).
const MAX_INPUT_SHOWN: usize = 2048;

/// A compiled `destinations:` section.
#[derive(Debug, Clone)]
pub struct DestPolicy {
    spec: DestPolicySpec,
    allow: Vec<DestPattern>,
    deny: Vec<DestPattern>,
    permitted: Vec<Class>,
}

/// What one call has resolved so far (a call names few hosts: a list is enough).
type Cache = Vec<(String, Result<Vec<IpAddr>, ResolveError>)>;

impl DestPolicy {
    /// Compile the section; every bad entry is reported, not only the first.
    pub fn compile(spec: &DestPolicySpec) -> Result<Self, Vec<PatternError>> {
        let mut errors = Vec::new();
        let mut compile_list = |list: &'static str, entries: &[String]| {
            let mut out = Vec::new();
            for (index, e) in entries.iter().enumerate() {
                match DestPattern::parse(e) {
                    Ok(p) => out.push(p),
                    Err(message) => errors.push(PatternError {
                        list,
                        index,
                        message,
                    }),
                }
            }
            out
        };
        let allow = compile_list("allow", &spec.allow);
        let deny = compile_list("deny", &spec.deny);
        let mut permitted = Vec::new();
        for (index, name) in spec.permit.iter().enumerate() {
            match Class::from_name(name) {
                Some(c) => permitted.push(c),
                None => errors.push(PatternError {
                    list: "permit",
                    index,
                    message: format!(
                        "`{}` is not a destination class; expected one of {}",
                        safe(name),
                        Class::ALL.map(|c| format!("`{}`", c.name())).join(", ")
                    ),
                }),
            }
        }
        if errors.is_empty() {
            Ok(DestPolicy {
                spec: spec.clone(),
                allow,
                deny,
                permitted,
            })
        } else {
            Err(errors)
        }
    }

    /// Whether URL-looking strings anywhere in the arguments are destinations.
    pub fn scans(&self) -> bool {
        self.spec.scan
    }

    /// Whether `class` is opened by `permit`.
    pub fn permits(&self, class: Class) -> bool {
        self.permitted.contains(&class)
    }

    /// Extract the destinations of a call (declared JSON `pointers` into the
    /// `arguments`, declared `literals`, and — when scanning — URL-looking strings
    /// anywhere in the arguments), canonicalize, resolve and check each.
    pub fn evaluate(
        &self,
        arguments: &serde_json::Value,
        pointers: &[String],
        literals: &[String],
        resolver: &dyn Resolver,
    ) -> DestOutcome {
        let found = collect(arguments, pointers, literals, self.spec.scan);
        let mut out = DestOutcome::default();
        let mut cache: Cache = Vec::new();
        out.destinations.reserve(found.len().min(MAX_DESTINATIONS));
        for f in found.iter().take(MAX_DESTINATIONS) {
            self.check_one(f, resolver, &mut cache, &mut out);
        }
        if found.len() > MAX_DESTINATIONS {
            out.violations.push(Violation {
                rule: "destinations.limit".into(),
                message: format!(
                    "the call names {} destinations; at most {MAX_DESTINATIONS} are checked, so it is denied",
                    found.len()
                ),
                destination: out.destinations.len().saturating_sub(1),
            });
        }
        out
    }

    fn check_one(
        &self,
        f: &Found<'_>,
        resolver: &dyn Resolver,
        cache: &mut Cache,
        out: &mut DestOutcome,
    ) {
        let index = out.destinations.len();
        let mut dest = Destination {
            input: shown_input(&f.input),
            pointer: f.pointer.clone(),
            scheme: String::new(),
            host: String::new(),
            port: None,
            addresses: Vec::new(),
            classes: Vec::new(),
        };
        let violations = &mut out.violations;
        let mut deny = |rule: String, message: String| {
            violations.push(Violation {
                rule,
                message,
                destination: index,
            })
        };
        let where_ = || match &f.pointer {
            Some(p) => format!("the argument at `{}`", safe(p)),
            None => "a declared destination".to_string(),
        };
        if let Some(kind) = f.not_a_string {
            deny(
                "destinations.unparseable".into(),
                format!(
                    "{} is a destination but holds {kind}, not a URL or host",
                    where_()
                ),
            );
            out.destinations.push(dest);
            return;
        }
        let c = match canonicalize(&f.input) {
            Ok(c) => c,
            Err(e) => {
                deny(
                    "destinations.unparseable".into(),
                    format!(
                        "`{}` in {} cannot be checked: {e}",
                        short(&dest.input),
                        where_()
                    ),
                );
                out.destinations.push(dest);
                return;
            }
        };
        let w = Written {
            cell: std::cell::OnceCell::new(),
            origin: c.origin(),
            input: &f.input,
        };
        let Canonical {
            scheme,
            host,
            port,
            mismatch,
            ..
        } = c;
        dest.scheme = scheme;
        dest.port = port;
        // The host moves into the destination; `ip` remembers an address host.
        let ip = match host {
            Some(Host::Ip(a)) => {
                dest.host = match a {
                    IpAddr::V4(v4) => ipv4_text(v4),
                    IpAddr::V6(_) => a.to_string(),
                };
                Some(a)
            }
            Some(Host::Name(n)) => {
                dest.host = n;
                None
            }
            None => None,
        };
        if let Some(other) = &mismatch {
            deny(
                "destinations.parser-mismatch".into(),
                format!(
                    "`{w}` is ambiguous: a WHATWG URL parser reads host `{}`{}, an RFC 3986 parser reads {other}",
                    safe(&dest.host),
                    dest.port.map(|p| format!(" port {p}")).unwrap_or_default()
                ),
            );
        }
        let web = matches!(dest.scheme.as_str(), "" | "http" | "https");
        if !web
            && !self.allow.iter().any(|p| {
                p.scheme.as_deref() == Some(dest.scheme.as_str())
                    && p.matches_scheme_port(&dest, Mode::Strict)
            })
        {
            deny(
                "destinations.scheme".into(),
                format!(
                    "`{w}` uses the scheme `{}`; only http and https are allowed unless an allow entry names the scheme",
                    safe(&dest.scheme)
                ),
            );
        }
        if dest.host.is_empty() {
            if web {
                deny(
                    "destinations.unparseable".into(),
                    format!("`{w}` has no host"),
                );
            }
            out.destinations.push(dest);
            return;
        }
        // Classes, from the address or (for names) from the name or the resolver.
        let mut blocked: Vec<(Class, String)> = Vec::new();
        match ip {
            Some(a) => dest.addresses.push(a),
            None => {
                if let Some((class, what)) = name_hit(&dest.host) {
                    dest.classes.push(class);
                    if !self.permits(class) {
                        blocked.push((
                            class,
                            format!("`{w}` is {what}, {}", classes::phrase(class)),
                        ));
                    }
                } else if self.needs_resolution(&dest) && !self.logical_host(&dest) {
                    let r = match cache.iter().find(|(n, _)| *n == dest.host) {
                        Some((_, r)) => r.clone(),
                        None => {
                            let r = resolver.resolve(&dest.host);
                            cache.push((dest.host.clone(), r.clone()));
                            r
                        }
                    };
                    match r {
                        Ok(addrs) if !addrs.is_empty() => dest.addresses = addrs,
                        Ok(_) => deny(
                            "destinations.unresolvable".into(),
                            format!(
                                "`{w}` cannot be checked: `{}` does not resolve",
                                safe(&dest.host)
                            ),
                        ),
                        Err(e) => deny(
                            "destinations.unresolvable".into(),
                            format!("`{w}` cannot be checked: {e}"),
                        ),
                    }
                }
            }
        }
        // INVARIANT: every address is classified, and every unpermitted class denies.
        for a in &dest.addresses {
            let hits = classes::hits(*a);
            for h in &hits {
                dest.classes.push(h.class);
            }
            let Some(h) = hits
                .iter()
                .filter(|h| !self.permits(h.class))
                .min_by_key(|h| h.class)
            else {
                continue;
            };
            if blocked.iter().any(|(c, _)| *c == h.class) {
                continue;
            }
            let carried = match h.via {
                Some((how, v4)) => format!(", which carries IPv4 {v4} ({})", how.name()),
                None => String::new(),
            };
            let detail = if h.class == Class::Reserved {
                format!(" ({})", h.what)
            } else {
                String::new()
            };
            // An address host is shown as the destination's host text.
            let (verb, shown) = match ip {
                Some(_) if carried.is_empty() && w.as_str().contains(dest.host.as_str()) => {
                    ("is", dest.host.clone())
                }
                Some(_) => ("resolves to", dest.host.clone()),
                None => ("resolves to", a.to_string()),
            };
            blocked.push((
                h.class,
                format!(
                    "`{w}` {verb} {shown}{carried}, {}{detail}",
                    classes::phrase(h.class)
                ),
            ));
        }
        if dest.classes.len() > 1 {
            dest.classes.sort_unstable();
            dest.classes.dedup();
        }
        for (class, message) in blocked {
            deny(format!("destinations.blocked.{}", class.name()), message);
        }
        for (i, p) in self.deny.iter().enumerate() {
            if p.matches_mode(&dest, Mode::Loose) {
                deny(
                    format!("destinations.deny[{i}]"),
                    format!("`{w}` matches the deny entry `{}`", safe(p.as_str())),
                );
            }
        }
        if !self
            .allow
            .iter()
            .any(|p| p.matches_mode(&dest, Mode::Strict))
        {
            let message = if self.allow.is_empty() {
                format!("`{w}` is not allowed: `destinations.allow` is empty, so no destination is")
            } else {
                format!("`{w}` matches no entry of `destinations.allow`")
            };
            deny("destinations.allow".into(), message);
        }
        out.destinations.push(dest);
    }

    /// Whether the verdict on a (not name-blocked) host name depends on its addresses.
    /// When a deny entry already matches by name, or no allow entry can match, the name
    /// is not resolved: a denied name should not even leak out through DNS.
    /// Whether `dest` uses a scheme that is not a network protocol (an MCP server's own
    /// resource scheme such as `demo://` or `memo://`) and an allow entry names that
    /// scheme explicitly and matches the destination: its host is then a name inside
    /// the server, not one to resolve. Address hosts and blocked names (metadata names,
    /// `localhost`) are still classified; deny entries still apply.
    fn logical_host(&self, dest: &Destination) -> bool {
        !NETWORK_SCHEMES.contains(&dest.scheme.as_str())
            && self.allow.iter().any(|p| {
                p.scheme.as_deref() == Some(dest.scheme.as_str())
                    && p.matches_scheme_port(dest, Mode::Strict)
                    && p.matches_host(dest, Mode::Strict)
            })
    }

    fn needs_resolution(&self, dest: &Destination) -> bool {
        let denied_by_name = self
            .deny
            .iter()
            .any(|p| !p.host.needs_addresses() && p.matches_mode(dest, Mode::Loose));
        let may_be_allowed = self.allow.iter().any(|p| {
            p.matches_scheme_port(dest, Mode::Strict)
                && (p.host.needs_addresses() || p.matches_host(dest, Mode::Strict))
        });
        !denied_by_name && may_be_allowed
    }
}

/// Schemes whose host is a network host, always resolved and checked. Any other scheme
/// is denied unless an allow entry names it, and then its host is not resolved
/// (see `DestPolicy::logical_host`).
const NETWORK_SCHEMES: &[&str] = &[
    "",
    "http",
    "https",
    "ws",
    "wss",
    "ftp",
    "ftps",
    "sftp",
    "ssh",
    "telnet",
    "gopher",
    "dict",
    "tftp",
    "ldap",
    "ldaps",
    "smtp",
    "smtps",
    "imap",
    "imaps",
    "pop3",
    "nntp",
    "irc",
    "ircs",
    "rtsp",
    "sip",
    "sips",
    "git",
    "svn",
    "redis",
    "rediss",
    "mongodb",
    "mongodb+srv",
    "postgres",
    "postgresql",
    "mysql",
    "amqp",
    "amqps",
    "mqtt",
    "mqtts",
    "nats",
    "kafka",
    "grpc",
    "grpcs",
    "file",
    "smb",
    "nfs",
    "webdav",
    "dav",
    "s3",
    "gs",
    "jar",
    "netdoc",
    "view-source",
];

/// `a.to_string()` without the formatting machinery (this is on every call's path).
fn ipv4_text(a: std::net::Ipv4Addr) -> String {
    let mut out = String::with_capacity(15);
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if o >= 100 {
            out.push(char::from(b'0' + o / 100));
        }
        if o >= 10 {
            out.push(char::from(b'0' + (o / 10) % 10));
        }
        out.push(char::from(b'0' + o % 10));
    }
    out
}

/// The origin as written, computed only when a message needs it.
struct Written<'a> {
    cell: std::cell::OnceCell<String>,
    origin: canon::Origin,
    input: &'a str,
}

impl Written<'_> {
    fn as_str(&self) -> &str {
        self.cell.get_or_init(|| self.origin.written(self.input))
    }
}

impl std::fmt::Display for Written<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The input as shown in a decision: a userinfo password replaced by `***` (also in a
/// bare `user:password@host`), cut to
/// [`MAX_INPUT_SHOWN`] bytes.
fn shown_input(input: &str) -> String {
    let mut s = input.to_string();
    // The authority starts after `scheme:` and any slashes or backslashes, after leading
    // slashes, or (a bare host) at the start; it ends at `/`, `?` or `#` (a backslash
    // does not end it here: when in doubt, more is redacted).
    let scheme_end = s
        .find(':')
        .filter(|&i| {
            let scheme = s.get(..i).unwrap_or("");
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && s.get(i + 1..).is_some_and(|r| r.starts_with(['/', '\\']))
        })
        .map_or(0, |i| i + 1);
    let after = s.get(scheme_end..).unwrap_or("");
    let start = Some(scheme_end + after.len() - after.trim_start_matches(['/', '\\']).len());
    if let Some(start) = start {
        let rest = s.get(start..).unwrap_or("");
        let end = rest.find(['/', '?', '#']).map_or(s.len(), |e| start + e);
        if let Some(authority) = s.get(start..end)
            && let Some(at) = authority.rfind('@')
            && let Some(colon) = authority.get(..at).and_then(|u| u.find(':'))
        {
            s.replace_range(start + colon + 1..start + at, "***");
        }
    }
    if s.len() > MAX_INPUT_SHOWN {
        let mut cut = MAX_INPUT_SHOWN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// A short, safe excerpt of an input for messages.
fn short(input: &str) -> String {
    let cut: String = input.chars().take(60).collect();
    let more = if cut.len() < input.len() { "…" } else { "" };
    format!("{}{more}", safe(&cut))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ipv4_text_is_display() {
        for a in [
            [0, 0, 0, 0],
            [169, 254, 169, 254],
            [10, 9, 100, 255],
            [1, 20, 199, 5],
        ] {
            let a = std::net::Ipv4Addr::from(a);
            assert_eq!(super::ipv4_text(a), a.to_string());
        }
    }
}
