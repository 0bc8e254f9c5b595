//! Shared helpers: a fixed resolver and policy builders.

use std::collections::HashMap;
use std::net::IpAddr;

use conductor_net::{DestOutcome, DestPolicy, DestPolicySpec, ResolveError, Resolver};

/// A resolver from a fixed table; every other name does not resolve.
#[derive(Default)]
pub struct Fixed(pub HashMap<String, Vec<IpAddr>>);

impl Fixed {
    pub fn with(entries: &[(&str, &[&str])]) -> Self {
        Fixed(
            entries
                .iter()
                .map(|(h, a)| {
                    (
                        h.to_string(),
                        a.iter().map(|x| x.parse().unwrap()).collect(),
                    )
                })
                .collect(),
        )
    }
}

impl Resolver for Fixed {
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        self.0
            .get(host)
            .cloned()
            .ok_or_else(|| ResolveError::NotFound {
                host: host.to_string(),
            })
    }
}

pub fn policy(allow: &[&str], deny: &[&str], permit: &[&str]) -> DestPolicy {
    DestPolicy::compile(&DestPolicySpec {
        allow: allow.iter().map(|s| s.to_string()).collect(),
        deny: deny.iter().map(|s| s.to_string()).collect(),
        permit: permit.iter().map(|s| s.to_string()).collect(),
        scan: true,
    })
    .unwrap()
}

/// Evaluate one URL given at the declared pointer `/url`.
pub fn eval_url(p: &DestPolicy, url: &str, r: &dyn Resolver) -> DestOutcome {
    p.evaluate(&serde_json::json!({ "url": url }), &[ptr("/url")], &[], r)
}

pub fn rules(o: &DestOutcome) -> Vec<String> {
    o.violations.iter().map(|v| v.rule.to_string()).collect()
}

/// A JSON path written as a pointer.
pub fn ptr(pointer: &str) -> conductor_types::JsonPath {
    conductor_types::JsonPath::parse(pointer).unwrap()
}
