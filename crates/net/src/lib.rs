//! Destination parsing, canonicalization and classification.
//!
//! This crate answers question 2 of the gate ("is the destination of this call within
//! the permitted scope?"). It is pure: it never opens a socket or asks DNS itself;
//! host names are resolved through the [`Resolver`] it is given.
//!
//! CONTRACT (used by `conductor-policy` and `conductor-core`; keep these signatures):
//! - [`Class`], [`Resolver`], [`ResolveError`]
//! - [`DestPolicySpec`] → [`DestPolicy::compile`] → [`DestPolicy::evaluate`] → [`DestOutcome`]
//! - [`DestPattern::parse`] / [`DestPattern::matches`] (used by data egress rules)

use std::borrow::Cow;
use std::net::IpAddr;

use serde::Serialize;

pub mod canon;
mod classes;
mod extract;
pub mod ip;
mod pattern;

pub use canon::{CanonError, Canonical, Host, canonicalize};
pub use classes::{classes_of, name_hit};
pub use extract::find_in_text;
pub use pattern::DestPattern;

use crate::canon::safe;
use crate::pattern::Mode;

/// A built-in class of destinations that is blocked unless the policy's
/// `destinations.permit` opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    CloudMetadata,
    Loopback,
    LinkLocal,
    Private,
    Unspecified,
    Multicast,
    Reserved,
}

impl Class {
    /// Every class, in a stable order.
    pub const ALL: [Class; 7] = [
        Class::CloudMetadata,
        Class::Loopback,
        Class::LinkLocal,
        Class::Private,
        Class::Unspecified,
        Class::Multicast,
        Class::Reserved,
    ];

    /// The name used in policies and decisions (`cloud-metadata`, `loopback`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Class::CloudMetadata => "cloud-metadata",
            Class::Loopback => "loopback",
            Class::LinkLocal => "link-local",
            Class::Private => "private",
            Class::Unspecified => "unspecified",
            Class::Multicast => "multicast",
            Class::Reserved => "reserved",
        }
    }

    /// The class with this policy name, if any.
    pub fn from_name(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// Why a host name could not be resolved. Every variant ends in a deny.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("`{host}` does not resolve")]
    NotFound { host: String },
    #[error("resolving `{host}` timed out")]
    Timeout { host: String },
    #[error("resolving `{host}` failed: {message}")]
    Failed { host: String, message: String },
}

/// Resolves host names to addresses. Injected into the pure core by its caller
/// (the CLI's system resolver with timeout and cache, a fixed map in tests).
pub trait Resolver {
    /// Every address `host` (already canonical: lowercase ASCII, no trailing dot)
    /// resolves to. An empty `Ok` list is treated like [`ResolveError::NotFound`].
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError>;
}

/// The `destinations:` section of a policy, as written (already type-checked by
/// the policy loader).
#[derive(Debug, Clone, Default)]
pub struct DestPolicySpec {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    /// Names of built-in classes to open up (see [`Class::name`]).
    pub permit: Vec<String>,
    /// Also treat URL-looking strings anywhere in the arguments as destinations.
    pub scan: bool,
}

/// An entry of a [`DestPolicySpec`] list that does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    /// `"allow"`, `"deny"` or `"permit"`.
    pub list: &'static str,
    /// Index into that list.
    pub index: usize,
    /// Lowercase message, user input in backticks, no trailing period.
    pub message: String,
}

/// One destination of a call, as the decision shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destination {
    /// The string as found in the arguments (or the declared literal).
    pub input: String,
    /// Where it was found: a JSON pointer into the arguments; `None` for a literal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    pub scheme: String,
    /// Canonical host: an IP address in canonical text form, or a lowercase
    /// ASCII (punycode) name without trailing dot. Empty if the input did not parse.
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub addresses: Vec<IpAddr>,
    pub classes: Vec<Class>,
}

