//! The gateway file (`gateway.yaml`), version 1: read strictly, every problem at once.
//!
//! Reading is the policy's: YAML → spanned tree (hard budgets) → `Raw*` structs (unknown
//! keys recorded, never fatal to their parent) → validated [`GatewayConfig`]. Problems of
//! all three steps are collected and rendered as `file:line:col` with a caret.
//!
//! INVARIANT: secrets are references (`${env:NAME}`, `${file:PATH}`) resolved here, once;
//! a resolved value is kept only in [`Secret`], whose `Debug` never shows it, and no
//! message of this module ever contains one.
//!
//! INVARIANT: a non-loopback listener needs `tls` and a real authentication method
//! (`api_keys`, `jwt`, `mtls`); `auth: {none: …}` is refused on anything but loopback.
//! There is no anonymous or optional authentication.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::yaml::de::{self, Entries, Lenient, Sp};
use crate::yaml::error::{LoadError, Problem};
use crate::yaml::node::{self, Loc};

/// The listener when neither the file nor `--listen` names one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// A value resolved from a reference; never displayed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that sends it (an upstream request or environment).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

pub use crate::auth::jwks::{JwksSource, JwksTimings};
pub use crate::auth::jwt::JwtConfig;
pub use crate::auth::mtls::{AgentFrom, MtlsConfig, TlsConfig};
pub use crate::upstream_tls::UpstreamTls;

/// Upstream credentials of one agent (`servers.<id>.agents.<agent>`): headers replace
/// the server's headers of the same name; environment variables add to the server's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentCredentials {
    pub headers: Vec<(String, Secret)>,
    pub env: BTreeMap<String, Secret>,
}

/// How one upstream is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A stdio server, spawned per agent (never shared between agents).
    Stdio {
        command: Vec<String>,
        env: BTreeMap<String, Secret>,
        cwd: Option<PathBuf>,
    },
    /// A Streamable HTTP server.
    Http {
        url: url::Url,
        headers: Vec<(String, Secret)>,
        /// `tls:` of an `https` server (its CA, the gateway's client certificate).
        tls: Option<UpstreamTls>,
    },
}

/// One upstream MCP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub id: String,
    pub transport: Transport,
    /// How long one request may wait for the upstream's answer.
    pub timeout: Duration,
    /// `sandbox:` (stdio servers only): run it in Conductor's sandbox, like
    /// `conductor wrap --sandbox` (docs/sandbox.md).
    pub sandbox: Option<Sandbox>,
    /// Per-agent upstream credentials (optional).
    pub agents: BTreeMap<String, AgentCredentials>,
}

impl Server {
    /// The transport as `agent` uses it: the server's credentials, with the agent's own
    /// (if configured) in place of the server's.
    pub fn transport_for(&self, agent: &str) -> Transport {
        let Some(creds) = self.agents.get(agent) else {
            return self.transport.clone();
        };
        match &self.transport {
            Transport::Stdio { command, env, cwd } => {
                let mut env = env.clone();
                env.extend(creds.env.iter().map(|(k, v)| (k.clone(), v.clone())));
                Transport::Stdio {
                    command: command.clone(),
                    env,
                    cwd: cwd.clone(),
                }
            }
            Transport::Http { url, headers, tls } => {
                let mut out: Vec<(String, Secret)> = headers
                    .iter()
                    .filter(|(k, _)| !creds.headers.iter().any(|(a, _)| a.eq_ignore_ascii_case(k)))
                    .cloned()
                    .collect();
                out.extend(creds.headers.iter().cloned());
                Transport::Http {
                    url: url.clone(),
                    headers: out,
                    tls: tls.clone(),
                }
            }
        }
    }
}

/// One API key: the SHA-256 of the key, and the agent it authenticates.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub agent: String,
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ApiKey({}, {})",
            self.agent,
            crate::auth::keys::key_id(&self.sha256)
        )
    }
}

/// The verified authentication methods (at least one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthMethods {
    pub api_keys: Vec<ApiKey>,
    pub jwt: Option<JwtConfig>,
    pub mtls: Option<MtlsConfig>,
}

/// What a sandboxed stdio server may see beyond the defaults (`sandbox: true` is all
/// empty): absolute paths read-only and read-write, variables passed by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sandbox {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub env: Vec<String>,
}

/// How agents prove who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Every request acts for this one agent (loopback listeners only).
    None { agent: String },
    /// Agents prove who they are.
    Verified(Box<AuthMethods>),
}

/// The AuthZEN decision API's section (`authzen:`): who may ask for whom.
///
/// INVARIANT: a caller may ask about itself, and about another agent only when the
/// gateway file names that agent (or `"*"`) in the caller's `may_evaluate_for`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthzenConfig {
    /// Authenticated agent id → the agents it may ask decisions for.
    pub callers: BTreeMap<String, Vec<Speaks>>,
}

/// One entry of a caller's `may_evaluate_for`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Speaks {
    /// `"*"`: any agent.
    Any,
    /// This agent.
    Agent(String),
}

impl AuthzenConfig {
    /// Whether `caller` (authenticated) may ask for decisions on behalf of `agent`.
    pub fn may_evaluate_for(&self, caller: &str, agent: &str) -> bool {
        caller == agent
            || self.callers.get(caller).is_some_and(|l| {
                l.iter().any(|s| match s {
                    Speaks::Any => true,
                    Speaks::Agent(a) => a == agent,
                })
            })
    }
}

/// The `approvals:` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalsConfig {
    /// Where new pending approvals are announced.
    pub webhook: Option<Webhook>,
}

/// A webhook told about every new pending approval (a signed POST).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// An `http` or `https` URL (https: verified like an upstream's, see `tls`).
    pub url: url::Url,
    /// `tls:` of an `https` receiver (its CA, the gateway's client certificate).
    pub tls: Option<UpstreamTls>,
    /// The HMAC-SHA256 key of the signature (from a reference; never shown).
    pub secret: Secret,
    /// Attempts after the first failed one (default 3, at most 10).
    pub retries: u32,
    /// Per attempt (default 5 s, at most 60 s).
    pub timeout: Duration,
}

/// Limits of the HTTP front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub max_sessions: usize,
    /// Open sessions of one agent at most: one agent cannot take every session (nor
    /// spawn a stdio server per session without bound).
    pub max_sessions_per_agent: usize,
    /// A session unused for this long is closed.
    pub session_idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(120),
            max_sessions: 10_000,
            max_sessions_per_agent: 2_500,
            session_idle: Duration::from_secs(3600),
        }
    }
}

/// A validated gateway file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub public_url: Option<url::Url>,
    /// `Origin` values accepted (exact, ASCII case-insensitive); a request without
    /// `Origin` is not from a browser and is accepted.
    pub origins: Vec<String>,
    /// In file order.
    pub servers: Vec<Server>,
    pub auth: Auth,
    /// TLS on the listener.
    pub tls: Option<TlsConfig>,
    pub limits: Limits,
    /// The decision API's callers (`authzen:`).
    pub authzen: AuthzenConfig,
    /// The people who may decide held calls (`approvers:`), through the approvals API
    /// and the console. Never agents: their credentials are another kind.
    pub approvers: conductor_console::Approvers,
    /// What happens around held calls (`approvals:`): the webhook on new ones.
    pub approvals: ApprovalsConfig,
    /// `sha256:<hex>` of the file's bytes.
    pub sha256: String,
}

