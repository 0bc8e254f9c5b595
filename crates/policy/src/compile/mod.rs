//! Validation and compilation: `RawPolicy` → [`Compiled`], collecting every problem.
//!
//! [`compile`] reads the sections in order, one module each: `data` (levels, labels,
//! detectors), `roles` (rules and their `when:` constraints, `extends`), `agents`
//! (effective rules and their index), `tools` (tool facts), `workflows` and
//! `destinations`. What they share lives here: the problem collector `Cx` with the
//! policy's regex budget, and the file and name helpers.

mod agents;
mod data;
mod destinations;
mod roles;
mod tools;
mod workflows;

pub use roles::check_pointer;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::de::{Entries, Lenient, Sp};
use crate::error::Problem;
use crate::glob::Glob;
use crate::model::{Compiled, ToolFact};
use crate::node::Loc;
use crate::raw::RawPolicy;

use agents::compile_agents;
use data::compile_data;
use destinations::compile_destinations;
use roles::{check_extends, compile_roles};
use tools::compile_tools;
use workflows::compile_workflows;

/// Longest regex source accepted in a policy (`when: {regex}`, `match:`).
pub const MAX_REGEX_LEN: usize = 4096;
/// Compiled-size limit for a policy regex (bytes of compiled program).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Regexes that fit in this compiled size are charged this much to the budget;
/// larger ones are charged [`REGEX_SIZE_LIMIT`].
const REGEX_SMALL: usize = 64 << 10;
/// Total compiled-regex budget of one policy (with the charges above: 512 small
/// regexes, or 32 large ones), so a policy cannot exhaust memory with regexes.
pub const REGEX_BUDGET: usize = 32 << 20;
/// Largest gitleaks rules file accepted.
pub const MAX_GITLEAKS_BYTES: u64 = 2 * 1024 * 1024;

/// The default data levels, lowest first.
pub const DEFAULT_LEVELS: [&str; 4] = ["public", "internal", "confidential", "secret"];

struct Cx<'a> {
    problems: Vec<Problem>,
    base_dir: Option<&'a Path>,
    /// What is left of [`REGEX_BUDGET`].
    regex_budget: usize,
    /// The files besides the policy that compiling it read.
    files: Vec<std::path::PathBuf>,
    /// Each referenced file read, as the policy names it, with the SHA-256 of the bytes
    /// compiled.
    file_digests: Vec<(String, [u8; 32])>,
}

impl Cx<'_> {
    /// Compile a policy regex, charging the policy's regex budget.
    fn regex(&mut self, src: &str, anchored: bool) -> Result<regex::Regex, String> {
        if self.regex_budget == 0 {
            return Err(format!(
                "too many regexes: a policy's regexes may compile to at most {} MiB in total",
                REGEX_BUDGET >> 20
            ));
        }
        let limit = REGEX_SIZE_LIMIT.min(self.regex_budget);
        let (re, charge) = match compile_regex_limited(src, anchored, REGEX_SMALL.min(limit)) {
            Ok(re) => (re, REGEX_SMALL),
            Err(_) => (compile_regex_limited(src, anchored, limit)?, limit),
        };
        self.regex_budget = self.regex_budget.saturating_sub(charge);
        Ok(re)
    }

    fn err(&mut self, loc: Loc, message: impl Into<String>) {
        self.problems.push(Problem::at(Some(loc), message));
    }
    fn err_help(&mut self, loc: Loc, message: impl Into<String>, help: impl Into<String>) {
        self.problems
            .push(Problem::at(Some(loc), message).help(help));
    }
}

