//! Validation and compilation: `RawPolicy` → [`Compiled`], collecting every problem.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use conductor_net::{Class, DestPattern, DestPolicy, DestPolicySpec};
use conductor_scan::{GitleaksRule, LabelSpec, Scanner};
use conductor_types::{JsonPath, RuleId};
use serde_json::Value;

use crate::de::{Entries, Lenient, Sp, one_of};
use crate::error::Problem;
use crate::glob::Glob;
use crate::model::{
    Action, ActionSet, Agent, Compiled, Condition, DataPolicy, EgressRule, Rule, RuleIndex,
    RuleKind, Test, ToolFact, Workflow,
};
use crate::node::Loc;
use crate::raw::{RawConstraint, RawData, RawPolicy, RawRole, RawRule};

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

// ---------------------------------------------------------------- data

fn compile_data(cx: &mut Cx<'_>, raw: Option<&Sp<RawData>>) -> Option<DataPolicy> {
    let Some(raw) = raw else {
        return default_data();
    };
    let raw = &raw.value;
    let mut ok = true;
    let levels: Vec<String> = match &raw.levels {
        None => DEFAULT_LEVELS.iter().map(|s| (*s).to_string()).collect(),
        Some(list) => {
            if list.value.is_empty() {
                cx.err(list.loc, "`levels` cannot be empty");
                ok = false;
            }
            let mut seen = HashSet::new();
            for l in &list.value {
                if l.value.trim().is_empty() {
                    cx.err(l.loc, "a level name cannot be empty");
                    ok = false;
                } else if !seen.insert(l.value.as_str()) {
                    cx.err(l.loc, format!("level `{}` is listed twice", l.value));
                    ok = false;
                }
            }
            list.value.iter().map(|l| l.value.clone()).collect()
        }
    };
    let level_of = |cx: &mut Cx<'_>, s: &Sp<String>| -> Option<usize> {
        let i = levels.iter().position(|l| *l == s.value);
        if i.is_none() {
            cx.err_help(
                s.loc,
                format!("unknown data level `{}`", s.value),
                format!(
                    "the levels are {}",
                    one_of(&levels.iter().map(String::as_str).collect::<Vec<_>>())
                ),
            );
        }
        i
    };

    let mut labels = HashMap::new();
    let mut specs = Vec::new();
    // (label, pattern index) pairs already reported, so the scanner's own report of
    // the same pattern is not repeated.
    let mut reported: HashSet<(String, Option<usize>)> = HashSet::new();
    let mut label_locs: HashMap<String, (Loc, Vec<Loc>)> = HashMap::new();
    for (name, label) in raw.labels.0.iter() {
        check_name(cx, "a label", name);
        let Some(label) = &label.0 else {
            ok = false;
            continue;
        };
        match level_of(cx, &label.level) {
            Some(i) => {
                labels.insert(name.value.clone(), i);
            }
            None => ok = false,
        }
        let mut spec = LabelSpec {
            name: name.value.clone(),
            ..LabelSpec::default()
        };
        if label.detect.is_empty() && label.patterns.is_empty() {
            cx.err_help(
                name.loc,
                format!("label `{}` detects nothing", name.value),
                "give it `detect:` (built-in detectors or a gitleaks file) or `match:` regexes",
            );
            ok = false;
        }
        for d in &label.detect {
            match detect_entry(cx, d) {
                Some(Detect::Builtin(b)) => spec.builtins.push(b),
                Some(Detect::Gitleaks(rules)) => spec.gitleaks.extend(rules),
                None => {
                    ok = false;
                    reported.insert((name.value.clone(), None));
                }
            }
        }
        for (i, p) in label.patterns.iter().enumerate() {
            if let Err(m) = cx.regex(&p.value, false) {
                cx.err(p.loc, m);
                reported.insert((name.value.clone(), Some(i)));
                ok = false;
            }
            spec.patterns.push(p.value.clone());
        }
        label_locs.insert(
            name.value.clone(),
            (name.loc, label.patterns.iter().map(|p| p.loc).collect()),
        );
        specs.push(spec);
    }

    let mut egress = Vec::new();
    for (i, e) in raw.egress.iter().enumerate() {
        let Some(e) = &e.0 else {
            ok = false;
            continue;
        };
        let mut to = Vec::new();
        if e.value.to.value.is_empty() {
            cx.err(e.value.to.loc, "`to` cannot be empty");
            ok = false;
        }
        for t in &e.value.to.value {
            match DestPattern::parse(&t.value) {
                Ok(p) => to.push(p),
                Err(m) => {
                    cx.err(
                        t.loc,
                        format!("invalid destination pattern `{}`: {m}", t.value),
                    );
                    ok = false;
                }
            }
        }
        let max = level_of(cx, &e.value.max);
        match max {
            Some(max) => egress.push(EgressRule {
                id: RuleId::data_egress(i),
                to,
                max,
            }),
            None => ok = false,
        }
    }
    let default_egress = match &raw.default_egress {
        None => Some(0),
        Some(d) => level_of(cx, d),
    };

    let scanner = match Scanner::new(&specs) {
        Ok(s) => Some(s),
        Err(errors) => {
            for e in errors {
                if reported.contains(&(e.label.clone(), e.pattern)) {
                    continue;
                }
                let loc = label_locs.get(&e.label).map(|(l, pats)| match e.pattern {
                    Some(i) => pats.get(i).copied().unwrap_or(*l),
                    None => *l,
                });
                cx.problems.push(Problem::at(
                    loc,
                    format!("label `{}`: {}", e.label, e.message),
                ));
            }
            None
        }
    };
    if !ok {
        return None;
    }
    Some(DataPolicy {
        levels,
        labels,
        egress,
        default_egress: default_egress?,
        scanner: scanner?,
        declared: true,
    })
}