/// A reason the destination check fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Stable rule id, e.g. `destinations.blocked.cloud-metadata`, `destinations.deny[0]`,
    /// `destinations.allow` (matched no allow entry), `destinations.unparseable`, ...
    pub rule: String,
    /// Human message, lowercase, no trailing period.
    pub message: String,
    /// Index into [`DestOutcome::destinations`] of the destination concerned.
    pub destination: usize,
}

/// What the destination check found for one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestOutcome {
    pub destinations: Vec<Destination>,
    pub violations: Vec<Violation>,
}

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

/// A destination string found in a call, before canonicalization.
struct Found<'a> {
    input: Cow<'a, str>,
    pointer: Option<String>,
    /// Set when the value at a declared pointer is not a string (or number).
    not_a_string: Option<&'static str>,
}

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

/// RFC 6901 lookup (like `Value::pointer`, without allocating for plain tokens).
fn json_pointer<'v>(value: &'v serde_json::Value, pointer: &str) -> Option<&'v serde_json::Value> {
    if pointer.is_empty() {
        return Some(value);
    }
    let rest = pointer.strip_prefix('/')?;
    let mut target = value;
    for raw in rest.split('/') {
        let token: std::borrow::Cow<'_, str> = if raw.contains('~') {
            std::borrow::Cow::Owned(raw.replace("~1", "/").replace("~0", "~"))
        } else {
            std::borrow::Cow::Borrowed(raw)
        };
        target = match target {
            serde_json::Value::Object(map) => map.get(token.as_ref())?,
            serde_json::Value::Array(items) => {
                if token.len() > 1 && token.starts_with('0') {
                    return None;
                }
                items.get(token.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(target)
}

fn escape_token(t: &str) -> String {
    t.replace('~', "~0").replace('/', "~1")
}

fn collect<'a>(
    arguments: &'a serde_json::Value,
    pointers: &[String],
    literals: &'a [String],
    scan: bool,
) -> Vec<Found<'a>> {
    use serde_json::Value;
    let mut found: Vec<Found<'a>> = Vec::new();
    let mut declared: Vec<String> = Vec::new();
    let push = |found: &mut Vec<Found<'a>>, input: Cow<'a, str>, pointer: Option<String>| {
        if !found.iter().any(|f| f.input == input) {
            found.push(Found {
                input,
                pointer,
                not_a_string: None,
            });
        }
    };
    for p in pointers {
        let value = json_pointer(arguments, p);
        let items: Vec<(String, &Value)> = match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{p}/{i}"), v))
                .collect(),
            Some(v) => vec![(p.clone(), v)],
        };
        for (ptr, v) in items {
            match v {
                Value::String(s) => push(&mut found, Cow::Borrowed(s.as_str()), Some(ptr.clone())),
                Value::Number(n) => push(&mut found, Cow::Owned(n.to_string()), Some(ptr.clone())),
                Value::Null => {}
                other => found.push(Found {
                    input: Cow::Borrowed(""),
                    pointer: Some(ptr.clone()),
                    not_a_string: Some(match other {
                        Value::Bool(_) => "a boolean",
                        Value::Array(_) => "an array",
                        _ => "an object",
                    }),
                }),
            }
            declared.push(ptr);
        }
    }
    for l in literals {
        push(&mut found, Cow::Borrowed(l.as_str()), None);
    }
    if scan {
        // Depth-first, with an explicit stack (no recursion limit to hit) and the path
        // kept as segments: a pointer string is only built for a string that holds a hit.
        let mut path: Vec<Seg<'a>> = Vec::new();
        let mut stack: Vec<(usize, Option<Seg<'a>>, &'a Value)> = vec![(0, None, arguments)];
        while let Some((depth, seg, v)) = stack.pop() {
            path.truncate(depth.saturating_sub(1));
            if let Some(seg) = seg {
                path.push(seg);
            }
            match v {
                Value::String(s) => scan_string(s, &path, &declared, &mut found),
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate().rev() {
                        stack.push((depth + 1, Some(Seg::Index(i)), item));
                    }
                }
                Value::Object(map) => {
                    for (k, item) in map.iter().rev() {
                        path.push(Seg::Key(k));
                        scan_string(k, &path, &declared, &mut found);
                        path.pop();
                        stack.push((depth + 1, Some(Seg::Key(k)), item));
                    }
                }
                _ => {}
            }
        }
    }
    found
}

