//! The `destinations:` section, compiled by `conductor-net`.

use std::collections::HashSet;

use conductor_net::{Class, DestPolicy, DestPolicySpec};

use super::Cx;
use crate::de::{Sp, one_of};
use crate::error::Problem;

pub(super) fn compile_destinations(
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
