//! The `workflows:` section.

use std::collections::{HashMap, HashSet};

use super::{Cx, check_name, entries};
use crate::glob::Glob;
use crate::model::Workflow;
use crate::raw::RawPolicy;

pub(super) fn compile_workflows(
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