/// The secure default when the policy has no `data:` section: the four default
/// levels, a `credentials` label at `secret` detecting `secrets`, default egress `public`.
pub fn default_data() -> Option<DataPolicy> {
    // Compiled once per process: the scanner is immutable and cheap to clone.
    static SCANNER: std::sync::OnceLock<Option<Scanner>> = std::sync::OnceLock::new();
    let scanner = SCANNER
        .get_or_init(|| {
            let spec = LabelSpec {
                name: "credentials".into(),
                builtins: vec!["secrets".into()],
                ..LabelSpec::default()
            };
            Scanner::new(&[spec]).ok()
        })
        .clone()?;
    Some(DataPolicy {
        levels: DEFAULT_LEVELS.iter().map(|s| (*s).to_string()).collect(),
        labels: HashMap::from([("credentials".to_string(), 3)]),
        egress: Vec::new(),
        default_egress: 0,
        scanner,
        declared: false,
    })
}

enum Detect {
    Builtin(String),
    Gitleaks(Vec<GitleaksRule>),
}

fn detect_entry(cx: &mut Cx<'_>, d: &Sp<Value>) -> Option<Detect> {
    match &d.value {
        Value::String(s) => {
            if conductor_scan::is_builtin(s) {
                Some(Detect::Builtin(s.clone()))
            } else {
                cx.err_help(
                    d.loc,
                    format!("unknown detector `{s}`"),
                    format!(
                        "built-in detectors are {}; a gitleaks rules file is written `{{gitleaks: rules.toml}}`",
                        one_of(conductor_scan::BUILTIN_DETECTORS)
                    ),
                );
                None
            }
        }
        Value::Object(m) if m.len() == 1 && m.contains_key("gitleaks") => {
            let Some(Value::String(path)) = m.get("gitleaks") else {
                cx.err(d.loc, "`gitleaks` must name a file");
                return None;
            };
            let Some(base) = cx.base_dir else {
                cx.err(
                    d.loc,
                    format!(
                        "cannot read gitleaks file `{path}`: this policy was not loaded from a file"
                    ),
                );
                return None;
            };
            // INVARIANT: referenced files stay inside the policy's directory, so a
            // policy cannot make the loader read (and quote in errors) other files.
            let rel = Path::new(path);
            let inside = rel.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            });
            if path.is_empty() || !inside {
                cx.err_help(
                    d.loc,
                    format!("gitleaks file `{path}` must be a relative path inside the policy's directory"),
                    "absolute paths and `..` are not allowed; put the rules file next to the policy",
                );
                return None;
            }
            let full = base.join(rel);
            cx.files.push(full.clone());
            match read_limited(&full, MAX_GITLEAKS_BYTES) {
                Ok(text) => match conductor_scan::parse_gitleaks_toml(&text) {
                    Ok(rules) => Some(Detect::Gitleaks(rules)),
                    Err(e) => {
                        cx.err(d.loc, format!("gitleaks file `{path}`: {e}"));
                        None
                    }
                },
                Err(e) => {
                    cx.err(d.loc, format!("cannot read gitleaks file `{path}`: {e}"));
                    None
                }
            }
        }
        _ => {
            cx.err(
                d.loc,
                "a `detect` entry is a built-in detector name or `{gitleaks: <file>}`",
            );
            None
        }
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

