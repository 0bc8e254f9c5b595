//! The `roles:` section: rules (tool globs, actions, `when:` constraints, `expires`) and `extends`.

use std::collections::{HashMap, HashSet};

use conductor_types::{JsonPath, RuleId};

use super::{Cx, check_name, parse_duration};
use crate::de::{Sp, one_of};
use crate::glob::Glob;
use crate::model::{Action, ActionSet, Condition, Rule, RuleKind, Test};
use crate::raw::{RawConstraint, RawRole, RawRule};

/// Compile every role's rules. Returns all rules and, per role name, their indices.
pub(super) fn compile_roles(
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
pub(super) fn check_extends(
    cx: &mut Cx<'_>,
    roles: &[(&Sp<String>, &RawRole)],
    role_names: &HashSet<&str>,
) {
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
pub(super) fn closure<'a>(
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
