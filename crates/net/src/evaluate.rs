//! The compiled `destinations:` section and the check of one call's destinations.

use std::net::IpAddr;

use conductor_types::{JsonPath, RuleId};

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

/// A compiled `destinations:` section.
#[derive(Debug, Clone)]
pub struct DestPolicy {
    spec: DestPolicySpec,
    allow: Vec<DestPattern>,
    deny: Vec<DestPattern>,
    permitted: Vec<Class>,
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
    ///
    /// The same as [`DestPolicy::prepare`] followed by [`DestPlan::finish`] with
    /// `resolver`.
    pub fn evaluate(
        &self,
        arguments: &serde_json::Value,
        pointers: &[JsonPath],
        literals: &[String],
        resolver: &dyn Resolver,
    ) -> DestOutcome {
        self.prepare(arguments, pointers, literals).finish(resolver)
    }

    /// The destination check of a call up to DNS: extract, canonicalize and check
    /// everything that does not depend on addresses (parsing, schemes, parser
    /// differentials, address hosts, names blocked by name, deny entries that match by
    /// name, an allow list no entry of which can match). Pure: nothing is resolved.
    ///
    /// The names whose verdict depends on their addresses are left pending
    /// ([`DestPlan::hosts_to_resolve`]); [`DestPlan::finish`] completes them.
    // INVARIANT: a name is pending only if no check by name denies it already; a
    // name the policy denies by name (built-in blocked names, deny entries, allow
    // misses) is decided here and never handed to a resolver.
    pub fn prepare(
        &self,
        arguments: &serde_json::Value,
        pointers: &[JsonPath],
        literals: &[String],
    ) -> DestPlan<'_> {
        let found = collect(arguments, pointers, literals, self.spec.scan);
        let mut plan = DestPlan {
            policy: self,
            items: Vec::with_capacity(found.len().min(MAX_DESTINATIONS)),
            hosts: Vec::new(),
            limit: None,
        };
        for f in found.iter().take(MAX_DESTINATIONS) {
            let item = self.start_one(f);
            if let Some(p) = &item.pending
                && !plan.hosts.contains(&p.host)
            {
                plan.hosts.push(p.host.clone());
            }
            plan.items.push(item);
        }
        if found.len() > MAX_DESTINATIONS {
            plan.limit = Some(Violation {
                rule: RuleId::destinations("limit"),
                message: format!(
                    "the call names {} destinations; at most {MAX_DESTINATIONS} are checked, so it is denied",
                    found.len()
                ),
                destination: plan.items.len().saturating_sub(1),
            });
        }
        plan
    }

    /// Check one destination as far as it can be checked without DNS; complete it
    /// unless its verdict depends on the addresses of a name.
    fn start_one(&self, f: &Found<'_>) -> Item {
        let mut item = Item {
            dest: Destination {
                input: shown_input(&f.input),
                pointer: f.pointer.clone(),
                scheme: String::new(),
                host: String::new(),
                port: None,
                addresses: Vec::new(),
                classes: Vec::new(),
            },
            violations: Vec::new(),
            pending: None,
        };
        let where_ = || match &f.pointer {
            Some(p) => format!("the argument at `{}`", safe(&p.to_pointer())),
            None => "a declared destination".to_string(),
        };
        if let Some(kind) = f.not_a_string {
            item.deny(
                RuleId::destinations("unparseable"),
                format!(
                    "{} is a destination but holds {kind}, not a URL or host",
                    where_()
                ),
            );
            return item;
        }
        let c = match canonicalize(&f.input) {
            Ok(c) => c,
            Err(e) => {
                item.deny(
                    RuleId::destinations("unparseable"),
                    format!(
                        "`{}` in {} cannot be checked: {e}",
                        short(&item.dest.input),
                        where_()
                    ),
                );
                return item;
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
        item.dest.scheme = scheme;
        item.dest.port = port;
        // The host moves into the destination; `ip` remembers an address host.
        let ip = match host {
            Some(Host::Ip(a)) => {
                item.dest.host = match a {
                    IpAddr::V4(v4) => ipv4_text(v4),
                    IpAddr::V6(_) => a.to_string(),
                };
                Some(a)
            }
            Some(Host::Name(n)) => {
                item.dest.host = n;
                None
            }
            None => None,
        };
        if let Some(other) = &mismatch {
            let message = format!(
                "`{w}` is ambiguous: a WHATWG URL parser reads host `{}`{}, an RFC 3986 parser reads {other}",
                safe(&item.dest.host),
                item.dest
                    .port
                    .map(|p| format!(" port {p}"))
                    .unwrap_or_default()
            );
            item.deny(RuleId::destinations("parser-mismatch"), message);
        }
        let web = matches!(item.dest.scheme.as_str(), "" | "http" | "https");
        if !web
            && !self.allow.iter().any(|p| {
                p.scheme.as_deref() == Some(item.dest.scheme.as_str())
                    && p.matches_scheme_port(&item.dest, Mode::Strict)
            })
        {
            let message = format!(
                "`{w}` uses the scheme `{}`; only http and https are allowed unless an allow entry names the scheme",
                safe(&item.dest.scheme)
            );
            item.deny(RuleId::destinations("scheme"), message);
        }
        if item.dest.host.is_empty() {
            if web {
                item.deny(
                    RuleId::destinations("unparseable"),
                    format!("`{w}` has no host"),
                );
            }
            return item;
        }
        // Classes, from the address or (for names) from the name or the resolver.
        let mut blocked: Vec<(Class, String)> = Vec::new();
        match ip {
            Some(a) => item.dest.addresses.push(a),
            None => {
                if let Some((class, what)) = name_hit(&item.dest.host) {
                    item.dest.classes.push(class);
                    if !self.permits(class) {
                        blocked.push((
                            class,
                            format!("`{w}` is {what}, {}", classes::phrase(class)),
                        ));
                    }
                } else if self.needs_resolution(&item.dest) && !self.logical_host(&item.dest) {
                    item.pending = Some(Pending {
                        host: item.dest.host.clone(),
                        origin: w.origin,
                        input: f.input.to_string(),
                        blocked,
                    });
                    return item;
                }
            }
        }
        self.complete(&mut item, &w, ip, blocked);
        item
    }

    /// Give a pending name its resolver's answer and complete its check.
    fn resolved(&self, item: &mut Item, answer: Result<Vec<IpAddr>, ResolveError>) {
        let Some(p) = item.pending.take() else {
            return;
        };
        let w = Written {
            cell: std::cell::OnceCell::new(),
            origin: p.origin,
            input: &p.input,
        };
        match answer {
            Ok(addrs) if !addrs.is_empty() => item.dest.addresses = addrs,
            Ok(_) => item.deny(
                RuleId::destinations("unresolvable"),
                format!(
                    "`{w}` cannot be checked: `{}` does not resolve",
                    safe(&item.dest.host)
                ),
            ),
            Err(e) => item.deny(
                RuleId::destinations("unresolvable"),
                format!("`{w}` cannot be checked: {e}"),
            ),
        }
        self.complete(item, &w, None, p.blocked);
    }

    /// The checks on a destination whose addresses are known (or not needed): every
    /// address classified, deny entries, the allow list.
    fn complete(
        &self,
        item: &mut Item,
        w: &Written<'_>,
        ip: Option<IpAddr>,
        mut blocked: Vec<(Class, String)>,
    ) {
        let dest = &mut item.dest;
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
            item.violations
                .push((RuleId::destination_blocked(class.name()), message));
        }
        for (i, p) in self.deny.iter().enumerate() {
            if p.matches_mode(&item.dest, Mode::Loose) {
                item.violations.push((
                    RuleId::destination_deny(i),
                    format!("`{w}` matches the deny entry `{}`", safe(p.as_str())),
                ));
            }
        }
        if !self
            .allow
            .iter()
            .any(|p| p.matches_mode(&item.dest, Mode::Strict))
        {
            let message = if self.allow.is_empty() {
                format!("`{w}` is not allowed: `destinations.allow` is empty, so no destination is")
            } else {
                format!("`{w}` matches no entry of `destinations.allow`")
            };
            item.deny(RuleId::destinations("allow"), message);
        }
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

/// One destination of a [`DestPlan`]: checked, or waiting for its name's addresses.
#[derive(Debug, Clone)]
struct Item {
    dest: Destination,
    /// `(rule, message)`, in the order the checks found them.
    violations: Vec<(RuleId, String)>,
    pending: Option<Pending>,
}

impl Item {
    fn deny(&mut self, rule: RuleId, message: String) {
        self.violations.push((rule, message));
    }
}

/// What the check of a name needs once its addresses are known.
#[derive(Debug, Clone)]
struct Pending {
    /// The canonical name to resolve (`dest.host`).
    host: String,
    /// How to show the origin as written, for messages, and the input it is in.
    origin: canon::Origin,
    input: String,
    blocked: Vec<(Class, String)>,
}

/// The destination check of one call, done up to DNS ([`DestPolicy::prepare`]).
///
/// Either finish it with the addresses of [`DestPlan::hosts_to_resolve`]
/// ([`DestPlan::finish`]), refuse some names without resolving them
/// ([`DestPlan::refuse`]), or, when the call is denied for another reason, end it
/// without any lookup ([`DestPlan::finish_unresolved`]).
#[derive(Debug, Clone)]
pub struct DestPlan<'p> {
    policy: &'p DestPolicy,
    items: Vec<Item>,
    /// Distinct canonical names of the pending items, in order of appearance.
    hosts: Vec<String>,
    limit: Option<Violation>,
}

impl DestPlan<'_> {
    /// The canonical host names (lowercase ASCII, no trailing dot) whose addresses
    /// [`DestPlan::finish`] needs; empty when nothing waits for DNS.
    pub fn hosts_to_resolve(&self) -> &[String] {
        &self.hosts
    }

    /// Whether a check already failed (before any DNS).
    pub fn denies(&self) -> bool {
        self.limit.is_some() || self.items.iter().any(|i| !i.violations.is_empty())
    }

    /// The destinations found so far, each with whether it waits for its addresses.
    pub fn destinations(&self) -> impl Iterator<Item = (&Destination, bool)> {
        self.items.iter().map(|i| (&i.dest, i.pending.is_some()))
    }

    /// Deny the pending destination at `index` (in [`DestPlan::destinations`] order)
    /// without resolving its name — e.g. because the name carries data a detector
    /// found. Its name leaves [`DestPlan::hosts_to_resolve`] unless another pending
    /// destination has the same name (which then fails the same way: the caller
    /// refuses each destination whose name carries data). Does nothing for a
    /// destination that is not pending.
    pub fn refuse(&mut self, index: usize, rule: RuleId, message: String) {
        let Some(item) = self.items.get_mut(index) else {
            return;
        };
        let Some(p) = item.pending.take() else {
            return;
        };
        item.deny(rule, message);
        if !self
            .items
            .iter()
            .any(|i| i.pending.as_ref().is_some_and(|q| q.host == p.host))
        {
            self.hosts.retain(|h| *h != p.host);
        }
    }

    /// Complete the check with the addresses `resolver` gives for
    /// [`DestPlan::hosts_to_resolve`] (each asked once). A name it does not answer
    /// (an error, or no address) is unresolvable, which denies.
    pub fn finish(mut self, resolver: &dyn Resolver) -> DestOutcome {
        let mut answers: Vec<(String, Result<Vec<IpAddr>, ResolveError>)> = Vec::new();
        for h in &self.hosts {
            answers.push((h.clone(), resolver.resolve(h)));
        }
        let policy = self.policy;
        for item in &mut self.items {
            let Some(p) = &item.pending else {
                continue;
            };
            let answer = answers.iter().find(|(h, _)| *h == p.host).map_or_else(
                || {
                    Err(ResolveError::NotFound {
                        host: p.host.clone(),
                    })
                },
                |(_, r)| r.clone(),
            );
            policy.resolved(item, answer);
        }
        self.outcome()
    }

    /// End the check without resolving anything: pending names are left without
    /// addresses and without a verdict of their own.
    ///
    /// Only for a call that is denied anyway (by another check or another
    /// destination): a pending name is not an allowed one. A caller that drops some
    /// reasons of such a decision must not read what is left as an allow — decide
    /// with the checks it wants instead (`conductor_core::prepare_data_only`).
    pub fn finish_unresolved(mut self) -> DestOutcome {
        for item in &mut self.items {
            item.pending = None;
        }
        self.outcome()
    }

    fn outcome(self) -> DestOutcome {
        let mut out = DestOutcome {
            destinations: Vec::with_capacity(self.items.len()),
            violations: Vec::new(),
        };
        for (index, item) in self.items.into_iter().enumerate() {
            for (rule, message) in item.violations {
                out.violations.push(Violation {
                    rule,
                    message,
                    destination: index,
                });
            }
            out.destinations.push(item.dest);
        }
        out.violations.extend(self.limit);
        out
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
/// bare `user:password@host`), bounded like [`short`] (the core cuts what it shows, after
/// scrubbing).
fn shown_input(input: &str) -> String {
    let mut s = bounded(input).to_string();
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
    s
}

/// An input for messages, made safe and bounded at [`canon::MAX_INPUT`] bytes — a
/// bound, not a display cut: the decision core scrubs what people read first and then
/// cuts it far shorter, so the end of this bound is never shown.
fn short(input: &str) -> String {
    safe(bounded(input))
}

/// `input` up to [`canon::MAX_INPUT`] bytes (at a character boundary).
fn bounded(input: &str) -> &str {
    let mut cut = input.len().min(canon::MAX_INPUT);
    while !input.is_char_boundary(cut) {
        cut -= 1;
    }
    input.get(..cut).unwrap_or("")
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