// ---------------------------------------------------------------- roles

/// Compile every role's rules. Returns all rules and, per role name, their indices.
fn compile_roles(
    cx: &mut Cx<'_>,
    roles: &[(&Sp<String>, &RawRole)],
) -> (Vec<Rule>, HashMap<String, Vec<u32>>) {
    let mut rules = Vec::new();
    let mut by_role: HashMap<String, Vec<u32>> = HashMap::new();
    for (name, role) in roles {
        check_name(cx, "a role", name);
        let mut idx = Vec::new();
        for (kind, list) in [
            (RuleKind::Allow, &role.allow),
            (RuleKind::Approve, &role.approve),
            (RuleKind::Deny, &role.deny),
        ] {
            for (i, r) in list.iter().enumerate() {
                let Some(r) = &r.0 else { continue };
                let id = RuleId::role_rule(&name.value, kind.name(), i);
                if let Some(rule) = compile_rule(cx, id, &name.value, kind, r) {
                    idx.push(u32::try_from(rules.len()).unwrap_or(u32::MAX));
                    rules.push(rule);
                }
            }
        }
        by_role.insert(name.value.clone(), idx);
    }
    (rules, by_role)
}

fn compile_rule(
    cx: &mut Cx<'_>,
    id: RuleId,
    role: &str,
    kind: RuleKind,
    raw: &Sp<RawRule>,
) -> Option<Rule> {
    let raw = &raw.value;
    let mut ok = true;
    let mut tools = Vec::new();
    if raw.tools.value.is_empty() {
        cx.err_help(
            raw.tools.loc,
            "`tools` cannot be empty",
            "name tools by qualified name or glob, e.g. `github.*`",
        );
        ok = false;
    }
    for t in &raw.tools.value {
        match Glob::new(&t.value) {
            Ok(g) => tools.push(g),
            Err(e) => {
                cx.err(t.loc, format!("invalid tool glob: {e}"));
                ok = false;
            }
        }
    }
    let actions = match &raw.actions {
        None => None,
        Some(list) => {
            let mut set = ActionSet::default();
            if list.value.is_empty() {
                cx.err_help(
                    list.loc,
                    "`actions` cannot be empty",
                    "leave `actions` out to mean any action",
                );
                ok = false;
            }
            for a in &list.value {
                match Action::from_name(&a.value) {
                    Some(a) => set.insert(a),
                    None => {
                        cx.err_help(
                            a.loc,
                            format!("unknown action `{}`", a.value),
                            format!("actions are {}", one_of(&Action::NAMES)),
                        );
                        ok = false;
                    }
                }
            }
            Some(set)
        }
    };
    let mut when = Vec::new();
    for (ptr, c) in &raw.when.0 {
        let pointer = match check_pointer(&ptr.value) {
            Ok(p) => Some(p),
            Err(m) => {
                cx.err(ptr.loc, m);
                ok = false;
                None
            }
        };
        let Some(c) = &c.0 else {
            ok = false;
            continue;
        };
        match (compile_constraint(cx, c), pointer) {
            (Some(tests), Some(pointer)) => when.push(Condition { pointer, tests }),
            _ => ok = false,
        }
    }
    let mut expires = None;
    if let Some(e) = &raw.expires {
        if kind != RuleKind::Approve {
            cx.err_help(
                e.loc,
                format!(
                    "`expires` is for `approve` rules, not `{}` rules",
                    kind.name()
                ),
                "it says how long a held call waits for a person; remove it here",
            );
            ok = false;
        } else {
            match parse_duration(&e.value) {
                Some(d) if !d.is_zero() => expires = Some(d),
                _ => {
                    cx.err_help(
                        e.loc,
                        format!("invalid duration `{}`", e.value),
                        "write a number with a unit: `90s`, `30m`, `24h` or `7d`",
                    );
                    ok = false;
                }
            }
        }
    }
    ok.then(|| Rule {
        id,
        role: role.to_string(),
        kind,
        tools,
        actions,
        when,
        expires,
    })
}