impl GatewayConfig {
    pub fn server(&self, id: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.id == id)
    }
}

// ------------------------------------------------------------------------------------
// Raw structs
// ------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    #[serde(default)]
    version: Option<Sp<Lenient<u64>>>,
    #[serde(default)]
    listen: Option<Sp<Lenient<String>>>,
    #[serde(default)]
    public_url: Option<Sp<Lenient<String>>>,
    #[serde(default)]
    origins: Lenient<Vec<Sp<String>>>,
    #[serde(default)]
    tls: Option<Sp<Lenient<RawTls>>>,
    #[serde(default)]
    servers: Lenient<Entries<Sp<Lenient<RawServer>>>>,
    #[serde(default)]
    auth: Option<Sp<Lenient<RawAuth>>>,
    #[serde(default)]
    limits: Lenient<RawLimits>,
    #[serde(default)]
    authzen: Lenient<RawAuthzen>,
    #[serde(default)]
    approvers: Option<Sp<Lenient<RawApprovers>>>,
    #[serde(default)]
    approvals: Lenient<RawApprovals>,
}

type RawApprovers = Vec<Sp<Lenient<RawApprover>>>;

/// One approver account: the shape of the console's approvers file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprover {
    name: Sp<Lenient<String>>,
    sha256: Sp<Lenient<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovals {
    #[serde(default)]
    webhook: Option<Sp<Lenient<RawWebhook>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: Sp<Lenient<String>>,
    secret: Sp<Lenient<String>>,
    #[serde(default)]
    tls: Option<Sp<Lenient<RawUpstreamTls>>>,
    #[serde(default)]
    retries: Option<Sp<Lenient<u64>>>,
    #[serde(default)]
    timeout_seconds: Option<Sp<Lenient<u64>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthzen {
    #[serde(default)]
    callers: Lenient<Entries<Sp<Lenient<RawCaller>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaller {
    may_evaluate_for: Sp<Lenient<Vec<Sp<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default)]
    command: Option<Sp<Lenient<Vec<Sp<String>>>>>,
    #[serde(default)]
    env: Lenient<Entries<Sp<Lenient<String>>>>,
    #[serde(default)]
    cwd: Option<Sp<Lenient<String>>>,
    #[serde(default)]
    url: Option<Sp<Lenient<String>>>,
    #[serde(default)]
    headers: Lenient<Entries<Sp<Lenient<String>>>>,
    #[serde(default)]
    timeout_seconds: Option<Sp<Lenient<u64>>>,
    #[serde(default)]
    agents: Lenient<Entries<Sp<Lenient<RawAgentCreds>>>>,
    sandbox: Option<Sp<Lenient<RawSandbox>>>,
    #[serde(default)]
    tls: Option<Sp<Lenient<RawUpstreamTls>>>,
}

/// `servers.<id>.tls` of an `https` server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamTls {
    #[serde(default)]
    ca: Option<Sp<Lenient<String>>>,
    #[serde(default)]
    cert: Option<Sp<Lenient<String>>>,
    #[serde(default)]
    key: Option<Sp<Lenient<String>>>,
}

/// `sandbox: true|false` or `sandbox: {read: [...], write: [...], env: [...]}`.
#[derive(Debug)]
enum RawSandbox {
    On(bool),
    Profile(RawSandboxProfile),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgentCreds {
    #[serde(default)]
    headers: Lenient<Entries<Sp<Lenient<String>>>>,
    #[serde(default)]
    env: Lenient<Entries<Sp<Lenient<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Sp<Lenient<String>>,
    key: Sp<Lenient<String>>,
    #[serde(default)]
    client_ca: Option<Sp<Lenient<String>>>,
    #[serde(default)]
    crl: Lenient<Vec<Sp<String>>>,
}

type Words = Vec<Sp<String>>;
type RawApiKeys = Vec<Sp<Lenient<RawApiKey>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    agent: Sp<Lenient<String>>,
    sha256: Sp<Lenient<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    issuer: Sp<Lenient<String>>,
    #[serde(default)]
    audience: Option<Sp<Lenient<String>>>,
    jwks: Sp<Lenient<String>>,
    #[serde(default)]
    agent_claim: Option<Sp<Lenient<String>>>,
    #[serde(default)]
    leeway_seconds: Option<Sp<Lenient<u64>>>,
    #[serde(default)]
    refresh_seconds: Option<Sp<Lenient<u64>>>,
    #[serde(default)]
    max_stale_seconds: Option<Sp<Lenient<u64>>>,
    #[serde(default)]
    authorization_servers: Lenient<Vec<Sp<String>>>,
    #[serde(default)]
    required_scopes: Lenient<Entries<Sp<Lenient<Words>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMtls {
    agent_from: Sp<Lenient<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSandboxProfile {
    #[serde(default)]
    read: Lenient<Vec<Sp<String>>>,
    #[serde(default)]
    write: Lenient<Vec<Sp<String>>>,
    #[serde(default)]
    env: Lenient<Vec<Sp<String>>>,
}

impl<'de> Deserialize<'de> for RawSandbox {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawSandbox;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`true`, `false` or a mapping with `read`, `write` and `env`")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<RawSandbox, E> {
                Ok(RawSandbox::On(b))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<RawSandbox, A::Error> {
                RawSandboxProfile::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(RawSandbox::Profile)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default)]
    none: Option<Sp<Lenient<RawNone>>>,
    #[serde(default)]
    api_keys: Option<Sp<Lenient<RawApiKeys>>>,
    #[serde(default)]
    jwt: Option<Sp<Lenient<RawJwt>>>,
    #[serde(default)]
    mtls: Option<Sp<Lenient<RawMtls>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNone {
    agent: Sp<Lenient<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default)]
    max_body_bytes: Option<Sp<Lenient<u64>>>,
    #[serde(default)]
    request_timeout_seconds: Option<Sp<Lenient<u64>>>,
    #[serde(default)]
    max_sessions: Option<Sp<Lenient<u64>>>,
    #[serde(default)]
    max_sessions_per_agent: Option<Sp<Lenient<u64>>>,
    #[serde(default)]
    session_idle_seconds: Option<Sp<Lenient<u64>>>,
}

// ------------------------------------------------------------------------------------
// Loading
// ------------------------------------------------------------------------------------

/// Where `${file:…}` references are read from, and how `${env:…}` ones are looked up.
pub trait Secrets {
    fn env(&self, name: &str) -> Option<String>;
    fn file(&self, path: &Path) -> std::io::Result<String>;
    /// Where a path the file names is (relative paths: relative to the file's folder).
    fn path(&self, path: &Path) -> PathBuf {
        path.to_path_buf()
    }
}

