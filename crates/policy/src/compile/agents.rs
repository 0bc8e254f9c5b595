//! The `agents:` section: each agent's roles, clearance, effective rules and their index by tool name.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::roles::closure;
use super::{Cx, check_name, entries};
use crate::de::{Sp, one_of};
use crate::model::{Agent, Rule, RuleIndex};
use crate::raw::{RawPolicy, RawRole};

pub(super) fn compile_agents(
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