/// Parse a pointer into the arguments: RFC 6901 syntax, non-empty, starting with `/`.
/// The withheld-member segment `~k<i>` that [`JsonPath`] writes for its own output
/// names no argument a policy could know, so it is refused like any other bad escape.
pub fn check_pointer(p: &str) -> Result<JsonPath, String> {
    let bad_escape = || {
        format!(
            "invalid json pointer `{p}`: `~` must be followed by `0` (for `~`) or `1` (for `/`)"
        )
    };
    if !p.starts_with('/') {
        return Err(format!(
            "invalid json pointer `{p}`: a pointer into the arguments starts with `/`"
        ));
    }
    let path = JsonPath::parse(p).map_err(|_| bad_escape())?;
    if path.withholds_a_name() {
        return Err(bad_escape());
    }
    Ok(path)
}

fn compile_constraint(cx: &mut Cx<'_>, c: &Sp<RawConstraint>) -> Option<Vec<Test>> {
    let raw = &c.value;
    let mut ok = true;
    let mut tests = Vec::new();
    if let Some(g) = &raw.glob {
        match Glob::new(&g.value) {
            Ok(glob) => tests.push(Test::Glob(glob)),
            Err(e) => {
                cx.err(g.loc, format!("invalid glob: {e}"));
                ok = false;
            }
        }
    }
    if let Some(r) = &raw.regex {
        match cx.regex(&r.value, true) {
            Ok(regex) => tests.push(Test::Regex {
                source: r.value.clone(),
                regex,
            }),
            Err(m) => {
                cx.err(r.loc, m);
                ok = false;
            }
        }
    }
    if let Some(e) = &raw.equals {
        tests.push(Test::Equals(e.value.clone()));
    }
    if let Some(o) = &raw.one_of {
        if o.value.is_empty() {
            cx.err(o.loc, "`one_of` cannot be empty");
            ok = false;
        }
        tests.push(Test::OneOf(o.value.clone()));
    }
    for (bound, is_min) in [(&raw.min, true), (&raw.max, false)] {
        if let Some(b) = bound {
            if !b.value.is_finite() {
                cx.err(b.loc, "a bound must be a finite number");
                ok = false;
            }
            tests.push(if is_min {
                Test::Min(b.value)
            } else {
                Test::Max(b.value)
            });
        }
    }
    if let (Some(lo), Some(hi)) = (&raw.min, &raw.max)
        && lo.value > hi.value
    {
        cx.err(
            lo.loc,
            format!("`min` ({}) is above `max` ({})", lo.value, hi.value),
        );
        ok = false;
    }
    if tests.is_empty() && ok {
        cx.err_help(
            c.loc,
            "a constraint needs at least one test",
            "use `glob`, `regex`, `equals`, `one_of`, `min` or `max`",
        );
        ok = false;
    }
    ok.then_some(tests)
}