/// The process environment and the file system; relative paths are relative to `base`.
#[derive(Debug, Clone)]
pub struct SystemSecrets {
    pub base: Option<PathBuf>,
}

impl Secrets for SystemSecrets {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn path(&self, path: &Path) -> PathBuf {
        match &self.base {
            Some(b) if path.is_relative() => b.join(path),
            _ => path.to_path_buf(),
        }
    }
    fn file(&self, path: &Path) -> std::io::Result<String> {
        let p = match &self.base {
            Some(b) if path.is_relative() => b.join(path),
            _ => path.to_path_buf(),
        };
        let s = std::fs::read_to_string(p)?;
        // A secret file ends with a newline more often than not; the newline is not part of it.
        Ok(s.strip_suffix('\n')
            .map(|s| s.strip_suffix('\r').unwrap_or(s))
            .unwrap_or(&s)
            .to_string())
    }
}

/// Load and validate a gateway file from disk.
pub fn load_file(path: &Path) -> Result<GatewayConfig, LoadError> {
    let name = path.display().to_string();
    let text = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            return Err(LoadError::new(
                &name,
                "",
                vec![Problem::at(None, format!("cannot read the file: {e}"))],
            ));
        }
    };
    if text.len() > node::MAX_FILE_BYTES {
        return Err(LoadError::new(
            &name,
            "",
            vec![Problem::at(
                None,
                format!(
                    "the file is {} bytes, more than the limit of {} bytes",
                    text.len(),
                    node::MAX_FILE_BYTES
                ),
            )],
        ));
    }
    let Ok(source) = String::from_utf8(text) else {
        return Err(LoadError::new(
            &name,
            "",
            vec![Problem::at(None, "the file is not valid utf-8")],
        ));
    };
    let secrets = SystemSecrets {
        base: path.parent().map(Path::to_path_buf),
    };
    load_str(&source, &name, &secrets)
}

/// Load and validate a gateway file's text.
pub fn load_str(
    source: &str,
    name: &str,
    secrets: &dyn Secrets,
) -> Result<GatewayConfig, LoadError> {
    let root = match node::parse(source) {
        Ok(r) => r,
        Err(e) => {
            return Err(LoadError::new(
                name,
                source,
                vec![Problem::at(e.loc, e.message)],
            ));
        }
    };
    let (raw, de_problems) = de::collect::<RawGateway>(&root);
    let mut problems: Vec<Problem> = de_problems
        .into_iter()
        .map(|p| Problem::at(p.loc, p.message))
        .collect();
    let Some(raw) = raw else {
        return Err(LoadError::new(name, source, problems));
    };
    let sha256 = {
        use sha2::Digest;
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(source.as_bytes()))
        )
    };
    let mut v = Validator {
        problems: &mut problems,
        secrets,
    };
    let built = v.build(raw, sha256);
    if problems.is_empty()
        && let Some(cfg) = built
    {
        return Ok(cfg);
    }
    if problems.is_empty() {
        problems.push(Problem::at(None, "the gateway file could not be read"));
    }
    Err(LoadError::new(name, source, problems))
}

struct Validator<'a> {
    problems: &'a mut Vec<Problem>,
    secrets: &'a dyn Secrets,
}

/// Whether `s` can be an agent id.
pub fn valid_agent_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control)
}