/// One step of a JSON pointer.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn pointer_of(path: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for seg in path {
        out.push('/');
        match seg {
            Seg::Key(k) if k.contains(['~', '/']) => out.push_str(&escape_token(k)),
            Seg::Key(k) => out.push_str(k),
            Seg::Index(i) => out.push_str(&i.to_string()),
        }
    }
    out
}

fn scan_string<'a>(s: &'a str, path: &[Seg<'_>], declared: &[String], found: &mut Vec<Found<'a>>) {
    let decoded = extract::percent_decoded(s);
    let mut hits: Vec<(Cow<'a, str>, bool)> = Vec::new();
    // Decoded texts are new strings: their hits are owned.
    let collect_hits = |t: &str, hits: &mut Vec<(Cow<'a, str>, bool)>| {
        let lead = t.len() - t.trim_start().len();
        for (start, end) in find_in_text(t) {
            if let Some(sub) = t.get(start..end) {
                hits.push((Cow::Owned(sub.to_string()), start <= lead));
            }
        }
        if extract::whole_is_blocked_name(t) {
            hits.push((Cow::Owned(t.trim().to_string()), true));
        }
    };
    // The original text: hits borrow from it.
    {
        let lead = s.len() - s.trim_start().len();
        for (start, end) in find_in_text(s) {
            if let Some(sub) = s.get(start..end) {
                hits.push((Cow::Borrowed(sub), start <= lead));
            }
        }
        if extract::whole_is_blocked_name(s) {
            hits.push((Cow::Borrowed(s.trim()), true));
        }
    }
    for t in &decoded {
        collect_hits(t, &mut hits);
    }
    if hits.is_empty() {
        return;
    }
    let is_declared = declared.iter().any(|d| path_is(path, d));
    let mut ptr: Option<String> = None;
    for (h, at_start) in hits {
        // A declared value is a destination as a whole already; what starts where it
        // starts is that destination (or a prefix of it), not another one.
        if is_declared && at_start {
            continue;
        }
        if !found.iter().any(|f| f.input == h) {
            let pointer = ptr.get_or_insert_with(|| pointer_of(path)).clone();
            found.push(Found {
                input: h,
                pointer: Some(pointer),
                not_a_string: None,
            });
        }
    }
}

/// Whether `path` is the JSON pointer `pointer` (without building the pointer text).
fn path_is(path: &[Seg<'_>], pointer: &str) -> bool {
    let Some(rest) = pointer.strip_prefix('/') else {
        return path.is_empty() && pointer.is_empty();
    };
    let mut tokens = rest.split('/');
    for seg in path {
        let Some(t) = tokens.next() else {
            return false;
        };
        let same = match seg {
            Seg::Key(k) if t.contains('~') => t.replace("~1", "/").replace("~0", "~") == *k,
            Seg::Key(k) => t == *k,
            Seg::Index(i) => {
                t.parse::<usize>().ok() == Some(*i) && (t == "0" || !t.starts_with('0'))
            }
        };
        if !same {
            return false;
        }
    }
    tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::{Seg, path_is, pointer_of};

    #[test]
    fn path_is_agrees_with_pointer_of() {
        let paths: Vec<Vec<Seg<'_>>> = vec![
            vec![],
            vec![Seg::Key("")],
            vec![Seg::Key("url")],
            vec![Seg::Key("a/b"), Seg::Index(0)],
            vec![Seg::Key("~x"), Seg::Index(10), Seg::Key("y")],
        ];
        for p in &paths {
            let text = pointer_of(p);
            for q in &paths {
                assert_eq!(path_is(q, &text), pointer_of(q) == text, "{text}");
            }
        }
        assert!(!path_is(&[Seg::Index(1)], "/01"));
    }
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