/// Validate and compile. Returns every problem when there is any.
pub fn compile(
    raw: RawPolicy,
    root: Loc,
    base_dir: Option<&Path>,
) -> Result<Compiled, Vec<Problem>> {
    let mut cx = Cx {
        problems: Vec::new(),
        base_dir,
        regex_budget: REGEX_BUDGET,
        files: Vec::new(),
        file_digests: Vec::new(),
    };

    match &raw.version {
        None => cx.err_help(
            root,
            "missing `version`",
            "add `version: 1` at the top of the policy",
        ),
        Some(v) => {
            if v.value.as_u64() != Some(1) {
                cx.err_help(
                    v.loc,
                    format!("unsupported policy version `{}`", v.value),
                    "this conductor reads policy files with `version: 1`",
                );
            }
        }
    }

    let data = compile_data(&mut cx, raw.data.0.as_ref());
    let roles = entries(&raw.roles);
    let (rules, role_rules) = compile_roles(&mut cx, &roles);
    let role_names = all_names(&raw.roles);
    check_extends(&mut cx, &roles, &role_names);
    let levels: Vec<String> = match raw.data.0.as_ref().and_then(|d| d.value.levels.as_ref()) {
        Some(l) => l.value.iter().map(|s| s.value.clone()).collect(),
        None => DEFAULT_LEVELS.iter().map(|s| (*s).to_string()).collect(),
    };
    let agents = compile_agents(
        &mut cx,
        &raw,
        &roles,
        &role_names,
        &role_rules,
        &rules,
        &levels,
    );
    let (tools, tools_exact, tools_glob) = compile_tools(&mut cx, &raw);
    let mut tools_glob_by_server: HashMap<String, Vec<u32>> = HashMap::new();
    let mut tools_glob_any = Vec::new();
    for (pos, &i) in tools_glob.iter().enumerate() {
        let pos = u32::try_from(pos).unwrap_or(u32::MAX);
        match tools.get(i).and_then(|f: &ToolFact| f.pattern.server()) {
            Some(server) => tools_glob_by_server
                .entry(server.to_string())
                .or_default()
                .push(pos),
            None => tools_glob_any.push(pos),
        }
    }
    let workflows = compile_workflows(&mut cx, &raw, &role_names);
    let destinations = compile_destinations(&mut cx, raw.destinations.0.as_ref());
    let mut pass_methods = Vec::new();
    if let Some(m) = raw.methods.0.as_ref() {
        for g in &m.value.pass {
            match Glob::new(&g.value) {
                Ok(glob) => pass_methods.push(glob),
                Err(e) => cx.err(g.loc, format!("invalid method glob: {e}")),
            }
        }
    }

    let mut label_ttl = None;
    if let Some(ttl) = raw
        .sessions
        .0
        .as_ref()
        .and_then(|s| s.value.label_ttl.as_ref())
    {
        match parse_duration(&ttl.value) {
            Some(d) if !d.is_zero() => label_ttl = Some(d),
            _ => cx.err_help(
                ttl.loc,
                format!("invalid duration `{}`", ttl.value),
                "write a number with a unit: `90s`, `30m`, `24h` or `7d`",
            ),
        }
    }

    let mut approval_ttl = None;
    if let Some(ttl) = raw
        .sessions
        .0
        .as_ref()
        .and_then(|s| s.value.approval_ttl.as_ref())
    {
        match parse_duration(&ttl.value) {
            Some(d) if !d.is_zero() => approval_ttl = Some(d),
            _ => cx.err_help(
                ttl.loc,
                format!("invalid duration `{}`", ttl.value),
                "write a number with a unit: `90s`, `30m`, `24h` or `7d`",
            ),
        }
    }

    let approve_in_client = raw
        .sessions
        .0
        .as_ref()
        .and_then(|s| s.value.approve_in_client.as_ref())
        .is_some_and(|b| b.value);

    if !cx.problems.is_empty() {
        return Err(cx.problems);
    }
    let (Some(data), Some(destinations)) = (data, destinations) else {
        // INVARIANT: a section that did not compile always recorded a problem;
        // this branch only guards against a bug in that bookkeeping.
        return Err(vec![Problem::at(
            Some(root),
            "the policy could not be compiled",
        )]);
    };
    Ok(Compiled {
        agents,
        rules,
        tools_exact,
        tools_glob_by_server,
        tools_glob_any,
        tools_glob,
        tools,
        workflows,
        destinations,
        data,
        pass_methods,
        label_ttl,
        approval_ttl,
        approve_in_client,
        files: cx.files,
        file_digests: cx.file_digests,
    })
}

/// `90s`, `30m`, `24h`, `7d` → a duration.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(secs))
}

/// Every key of a lenient mapping section, including entries whose body did not
/// read (their problem is already reported; naming them is not another problem).
fn all_names<T>(section: &Lenient<Entries<Lenient<T>>>) -> HashSet<&str> {
    section
        .0
        .iter()
        .flat_map(|e| e.0.iter())
        .map(|(k, _)| k.value.as_str())
        .collect()
}

/// The readable entries of a lenient mapping section.
fn entries<T>(section: &Lenient<Entries<Lenient<T>>>) -> Vec<(&Sp<String>, &T)> {
    section
        .0
        .iter()
        .flat_map(|e| e.0.iter())
        .filter_map(|(k, v)| v.0.as_ref().map(|v| (k, v)))
        .collect()
}

fn check_name(cx: &mut Cx<'_>, what: &str, name: &Sp<String>) {
    if name.value.trim().is_empty() {
        cx.err(name.loc, format!("{what} name cannot be empty"));
    }
}

/// Read a whole file, refusing files larger than `limit` bytes.
pub fn read_limited(path: &Path, limit: u64) -> Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| io_message(&e))?;
    let mut buf = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_message(&e))?;
    if buf.len() as u64 > limit {
        return Err(format!("the file is larger than {limit} bytes"));
    }
    String::from_utf8(buf).map_err(|_| "the file is not valid utf-8".to_string())
}

pub fn io_message(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
    }
}

/// Compile a policy regex with size limits. `anchored` wraps it as `^(?:…)$`.
fn compile_regex_limited(src: &str, anchored: bool, limit: usize) -> Result<regex::Regex, String> {
    if src.len() > MAX_REGEX_LEN {
        return Err(format!(
            "the regex is {} bytes long, more than the limit of {MAX_REGEX_LEN}",
            src.len()
        ));
    }
    let full = if anchored {
        format!("^(?:{src})$")
    } else {
        src.to_string()
    };
    regex::RegexBuilder::new(&full)
        .size_limit(limit)
        .dfa_size_limit(256 << 10)
        .nest_limit(64)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => {
                format!("the regex `{src}` is too large once compiled")
            }
            regex::Error::Syntax(s) => {
                let first = s
                    .lines()
                    .rev()
                    .find(|l| l.starts_with("error:"))
                    .map_or("syntax error", |l| l.trim_start_matches("error:").trim())
                    .to_string();
                format!("invalid regex `{src}`: {first}")
            }
            _ => format!("invalid regex `{src}`"),
        })
}