/// Whether `s` is a server id (`[a-z0-9_-]+`).
pub fn valid_server_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Validator<'_> {
    fn err(&mut self, loc: Loc, message: impl Into<String>) {
        self.problems.push(Problem::at(Some(loc), message));
    }

    fn err_help(&mut self, loc: Loc, message: impl Into<String>, help: impl Into<String>) {
        self.problems
            .push(Problem::at(Some(loc), message).help(help));
    }

    fn build(&mut self, raw: RawGateway, sha256: String) -> Option<GatewayConfig> {
        let top = raw.version.as_ref().map(|v| v.loc).unwrap_or(Loc {
            line: 1,
            col: 1,
            offset: 0,
            len: 0,
        });
        match raw.version.as_ref().map(|v| v.value.0) {
            Some(Some(1)) => {}
            Some(Some(n)) => self.err(
                top,
                format!("unsupported version `{n}`; this conductor reads version 1"),
            ),
            Some(None) => {}
            None => self.err(
                top,
                "missing key `version`: the file must start with `version: 1`",
            ),
        }
        let listen = match &raw.listen {
            None => DEFAULT_LISTEN.parse::<SocketAddr>().ok(),
            Some(sp) => match &sp.value.0 {
                None => None,
                Some(s) => match s.parse::<SocketAddr>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        self.err(
                            sp.loc,
                            format!("`{s}` is not an address and port such as `127.0.0.1:8080`"),
                        );
                        None
                    }
                },
            },
        };
        let tls = raw
            .tls
            .as_ref()
            .and_then(|t| self.tls(t.loc, t.value.0.as_ref()?));
        let listen_loc = raw.listen.as_ref().map(|l| l.loc);
        // INVARIANT: beyond loopback, only over TLS.
        if let (Some(a), Some(loc)) = (listen, listen_loc)
            && !a.ip().is_loopback()
            && raw.tls.is_none()
        {
            self.err_help(
                loc,
                format!("`{a}` is not a loopback address: a non-loopback listener needs `tls`"),
                "add `tls: {cert: …, key: …}`, or listen on `127.0.0.1` or `[::1]`",
            );
        }
        let public_url = raw.public_url.as_ref().and_then(|sp| {
            let s = sp.value.0.as_ref()?;
            match url::Url::parse(s) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
                _ => {
                    self.err(sp.loc, format!("`{s}` is not an http(s) url"));
                    None
                }
            }
        });
        let mut origins = Vec::new();
        for o in raw.origins.0.iter().flatten() {
            match url::Url::parse(&o.value) {
                Ok(u)
                    if matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && u.path() == "/"
                        && !o.value.ends_with('/') =>
                {
                    origins.push(o.value.to_ascii_lowercase());
                }
                _ => self.err_help(
                    o.loc,
                    format!("`{}` is not an origin", o.value),
                    "an origin is a scheme, a host and an optional port, such as `http://localhost:3000`",
                ),
            }
        }
        let mut servers = Vec::new();
        for (id, server) in raw.servers.0.iter().flat_map(|e| e.0.iter()) {
            if !valid_server_id(&id.value) {
                self.err(
                    id.loc,
                    format!(
                        "invalid server id `{}`: server ids match `[a-z0-9_-]+`",
                        id.value
                    ),
                );
            }
            if let Some(raw) = &server.value.0
                && let Some(s) = self.server(&id.value, server.loc, raw)
            {
                servers.push(s);
            }
        }
        if raw.servers.0.as_ref().is_some_and(|e| e.0.is_empty()) {
            self.err(top, "`servers` names no server");
        }
        let auth = match &raw.auth {
            None => {
                self.err_help(
                    top,
                    "missing key `auth`: the gateway serves no anonymous agent",
                    "on a loopback listener, `auth: {none: {agent: ID}}` serves one fixed agent",
                );
                None
            }
            Some(sp) => match &sp.value.0 {
                None => None,
                Some(a) => self.auth(sp.loc, a, listen, public_url.as_ref(), tls.as_ref()),
            },
        };
        if let Some(Auth::Verified(m)) = &auth
            && m.mtls.is_some()
            && tls.as_ref().is_none_or(|t| t.client_ca.is_none())
            && let Some(a) = &raw.auth
        {
            self.err(
                a.loc,
                "`auth.mtls` needs `tls.client_ca`: the certificates agents present are checked against it",
            );
        }
        let limits = self.limits(raw.limits.0.as_ref());
        let authzen = self.authzen(raw.authzen.0.as_ref());
        let approvers = self.approvers(raw.approvers.as_ref());
        let approvals = self.approvals(raw.approvals.0.as_ref());
        Some(GatewayConfig {
            listen: listen?,
            public_url,
            origins,
            servers,
            auth: auth?,
            tls,
            limits,
            authzen,
            approvers: approvers?,
            approvals,
            sha256,
        })
    }

    /// `approvers:` — validated by the console's own account rules (one definition of
    /// an approver for the console and the API).
    fn approvers(
        &mut self,
        raw: Option<&Sp<Lenient<RawApprovers>>>,
    ) -> Option<conductor_console::Approvers> {
        let Some(sp) = raw else {
            return Some(conductor_console::Approvers::default());
        };
        let mut list: Vec<conductor_console::Approver> = Vec::new();
        let mut ok = true;
        for a in sp.value.0.iter().flatten() {
            let Some(r) = &a.value.0 else {
                ok = false;
                continue;
            };
            let (Some(name), Some(hash)) = (r.name.value.0.as_ref(), r.sha256.value.0.as_ref())
            else {
                ok = false;
                continue;
            };
            match conductor_console::Approver::new(name, hash) {
                Ok(acc) if list.iter().any(|e| e.name == acc.name) => {
                    self.err(r.name.loc, format!("approver `{name}` is named twice"));
                    ok = false;
                }
                Ok(acc) => list.push(acc),
                Err(m) => {
                    let loc = if m.contains("`sha256`") {
                        r.sha256.loc
                    } else {
                        r.name.loc
                    };
                    self.err_help(
                        loc,
                        m,
                        "`conductor console --new-key NAME` prints a key and the line to add",
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        match conductor_console::Approvers::new(list) {
            Ok(a) => Some(a),
            Err(m) => {
                self.err(sp.loc, m);
                None
            }
        }
    }

    fn approvals(&mut self, raw: Option<&RawApprovals>) -> ApprovalsConfig {
        let mut out = ApprovalsConfig::default();
        let Some(w) = raw.and_then(|r| r.webhook.as_ref()) else {
            return out;
        };
        let Some(w) = &w.value.0 else { return out };
        let url = w
            .url
            .value
            .0
            .as_ref()
            .and_then(|s| match url::Url::parse(s) {
                Ok(u)
                    if matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && u.username().is_empty()
                        && u.password().is_none() =>
                {
                    Some(u)
                }
                _ => {
                    self.err(
                        w.url.loc,
                        format!(
                            "`{}` is not an http(s) url without credentials",
                            conductor_types::display::shown(s, 200)
                        ),
                    );
                    None
                }
            });
        // INVARIANT: the signing key is a reference, never written in the file itself.
        let secret = w.secret.value.0.as_ref().and_then(|s| {
            let t = s.trim();
            if !(t.starts_with("${env:") || t.starts_with("${file:")) || !t.ends_with('}') {
                self.err_help(
                    w.secret.loc,
                    "the webhook `secret` must be a reference, not the secret itself",
                    "write `secret: \"${env:NAME}\"` or `secret: \"${file:PATH}\"`",
                );
                return None;
            }
            let v = self.secret(w.secret.loc, t)?;
            if v.0.len() < 16 {
                self.err(
                    w.secret.loc,
                    "the webhook secret must be at least 16 bytes (32 random bytes are best)",
                );
                return None;
            }
            Some(v)
        });
        let mut num =
            |v: &Option<Sp<Lenient<u64>>>, what: &str, min: u64, max: u64, default: u64| {
                let Some(sp) = v.as_ref() else { return default };
                let Some(n) = sp.value.0 else { return default };
                if n < min || n > max {
                    self.err(
                        sp.loc,
                        format!(
                            "`approvals.webhook.{what}` must be between {min} and {max}, not `{n}`"
                        ),
                    );
                }
                n.clamp(min, max)
            };
        let retries = num(&w.retries, "retries", 0, 10, 3);
        let timeout = num(&w.timeout_seconds, "timeout_seconds", 1, 60, 5);
        // `tls:` as for an https upstream (a private CA, a client certificate).
        let tls = match (&w.tls, &url) {
            (None, _) => Some(None),
            (Some(t), Some(u)) if u.scheme() != "https" => {
                self.err_help(
                    t.loc,
                    "the webhook is not an `https` url: `tls` is for https receivers",
                    "write the url as `https://…`",
                );
                None
            }
            (Some(t), _) => t
                .value
                .0
                .as_ref()
                .and_then(|raw| self.upstream_tls(t.loc, raw))
                .map(Some),
        };
        if let (Some(url), Some(secret), Some(tls)) = (url, secret, tls) {
            out.webhook = Some(Webhook {
                url,
                tls,
                secret,
                retries: u32::try_from(retries).unwrap_or(3),
                timeout: Duration::from_secs(timeout),
            });
        }
        out
    }

    fn auth(
        &mut self,
        loc: Loc,
        a: &RawAuth,
        listen: Option<SocketAddr>,
        public_url: Option<&url::Url>,
        tls: Option<&TlsConfig>,
    ) -> Option<Auth> {
        if let Some(none) = &a.none {
            if let Some(other) = [
                a.api_keys.as_ref().map(|s| s.loc),
                a.jwt.as_ref().map(|s| s.loc),
                a.mtls.as_ref().map(|s| s.loc),
            ]
            .into_iter()
            .flatten()
            .next()
            {
                self.err(
                    other,
                    "`auth.none` cannot be combined with another method: it serves its agent to whoever connects",
                );
                return None;
            }
            let agent = none.value.0.as_ref()?.agent.clone();
            let id = agent.value.0.clone()?;
            if !valid_agent_id(&id) {
                self.err(agent.loc, "the agent id must be a non-empty string");
                return None;
            }
            // INVARIANT: `none` serves a fixed agent to whoever connects: loopback only.
            if listen.is_some_and(|l| !l.ip().is_loopback()) {
                self.err(
                    none.loc,
                    "`auth.none` serves one fixed agent to anyone who connects: it is refused on a non-loopback listener",
                );
                return None;
            }
            return Some(Auth::None { agent: id });
        }
        if a.api_keys.is_none() && a.jwt.is_none() && a.mtls.is_none() {
            self.err(loc, "`auth` names no method");
            return None;
        }
        let mut m = AuthMethods::default();
        let mut ok = true;
        if let Some(keys) = &a.api_keys {
            for k in keys.value.0.iter().flatten() {
                let Some(raw) = &k.value.0 else {
                    ok = false;
                    continue;
                };
                let agent = raw.agent.value.0.clone();
                let hash = raw.sha256.value.0.clone();
                let (Some(agent), Some(hash)) = (agent, hash) else {
                    ok = false;
                    continue;
                };
                if !valid_agent_id(&agent) {
                    self.err(raw.agent.loc, "the agent id must be a non-empty string");
                    ok = false;
                    continue;
                }
                let mut sha = [0u8; 32];
                if hash.len() != 64 || hex::decode_to_slice(&hash, &mut sha).is_err() {
                    self.err_help(
                        raw.sha256.loc,
                        "`sha256` must be 64 hex digits: the SHA-256 of the key, not the key",
                        "`conductor keys new --agent ID` prints a key and the line to add",
                    );
                    ok = false;
                    continue;
                }
                if m.api_keys.iter().any(|e| e.sha256 == sha) {
                    self.err(raw.sha256.loc, "this key hash is listed twice");
                    ok = false;
                    continue;
                }
                m.api_keys.push(ApiKey { agent, sha256: sha });
            }
        }
        if let Some(j) = &a.jwt {
            match j.value.0.as_ref().and_then(|r| self.jwt(r, public_url)) {
                Some(cfg) => m.jwt = Some(cfg),
                None => ok = false,
            }
        }
        if let Some(t) = &a.mtls {
            let from = t.value.0.as_ref().and_then(|r| {
                let s = r.agent_from.value.0.as_ref()?;
                let f = AgentFrom::parse(s);
                if f.is_none() {
                    self.err(
                        r.agent_from.loc,
                        format!("`{s}` is not one of `subject.cn`, `san.dns`, `san.uri`"),
                    );
                }
                f
            });
            match from {
                Some(agent_from) => m.mtls = Some(MtlsConfig { agent_from }),
                None => ok = false,
            }
        }
        let _ = tls;
        ok.then(|| Auth::Verified(Box::new(m)))
    }

    fn jwt(&mut self, r: &RawJwt, public_url: Option<&url::Url>) -> Option<JwtConfig> {
        let issuer = r.issuer.value.0.clone()?;
        if url::Url::parse(&issuer).map_or(true, |u| !matches!(u.scheme(), "https" | "http")) {
            self.err(r.issuer.loc, format!("`{issuer}` is not an http(s) url"));
            return None;
        }
        let audience = match &r.audience {
            Some(a) => a.value.0.clone()?,
            None => match public_url {
                Some(u) => crate::auth::prm::default_audience(u.as_str()),
                None => {
                    self.err_help(
                        r.issuer.loc,
                        "`auth.jwt` needs `audience` (this gateway's resource url) or a top-level `public_url`",
                        "tokens must be for this gateway (RFC 8707): `audience: \"https://gw.example.com/mcp\"`",
                    );
                    return None;
                }
            },
        };
        let jwks_text = r.jwks.value.0.clone()?;
        let jwks = match url::Url::parse(&jwks_text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                JwksSource::Url(u)
            }
            Ok(u) if u.scheme() == "file" => match u.to_file_path() {
                Ok(p) => JwksSource::File(p),
                Err(()) => {
                    self.err(r.jwks.loc, format!("`{jwks_text}` is not a file url"));
                    return None;
                }
            },
            Ok(_) => {
                self.err(
                    r.jwks.loc,
                    format!("`{jwks_text}` is not an http(s) url or a file"),
                );
                return None;
            }
            Err(_) => JwksSource::File(self.secrets.path(Path::new(&jwks_text))),
        };
        let agent_claim = match &r.agent_claim {
            Some(c) => c.value.0.clone()?,
            None => "sub".to_string(),
        };
        let mut secs =
            |v: &Option<Sp<Lenient<u64>>>, what: &str, min: u64, max: u64, default: u64| {
                let Some(sp) = v else {
                    return Some(Duration::from_secs(default));
                };
                let n = sp.value.0?;
                if n < min || n > max {
                    self.err(
                        sp.loc,
                        format!("`auth.jwt.{what}` must be between {min} and {max}, not `{n}`"),
                    );
                    return None;
                }
                Some(Duration::from_secs(n))
            };
        let leeway = secs(&r.leeway_seconds, "leeway_seconds", 0, 300, 30)?;
        let refresh = secs(&r.refresh_seconds, "refresh_seconds", 1, 86_400, 300)?;
        let max_stale = secs(
            &r.max_stale_seconds,
            "max_stale_seconds",
            1,
            7 * 86_400,
            3600,
        )?;
        let mut authorization_servers: Vec<String> = r
            .authorization_servers
            .0
            .iter()
            .flatten()
            .map(|s| s.value.clone())
            .collect();
        if authorization_servers.is_empty() {
            authorization_servers.push(issuer.clone());
        }
        let mut required_scopes = BTreeMap::new();
        for (k, v) in r.required_scopes.0.iter().flat_map(|e| e.0.iter()) {
            let key_ok = k.value == "*"
                || k.value
                    .split_once('.')
                    .map_or(valid_server_id(&k.value), |(s, t)| {
                        valid_server_id(s) && !t.is_empty()
                    });
            if !key_ok {
                self.err(
                    k.loc,
                    format!("`{}` is not `*`, a server id or `<server>.<tool>`", k.value),
                );
                continue;
            }
            let scopes: Vec<String> = v
                .value
                .0
                .iter()
                .flatten()
                .map(|s| s.value.clone())
                .collect();
            if scopes.iter().any(|s| {
                s.is_empty()
                    || s.bytes()
                        .any(|b| b <= b' ' || b == b'"' || b == b'\\' || b >= 0x7f)
            }) {
                self.err(
                    v.loc,
                    "a scope is a non-empty printable ascii word (RFC 6749 §3.3)",
                );
                continue;
            }
            required_scopes.insert(k.value.clone(), scopes);
        }
        Some(JwtConfig {
            issuer,
            audience,
            jwks,
            agent_claim,
            leeway,
            timings: JwksTimings {
                refresh,
                max_stale,
                min_refetch: Duration::from_secs(10).min(refresh),
            },
            authorization_servers,
            required_scopes,
        })
    }

    fn tls(&mut self, loc: Loc, r: &RawTls) -> Option<TlsConfig> {
        let path = |v: &Sp<Lenient<String>>| v.value.0.as_ref().map(PathBuf::from);
        let cert = path(&r.cert)?;
        let key = path(&r.key)?;
        let client_ca = match &r.client_ca {
            Some(c) => Some(path(c)?),
            None => None,
        };
        let crl: Vec<PathBuf> = r
            .crl
            .0
            .iter()
            .flatten()
            .map(|s| PathBuf::from(&s.value))
            .collect();
        if !crl.is_empty() && client_ca.is_none() {
            self.err(loc, "`tls.crl` needs `tls.client_ca`");
            return None;
        }
        let cfg = TlsConfig {
            cert: self.secrets.path(&cert),
            key: self.secrets.path(&key),
            client_ca: client_ca.map(|c| self.secrets.path(&c)),
            crl: crl.iter().map(|c| self.secrets.path(c)).collect(),
        };
        // Loaded once here so that every problem is reported with its place; `serve`
        // loads it again when it starts.
        if let Err(e) = crate::auth::mtls::server_config(&cfg) {
            self.err(loc, e.to_string());
            return None;
        }
        Some(cfg)
    }

    /// `tls:` of an `https` server: paths relative to the gateway file, loaded here so
    /// that a problem is reported with its place (and loaded again per connection).
    fn upstream_tls(&mut self, loc: Loc, r: &RawUpstreamTls) -> Option<UpstreamTls> {
        let path = |v: &Option<Sp<Lenient<String>>>| {
            v.as_ref()
                .and_then(|s| s.value.0.as_ref())
                .map(|p| self.secrets.path(Path::new(p)))
        };
        let tls = UpstreamTls {
            ca: path(&r.ca),
            cert: path(&r.cert),
            key: path(&r.key),
        };
        if tls.cert.is_some() != tls.key.is_some() {
            self.err_help(
                loc,
                "`tls.cert` and `tls.key` go together",
                "name the gateway's client certificate and its key, or neither",
            );
            return None;
        }
        if tls == UpstreamTls::default() {
            self.err_help(
                loc,
                "`tls` names nothing",
                "`ca: FILE` to trust a private CA, `cert:`/`key:` for a client certificate",
            );
            return None;
        }
        if let Err(e) = crate::upstream_tls::client_config(&tls) {
            self.err(loc, e.to_string());
            return None;
        }
        Some(tls)
    }

    fn authzen(&mut self, raw: Option<&RawAuthzen>) -> AuthzenConfig {
        let mut out = AuthzenConfig::default();
        let Some(raw) = raw else { return out };
        let valid = |s: &str| !s.is_empty() && !s.chars().any(char::is_control);
        for (caller, entry) in raw.callers.0.iter().flat_map(|e| e.0.iter()) {
            if !valid(&caller.value) {
                self.err(caller.loc, "a caller id must be a non-empty string");
                continue;
            }
            let Some(entry) = &entry.value.0 else {
                continue;
            };
            let Some(list) = &entry.may_evaluate_for.value.0 else {
                continue;
            };
            let mut speaks = Vec::new();
            for a in list {
                if a.value == "*" {
                    speaks.push(Speaks::Any);
                } else if valid(&a.value) {
                    speaks.push(Speaks::Agent(a.value.clone()));
                } else {
                    self.err_help(
                        a.loc,
                        "an agent id must be a non-empty string",
                        "name agent ids of the policy, or `\"*\"` for any agent",
                    );
                }
            }
            out.callers.insert(caller.value.clone(), speaks);
        }
        out
    }

    fn limits(&mut self, raw: Option<&RawLimits>) -> Limits {
        let mut l = Limits::default();
        let Some(raw) = raw else { return l };
        let mut num = |v: &Option<Sp<Lenient<u64>>>, what: &str, min: u64, max: u64| {
            let sp = v.as_ref()?;
            let n = sp.value.0?;
            if n < min || n > max {
                self.err(
                    sp.loc,
                    format!("`limits.{what}` must be between {min} and {max}, not `{n}`"),
                );
                return None;
            }
            Some(n)
        };
        if let Some(n) = num(
            &raw.max_body_bytes,
            "max_body_bytes",
            1024,
            256 * 1024 * 1024,
        ) {
            l.max_body_bytes = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = num(
            &raw.request_timeout_seconds,
            "request_timeout_seconds",
            1,
            86_400,
        ) {
            l.request_timeout = Duration::from_secs(n);
        }
        if let Some(n) = num(&raw.max_sessions, "max_sessions", 1, 10_000_000) {
            l.max_sessions = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = num(
            &raw.max_sessions_per_agent,
            "max_sessions_per_agent",
            1,
            10_000_000,
        ) {
            l.max_sessions_per_agent = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = num(
            &raw.session_idle_seconds,
            "session_idle_seconds",
            1,
            7 * 86_400,
        ) {
            l.session_idle = Duration::from_secs(n);
        }
        l
    }

    fn server(&mut self, id: &str, loc: Loc, raw: &RawServer) -> Option<Server> {
        let timeout = match &raw.timeout_seconds {
            Some(sp) => match sp.value.0 {
                Some(n) if (1..=86_400).contains(&n) => Duration::from_secs(n),
                Some(n) => {
                    self.err(
                        sp.loc,
                        format!("`timeout_seconds` must be between 1 and 86400, not `{n}`"),
                    );
                    return None;
                }
                None => return None,
            },
            None => Duration::from_secs(60),
        };
        let transport = match (&raw.command, &raw.url) {
            (Some(_), Some(u)) => {
                self.err(
                    u.loc,
                    format!("server `{id}` has both `command` and `url`; name one"),
                );
                return None;
            }
            (None, None) => {
                self.err_help(
                    loc,
                    format!("server `{id}` has neither `command` nor `url`"),
                    "`command: [program, args…]` for a stdio server, `url: http://…` for a Streamable HTTP one",
                );
                return None;
            }
            (Some(cmd), None) => {
                if let Some(h) = raw.headers.0.as_ref().and_then(|h| h.0.first()) {
                    self.err(h.0.loc, "`headers` are for `url` servers");
                }
                if let Some(t) = &raw.tls {
                    self.err(t.loc, "`tls` is for `url` servers");
                }
                let words: Vec<String> = cmd
                    .value
                    .0
                    .as_ref()?
                    .iter()
                    .map(|w| w.value.clone())
                    .collect();
                if words.first().is_none_or(String::is_empty) {
                    self.err(cmd.loc, "`command` needs at least the program to run");
                    return None;
                }
                let env = self.env(&raw.env);
                let cwd = raw
                    .cwd
                    .as_ref()
                    .and_then(|c| c.value.0.clone())
                    .map(PathBuf::from);
                Transport::Stdio {
                    command: words,
                    env,
                    cwd,
                }
            }
            (None, Some(u)) => {
                if let Some(e) = raw.env.0.as_ref().and_then(|h| h.0.first()) {
                    self.err(e.0.loc, "`env` is for `command` servers");
                }
                let s = u.value.0.as_ref()?;
                let url = match url::Url::parse(s) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                        url
                    }
                    _ => {
                        self.err(u.loc, format!("`{s}` is not an http(s) url"));
                        return None;
                    }
                };
                if !url.username().is_empty() || url.password().is_some() {
                    self.err_help(
                        u.loc,
                        "the url carries credentials",
                        "put them in `headers` as a reference, such as `Authorization: \"Bearer ${env:TOKEN}\"`",
                    );
                    return None;
                }
                let headers = self.headers(&raw.headers);
                let tls = match &raw.tls {
                    None => None,
                    Some(t) if url.scheme() != "https" => {
                        self.err_help(
                            t.loc,
                            format!(
                                "server `{id}` is not an `https` url: `tls` is for https servers"
                            ),
                            "write the url as `https://…`",
                        );
                        return None;
                    }
                    Some(t) => Some(self.upstream_tls(t.loc, t.value.0.as_ref()?)?),
                };
                Transport::Http { url, headers, tls }
            }
        };
        let mut agents = BTreeMap::new();
        for (agent, creds) in raw.agents.0.iter().flat_map(|e| e.0.iter()) {
            let Some(c) = &creds.value.0 else { continue };
            let mut out = AgentCredentials::default();
            match &transport {
                Transport::Http { .. } => {
                    if let Some(e) = c.env.0.as_ref().and_then(|h| h.0.first()) {
                        self.err(e.0.loc, "`env` is for `command` servers");
                    }
                    out.headers = self.headers(&c.headers);
                }
                Transport::Stdio { .. } => {
                    if let Some(h) = c.headers.0.as_ref().and_then(|h| h.0.first()) {
                        self.err(h.0.loc, "`headers` are for `url` servers");
                    }
                    out.env = self.env(&c.env);
                }
            }
            agents.insert(agent.value.clone(), out);
        }
        let sandbox = self.sandbox(id, raw, &transport)?;
        Some(Server {
            id: id.to_string(),
            transport,
            timeout,
            agents,
            sandbox,
        })
    }

    /// `sandbox:` of a server: only for stdio servers, absolute paths, variable names.
    /// `None` (the outer) when it is invalid (the problem is recorded).
    #[expect(clippy::option_option, reason = "invalid / absent / present")]
    fn sandbox(
        &mut self,
        id: &str,
        raw: &RawServer,
        transport: &Transport,
    ) -> Option<Option<Sandbox>> {
        let Some(sp) = &raw.sandbox else {
            return Some(None);
        };
        let profile = match sp.value.0.as_ref()? {
            RawSandbox::On(false) => return Some(None),
            RawSandbox::On(true) => None,
            RawSandbox::Profile(p) => Some(p),
        };
        if let Transport::Http { .. } = transport {
            self.err(
                sp.loc,
                format!("server `{id}` is a `url` server: `sandbox` is for `command` servers"),
            );
            return None;
        }
        if raw.cwd.is_some() {
            self.err(
                sp.loc,
                format!("server `{id}`: `cwd` cannot be combined with `sandbox` yet"),
            );
            return None;
        }
        let mut out = Sandbox::default();
        let mut ok = true;
        if let Some(p) = profile {
            for (list, into) in [(&p.read, &mut out.read), (&p.write, &mut out.write)] {
                for v in list.0.iter().flatten() {
                    if Path::new(&v.value).is_absolute() {
                        into.push(PathBuf::from(&v.value));
                    } else {
                        self.err(
                            v.loc,
                            format!("the sandbox path `{}` is not absolute", v.value),
                        );
                        ok = false;
                    }
                }
            }
            for v in p.env.0.iter().flatten() {
                if v.value.is_empty() || v.value.contains(['=', '\0']) {
                    self.err(
                        v.loc,
                        format!("`{}` is not an environment variable name", v.value),
                    );
                    ok = false;
                } else {
                    out.env.push(v.value.clone());
                }
            }
        }
        ok.then_some(Some(out))
    }

    fn env(&mut self, e: &Lenient<Entries<Sp<Lenient<String>>>>) -> BTreeMap<String, Secret> {
        let mut env = BTreeMap::new();
        for (k, v) in e.0.iter().flat_map(|e| e.0.iter()) {
            if k.value.is_empty() || k.value.contains(['=', '\0']) {
                self.err(
                    k.loc,
                    format!("`{}` is not an environment variable name", k.value),
                );
                continue;
            }
            if let Some(s) = v.value.0.as_ref().and_then(|s| self.secret(v.loc, s)) {
                env.insert(k.value.clone(), s);
            }
        }
        env
    }

    fn headers(&mut self, h: &Lenient<Entries<Sp<Lenient<String>>>>) -> Vec<(String, Secret)> {
        let mut headers = Vec::new();
        for (k, v) in h.0.iter().flat_map(|e| e.0.iter()) {
            let name_ok = !k.value.is_empty()
                && k.value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !name_ok {
                self.err(k.loc, format!("`{}` is not an http header name", k.value));
                continue;
            }
            let lower = k.value.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "host"
                    | "content-length"
                    | "content-type"
                    | "transfer-encoding"
                    | "connection"
                    | "mcp-session-id"
                    | "mcp-protocol-version"
                    | "mcp-method"
                    | "mcp-name"
            ) {
                self.err(k.loc, format!("the gateway sets `{}` itself", k.value));
                continue;
            }
            if let Some(s) = v.value.0.as_ref().and_then(|s| self.secret(v.loc, s)) {
                if s.0.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
                    self.err(
                        v.loc,
                        format!("the value of header `{}` has control characters", k.value),
                    );
                    continue;
                }
                headers.push((k.value.clone(), s));
            }
        }
        headers
    }

    /// Resolve the references in `s`. Problems name the reference, never its value.
    fn secret(&mut self, loc: Loc, s: &str) -> Option<Secret> {
        match expand(s, self.secrets) {
            Ok(v) => Some(Secret(v)),
            Err(m) => {
                self.err_help(
                    loc,
                    m,
                    "references are `${env:NAME}` or `${file:PATH}`; write `$${` for a literal `${`",
                );
                None
            }
        }
    }
}

/// Expand `${env:NAME}` and `${file:PATH}` references (`$${` is a literal `${`).
pub fn expand(s: &str, secrets: &dyn Secrets) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(rest.get(..i).unwrap_or(""));
        let after = rest.get(i..).unwrap_or("");
        if let Some(r) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = r;
            continue;
        }
        let Some(body) = after.strip_prefix("${") else {
            out.push('$');
            rest = after.get(1..).unwrap_or("");
            continue;
        };
        let Some(end) = body.find('}') else {
            return Err("a `${` reference is not closed with `}`".into());
        };
        let reference = body.get(..end).unwrap_or("");
        rest = body.get(end + 1..).unwrap_or("");
        if let Some(name) = reference.strip_prefix("env:") {
            match secrets.env(name) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("environment variable `{name}` is not set")),
            }
        } else if let Some(path) = reference.strip_prefix("file:") {
            match secrets.file(Path::new(path)) {
                Ok(v) => out.push_str(&v),
                Err(e) => {
                    return Err(format!(
                        "cannot read the secret file `{path}`: {}",
                        e.kind().to_string().to_lowercase()
                    ));
                }
            }
        } else {
            return Err(format!(
                "unknown reference `${{{reference}}}`: use `${{env:NAME}}` or `${{file:PATH}}`"
            ));
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;
    impl Secrets for Fake {
        fn env(&self, name: &str) -> Option<String> {
            (name == "TOKEN").then(|| "s3cr3t-value".to_string())
        }
        fn file(&self, path: &Path) -> std::io::Result<String> {
            if path == Path::new("key.txt") {
                Ok("filesecret".into())
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::NotFound))
            }
        }
    }

    fn load(s: &str) -> Result<GatewayConfig, LoadError> {
        load_str(s, "gateway.yaml", &Fake)
    }

    #[test]
    fn a_full_file_loads() {
        let cfg = load(
            "version: 1\nlisten: \"127.0.0.1:9000\"\norigins: [\"http://localhost:3000\"]\n\
             servers:\n  fetch:\n    command: [uvx, mcp-server-fetch]\n    env: {K: \"${file:key.txt}\"}\n\
             \x20 wiki:\n    url: \"http://127.0.0.1:3001/mcp\"\n    headers: {Authorization: \"Bearer ${env:TOKEN}\"}\n\
             auth: {none: {agent: desk}}\n",
        )
        .unwrap();
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.servers.len(), 2);
        let Transport::Http { headers, .. } = &cfg.servers[1].transport else {
            panic!()
        };
        assert_eq!(headers[0].1.expose(), "Bearer s3cr3t-value");
        assert!(!format!("{cfg:?}").contains("s3cr3t"), "a secret in Debug");
        assert_eq!(
            cfg.auth,
            Auth::None {
                agent: "desk".into()
            }
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let e = load(
            "version: 2\nlisten: \"0.0.0.0:80\"\nbogus: 1\nservers:\n  Bad.Id:\n    command: [x]\n  w:\n    url: \"http://h/\"\n    headers: {A: \"${env:MISSING}\"}\n    extra: 1\nauth: {none: {agent: desk}}\n",
        )
        .unwrap_err();
        let r = e.render(false);
        for needle in [
            "unsupported version `2`",
            "`0.0.0.0:80` is not a loopback address",
            "unknown key `bogus`",
            "invalid server id `Bad.Id`",
            "environment variable `MISSING` is not set",
            "unknown key `extra`",
            "serves one fixed agent to anyone who connects",
            "gateway.yaml:1:10",
        ] {
            assert!(r.contains(needle), "`{needle}` missing from:\n{r}");
        }
        assert!(e.problems().len() >= 7, "{r}");
    }

    #[test]
    fn secret_values_never_appear_in_problems() {
        // The value resolves but the header name is invalid: the message names the key.
        let e = load(
            "version: 1\nservers:\n  w:\n    url: \"http://h/\"\n    headers: {\"Bad Name\": \"${env:TOKEN}\", X: \"a\\nb${env:TOKEN}\"}\nauth: {none: {agent: a}}\n",
        )
        .unwrap_err();
        let r = e.render(false);
        assert!(!r.contains("s3cr3t"), "{r}");
        assert!(r.contains("control characters"), "{r}");
    }

    #[test]
    fn references_expand() {
        assert_eq!(
            expand("a ${env:TOKEN} b", &Fake).unwrap(),
            "a s3cr3t-value b"
        );
        assert_eq!(
            expand("$${env:TOKEN} $5", &Fake).unwrap(),
            "${env:TOKEN} $5"
        );
        assert!(expand("${env:TOKEN", &Fake).is_err());
        assert!(expand("${vault:x}", &Fake).is_err());
        assert!(
            expand("${file:nope}", &Fake)
                .unwrap_err()
                .contains("`nope`")
        );
    }

    #[test]
    fn the_authzen_section_says_who_may_ask_for_whom() {
        let cfg = load(
            "version: 1\nservers: {a: {command: [x]}}\nauth: {none: {agent: desk}}\n\
             authzen:\n  callers:\n    desk: {may_evaluate_for: [research-bot]}\n    ops: {may_evaluate_for: [\"*\"]}\n",
        )
        .unwrap();
        let a = &cfg.authzen;
        assert!(a.may_evaluate_for("desk", "desk"), "itself");
        assert!(a.may_evaluate_for("desk", "research-bot"));
        assert!(!a.may_evaluate_for("desk", "deploy-bot"));
        assert!(a.may_evaluate_for("ops", "anyone"));
        assert!(!a.may_evaluate_for("stranger", "desk"));
        // Without the section: only itself.
        let cfg = load("version: 1\nservers: {a: {command: [x]}}\nauth: {none: {agent: desk}}\n")
            .unwrap();
        assert!(!cfg.authzen.may_evaluate_for("desk", "research-bot"));
    }

    #[test]
    fn the_authzen_section_is_strict() {
        let r = load(
            "version: 1\nservers: {a: {command: [x]}}\nauth: {none: {agent: desk}}\n\
             authzen:\n  enabled: true\n  callers:\n    desk: {may_evaluate: [x]}\n    ops: {may_evaluate_for: [\"\"]}\n    bad: {may_evaluate_for: x}\n",
        )
        .unwrap_err()
        .render(false);
        for needle in [
            "unknown key `enabled`",
            "unknown key `may_evaluate`",
            "an agent id must be a non-empty string",
            "gateway.yaml:5:",
        ] {
            assert!(r.contains(needle), "`{needle}` missing from:\n{r}");
        }
    }

    #[test]
    fn missing_auth_and_both_transports_are_refused() {
        let r = load("version: 1\nservers:\n  a:\n    command: [x]\n    url: \"http://h/\"\n")
            .unwrap_err()
            .render(false);
        assert!(r.contains("both `command` and `url`"), "{r}");
        assert!(r.contains("missing key `auth`"), "{r}");
    }

    #[test]
    fn sandbox_on_a_stdio_server_is_read_strictly() {
        let c = load(
            "version: 1\nservers:\n  a:\n    command: [x]\n    sandbox: {read: [/srv/data], write: [/srv/out], env: [TOKEN]}\n  b:\n    command: [y]\n    sandbox: true\n  c:\n    command: [z]\n    sandbox: false\nauth: {none: {agent: d}}\n",
        )
        .unwrap();
        assert_eq!(
            c.server("a").unwrap().sandbox,
            Some(Sandbox {
                read: vec!["/srv/data".into()],
                write: vec!["/srv/out".into()],
                env: vec!["TOKEN".into()],
            })
        );
        assert_eq!(c.server("b").unwrap().sandbox, Some(Sandbox::default()));
        assert_eq!(c.server("c").unwrap().sandbox, None);

        // Every problem at once, at its place: an unknown key, a relative path, a bad
        // name, a sandboxed url server, a value of the wrong type.
        let r = load(
            "version: 1\nservers:\n  a:\n    command: [x]\n    sandbox: {reads: [/srv]}\n  b:\n    command: [y]\n    sandbox: {read: [rel/dir], env: [\"A=B\"]}\n  w:\n    url: \"http://h/\"\n    sandbox: true\n  v:\n    command: [v]\n    sandbox: yes-please\nauth: {none: {agent: d}}\n",
        )
        .unwrap_err()
        .render(false);
        for needle in [
            "reads",
            "the sandbox path `rel/dir` is not absolute",
            "`A=B` is not an environment variable name",
            "`sandbox` is for `command` servers",
            "gateway.yaml:5:",
            "gateway.yaml:14:",
        ] {
            assert!(r.contains(needle), "`{needle}` not in:\n{r}");
        }
    }
}
