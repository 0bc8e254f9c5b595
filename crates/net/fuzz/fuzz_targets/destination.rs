//! Fuzz destination parsing end to end: canonicalization (both readings), scanning of
//! free text, pattern parsing and `DestPolicy::evaluate`, with a fixed resolver.
//!
//! Run: `cd crates/net/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run destination`
//! (cargo-fuzz needs nightly features; `RUSTC_BOOTSTRAP=1` enables them on stable).
#![no_main]

use std::net::IpAddr;

use conductor_net::{DestPattern, DestPolicy, DestPolicySpec, ResolveError, Resolver, canonicalize};
use libfuzzer_sys::fuzz_target;

struct Fixed;

impl Resolver for Fixed {
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        // Every name resolves to a public address, except those that mention
        // "internal", which also resolve to a private one.
        let mut v = vec![IpAddr::from([93, 184, 216, 34])];
        if host.contains("internal") {
            v.push(IpAddr::from([10, 0, 0, 1]));
        }
        Ok(v)
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Canonicalization is idempotent on what it accepts without ambiguity.
    if let Ok(c) = canonicalize(text)
        && c.host.is_some()
        && c.mismatch.is_none()
    {
        let again = canonicalize(&c.to_canonical_string()).expect("canonical text parses");
        assert_eq!(again.host, c.host, "{text:?}");
        assert_eq!(again.port, c.port, "{text:?}");
        assert_eq!(again.scheme, c.scheme, "{text:?}");
    }
    // Pattern parsing never panics.
    let _ = DestPattern::parse(text);
    // Evaluation never panics, and an allowed destination has a host and public addresses.
    let policy = DestPolicy::compile(&DestPolicySpec {
        allow: vec!["*".into()],
        deny: vec!["*.internal".into()],
        permit: vec![],
        scan: true,
    })
    .expect("the fuzz policy compiles");
    let args = serde_json::json!({ "url": text, "note": format!("see {text} now") });
    let outcome = policy.evaluate(&args, &["/url".to_string()], &[], &Fixed);
    if outcome.violations.is_empty() {
        for d in &outcome.destinations {
            assert!(!d.host.is_empty() && !d.addresses.is_empty(), "{d:?}");
            assert!(d.classes.is_empty(), "{d:?}");
        }
    }
    for v in &outcome.violations {
        assert!(v.destination < outcome.destinations.len());
    }
});
