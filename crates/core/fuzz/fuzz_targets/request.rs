//! Fuzz the request parser and the decision core: any bytes must parse or be
//! refused with a message; any parsed request must be decided without a panic,
//! and a decision is `allow` exactly when it has no reasons.

#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use conductor_core::{Effect, Request, World, decide};
use conductor_net::{ResolveError, Resolver};
use conductor_scan::FingerprintKey;
use libfuzzer_sys::fuzz_target;

const POLICY: &str = r#"version: 1
agents:
  bot: {roles: [op], clearance: internal}
roles:
  base:
    allow: [{tools: ["fetch.*"], actions: [read]}]
    deny: [{tools: ["*.delete_*"]}]
  op:
    extends: [base]
    allow:
      - tools: ["github.*"]
        when:
          /repo: {glob: "acme/*"}
          /n: {min: 1, max: 10}
    approve: [{tools: ["github.merge_*"]}]
tools:
  fetch.fetch: {action: read, destinations: [/url]}
workflows:
  w: {roles: [base], tools: ["fetch.*"]}
"#;

struct NoDns;

impl Resolver for NoDns {
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        Err(ResolveError::NotFound { host: host.into() })
    }
}

fn policy() -> &'static conductor_policy::Policy {
    static P: OnceLock<conductor_policy::Policy> = OnceLock::new();
    P.get_or_init(
        || match conductor_policy::load_str(POLICY, "fuzz.yaml", None) {
            Ok(p) => p,
            Err(e) => panic!("{}", e.render(false)),
        },
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Request::from_json(text) {
        Ok(req) => {
            let key = FingerprintKey([0; 32]);
            let world = World {
                resolver: &NoDns,
                fingerprint_key: &key,
            };
            let d = decide(policy(), &req, &world);
            assert_eq!(d.decision == Effect::Allow, d.reasons.is_empty());
        }
        Err(e) => assert!(!e.message.is_empty()),
    }
});