/// Undefined roles in `extends`, and `extends` cycles (each named once).
fn check_extends(cx: &mut Cx<'_>, roles: &[(&Sp<String>, &RawRole)], role_names: &HashSet<&str>) {
    let defined: HashMap<&str, &RawRole> =
        roles.iter().map(|(n, r)| (n.value.as_str(), *r)).collect();
    for (name, role) in roles {
        for e in &role.extends {
            if !role_names.contains(e.value.as_str()) {
                cx.err(
                    e.loc,
                    format!("role `{}` extends undefined role `{}`", name.value, e.value),
                );
            }
        }
    }
    // Depth-first search; a back edge closes a cycle.
    let mut state: HashMap<&str, u8> = HashMap::new(); // 1 = on stack, 2 = done
    let mut seen_cycles: HashSet<Vec<String>> = HashSet::new();
    for (name, _) in roles {
        let mut stack: Vec<&str> = Vec::new();
        visit(
            cx,
            name.value.as_str(),
            &defined,
            &mut state,
            &mut stack,
            &mut seen_cycles,
        );
    }

    fn visit<'a>(
        cx: &mut Cx<'_>,
        role: &'a str,
        defined: &HashMap<&'a str, &'a RawRole>,
        state: &mut HashMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
        seen: &mut HashSet<Vec<String>>,
    ) {
        if state.get(role).is_some() {
            return;
        }
        state.insert(role, 1);
        stack.push(role);
        if let Some(r) = defined.get(role) {
            for e in &r.extends {
                let next = e.value.as_str();
                match state.get(next) {
                    Some(1) => {
                        let start = stack.iter().position(|s| *s == next).unwrap_or(0);
                        let cycle: Vec<String> = stack
                            .get(start..)
                            .unwrap_or_default()
                            .iter()
                            .map(|s| (*s).to_string())
                            .collect();
                        let mut key = cycle.clone();
                        key.sort();
                        if seen.insert(key) {
                            let mut path: Vec<String> =
                                cycle.iter().map(|s| format!("`{s}`")).collect();
                            path.push(format!("`{next}`"));
                            cx.err_help(
                                e.loc,
                                format!("`extends` cycle: {}", path.join(" → ")),
                                "a role cannot extend itself, directly or through other roles",
                            );
                        }
                    }
                    Some(_) => {}
                    None => {
                        if let Some((k, _)) = defined.get_key_value(next) {
                            visit(cx, k, defined, state, stack, seen);
                        }
                    }
                }
            }
        }
        stack.pop();
        state.insert(role, 2);
    }
}

/// The role and every role it extends, transitively, each once, in depth-first order.
fn closure<'a>(
    start: &'a str,
    roles: &HashMap<&'a str, &'a RawRole>,
    out: &mut Vec<String>,
    seen: &mut HashSet<&'a str>,
) {
    if !seen.insert(start) {
        return;
    }
    out.push(start.to_string());
    if let Some(r) = roles.get(start) {
        for e in &r.extends {
            if let Some((k, _)) = roles.get_key_value(e.value.as_str()) {
                closure(k, roles, out, seen);
            }
        }
    }
}

// ---------------------------------------------------------------- agents

fn compile_agents(
    cx: &mut Cx<'_>,
    raw: &RawPolicy,
    roles: &[(&Sp<String>, &RawRole)],
    role_names: &HashSet<&str>,
    role_rules: &HashMap<String, Vec<u32>>,
    rules: &[Rule],
    levels: &[String],
) -> HashMap<String, Agent> {
    let defined: HashMap<&str, &RawRole> =
        roles.iter().map(|(n, r)| (n.value.as_str(), *r)).collect();
    let mut out = HashMap::new();
    for (name, a) in entries(&raw.agents) {
        check_name(cx, "an agent", name);
        for r in &a.roles {
            if !role_names.contains(r.value.as_str()) {
                let known: Vec<&str> = roles.iter().map(|(n, _)| n.value.as_str()).collect();
                let help = if known.is_empty() {
                    "the policy defines no roles; add them under `roles:`".to_string()
                } else {
                    format!("defined roles are {}", one_of(&known))
                };
                cx.err_help(
                    r.loc,
                    format!("agent `{}` names undefined role `{}`", name.value, r.value),
                    help,
                );
            }
        }
        let clearance = match &a.clearance {
            None => 0,
            Some(c) => match levels.iter().position(|l| *l == c.value) {
                Some(i) => i,
                None => {
                    cx.err_help(
                        c.loc,
                        format!("unknown data level `{}`", c.value),
                        format!(
                            "the levels are {}",
                            one_of(&levels.iter().map(String::as_str).collect::<Vec<_>>())
                        ),
                    );
                    0
                }
            },
        };
        let mut effective = Vec::new();
        let mut seen = HashSet::new();
        for r in &a.roles {
            if let Some((k, _)) = defined.get_key_value(r.value.as_str()) {
                closure(k, &defined, &mut effective, &mut seen);
            }
        }
        let mut agent_rules: Vec<u32> = Vec::new();
        for r in &effective {
            if let Some(ids) = role_rules.get(r) {
                agent_rules.extend(ids);
            }
        }
        let index = index_rules(&agent_rules, rules);
        out.insert(
            name.value.clone(),
            Agent {
                name: name.value.clone(),
                roles: a.roles.iter().map(|r| r.value.clone()).collect(),
                effective_roles: effective,
                clearance,
                rules: agent_rules,
                index,
            },
        );
    }
    out
}

