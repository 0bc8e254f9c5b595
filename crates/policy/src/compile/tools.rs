//! The `tools:` section: facts about tools (action, destination pointers and literals).

use std::collections::HashMap;

use conductor_types::RuleId;

use super::roles::check_pointer;
use super::{Cx, entries};
use crate::de::one_of;
use crate::glob::Glob;
use crate::model::{Action, ToolFact};
use crate::raw::RawPolicy;

pub(super) type ToolIndex = (Vec<ToolFact>, HashMap<String, usize>, Vec<usize>);

pub(super) fn compile_tools(cx: &mut Cx<'_>, raw: &RawPolicy) -> ToolIndex {
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