/// Index an agent's rules for lookup by tool name: rules with an exact-name glob
/// by that name, rules with a `<server>.`-prefixed wildcard glob by server, and
/// the rest (wildcards over the server id). A rule with several globs is in every
/// bucket one of them belongs to. Entries are positions in `ids` (ascending), so
/// merged lookups keep the agent's rule order.
fn index_rules(ids: &[u32], rules: &[Rule]) -> RuleIndex {
    let mut index = RuleIndex::default();
    for (pos, &i) in ids.iter().enumerate() {
        let Some(r) = rules.get(i as usize) else {
            continue;
        };
        let pos = u32::try_from(pos).unwrap_or(u32::MAX);
        let mut any_server = false;
        let mut names = BTreeSet::new();
        let mut servers = BTreeSet::new();
        for g in &r.tools {
            match (g.literal(), g.server()) {
                (Some(l), _) => {
                    names.insert(l.to_string());
                }
                (None, Some(s)) => {
                    servers.insert(s.to_string());
                }
                (None, None) => any_server = true,
            }
        }
        for n in names {
            index.exact.entry(n).or_default().push(pos);
        }
        for s in servers {
            index.by_server.entry(s).or_default().push(pos);
        }
        if any_server {
            index.wild.push(pos);
        }
    }
    index
}

// ---------------------------------------------------------------- tools

type ToolIndex = (Vec<ToolFact>, HashMap<String, usize>, Vec<usize>);

fn compile_tools(cx: &mut Cx<'_>, raw: &RawPolicy) -> ToolIndex {
    let mut facts = Vec::new();
    let mut exact = HashMap::new();
    let mut globs = Vec::new();
    for (key, t) in entries(&raw.tools) {
        let mut ok = true;
        let pattern = match Glob::new(&key.value) {
            Ok(g) => Some(g),
            Err(e) => {
                cx.err(key.loc, format!("invalid tool glob: {e}"));
                None
            }
        };
        let action = match &t.action {
            None => Action::Execute,
            Some(a) => match Action::from_name(&a.value) {
                Some(a) => a,
                None => {
                    cx.err_help(
                        a.loc,
                        format!("unknown action `{}`", a.value),
                        format!("actions are {}", one_of(&Action::NAMES)),
                    );
                    ok = false;
                    Action::Execute
                }
            },
        };
        let mut pointers = Vec::new();
        let mut literals = Vec::new();
        for d in t.destinations.iter().flatten() {
            if d.value.starts_with('/') {
                match check_pointer(&d.value) {
                    Ok(p) => pointers.push(p),
                    Err(m) => {
                        cx.err(d.loc, m);
                        ok = false;
                    }
                }
            } else if d.value.trim().is_empty() {
                cx.err(d.loc, "a destination cannot be empty");
                ok = false;
            } else if !d.value.contains(['.', ':', '/']) && d.value != "localhost" {
                // `destinations: [url]` is almost always a pointer without its `/`.
                cx.err_help(
                    d.loc,
                    format!(
                        "destination `{}` is neither a json pointer nor a url or host name",
                        d.value
                    ),
                    format!(
                        "write `/{}` for the argument of that name, or a url such as `https://api.example.com`",
                        d.value
                    ),
                );
                ok = false;
            } else {
                literals.push(d.value.clone());
            }
        }
        let (true, Some(pattern)) = (ok, pattern) else {
            continue;
        };
        let i = facts.len();
        match pattern.literal() {
            Some(l) => {
                exact.insert(l.to_string(), i);
            }
            None => globs.push(i),
        }
        facts.push(ToolFact {
            id: RuleId::tool_fact(&key.value),
            pattern,
            action,
            pointers,
            literals,
            declares_destinations: t.destinations.is_some(),
        });
    }
    // Most specific first: more literal characters; ties keep file order (stable sort).
    globs.sort_by_key(|&i| {
        std::cmp::Reverse(
            facts
                .get(i)
                .map_or(0, |f: &ToolFact| f.pattern.literal_len()),
        )
    });
    (facts, exact, globs)
}

// ---------------------------------------------------------------- workflows

fn compile_workflows(
    cx: &mut Cx<'_>,
    raw: &RawPolicy,
    defined: &HashSet<&str>,
) -> HashMap<String, Workflow> {
    let mut out = HashMap::new();
    for (name, w) in entries(&raw.workflows) {
        check_name(cx, "a workflow", name);
        if w.roles.value.is_empty() {
            cx.err(w.roles.loc, "`roles` cannot be empty");
        }
        for r in &w.roles.value {
            if !defined.contains(r.value.as_str()) {
                cx.err(
                    r.loc,
                    format!(
                        "workflow `{}` names undefined role `{}`",
                        name.value, r.value
                    ),
                );
            }
        }
        if w.tools.value.is_empty() {
            cx.err(w.tools.loc, "`tools` cannot be empty");
        }
        let mut tools = Vec::new();
        for t in &w.tools.value {
            match Glob::new(&t.value) {
                Ok(g) => tools.push(g),
                Err(e) => cx.err(t.loc, format!("invalid tool glob: {e}")),
            }
        }
        out.insert(
            name.value.clone(),
            Workflow {
                name: name.value.clone(),
                roles: w.roles.value.iter().map(|r| r.value.clone()).collect(),
                tools,
            },
        );
    }
    out
}

// ---------------------------------------------------------------- destinations

fn compile_destinations(
    cx: &mut Cx<'_>,
    raw: Option<&Sp<crate::raw::RawDestinations>>,
) -> Option<DestPolicy> {
    let default = crate::raw::RawDestinations::default();
    let d = raw.map_or(&default, |r| &r.value);
    let mut reported: HashSet<(&'static str, usize)> = HashSet::new();
    for (i, p) in d.permit.iter().enumerate() {
        if Class::from_name(&p.value).is_none() {
            let names: Vec<&str> = Class::ALL.iter().map(|c| c.name()).collect();
            cx.err_help(
                p.loc,
                format!("unknown destination class `{}`", p.value),
                format!("classes are {}", one_of(&names)),
            );
            reported.insert(("permit", i));
        }
    }
    let spec = DestPolicySpec {
        allow: d.allow.iter().map(|s| s.value.clone()).collect(),
        deny: d.deny.iter().map(|s| s.value.clone()).collect(),
        permit: d.permit.iter().map(|s| s.value.clone()).collect(),
        scan: d.scan.unwrap_or(true),
    };
    match DestPolicy::compile(&spec) {
        Ok(p) => reported.is_empty().then_some(p),
        Err(errors) => {
            for e in errors {
                if reported.contains(&(e.list, e.index)) {
                    continue;
                }
                let list = match e.list {
                    "allow" => &d.allow,
                    "deny" => &d.deny,
                    _ => &d.permit,
                };
                let loc = list.get(e.index).map(|s| s.loc);
                cx.problems.push(Problem::at(loc, e.message));
            }
            None
        }
    }
}
