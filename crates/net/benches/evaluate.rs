//! Extract, canonicalize and classify the destinations of one call with three URL
//! arguments; the resolver is a fixed map (no DNS). See `BENCHMARKS.md`.
#![allow(
    clippy::disallowed_methods,
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark setup may fail loudly"
)]

use std::hint::black_box;
use std::net::IpAddr;

use conductor_net::{DestPolicy, DestPolicySpec, ResolveError, Resolver, canonicalize};
use criterion::{Criterion, criterion_group, criterion_main};

struct Fixed;

impl Resolver for Fixed {
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        match host {
            "api.github.com" => Ok(vec![IpAddr::from([140, 82, 112, 6])]),
            "en.wikipedia.org" => Ok(vec![IpAddr::from([208, 80, 154, 224])]),
            _ => Err(ResolveError::NotFound {
                host: host.to_string(),
            }),
        }
    }
}

fn policy(allow: &[&str]) -> DestPolicy {
    DestPolicy::compile(&DestPolicySpec {
        allow: allow.iter().map(|s| s.to_string()).collect(),
        deny: vec!["*.internal".into()],
        permit: vec![],
        scan: true,
    })
    .unwrap_or_else(|e| panic!("{e:?}"))
}

fn bench(c: &mut Criterion) {
    let args = serde_json::json!({
        "url": "https://api.github.com/repos/acme/app/issues?state=open",
        "fallback": "http://2852039166/latest/meta-data/",
        "options": {"mirror": "https://en.wikipedia.org/wiki/Server-side_request_forgery", "depth": 2},
    });
    let pointers: Vec<conductor_types::JsonPath> = ["/url", "/fallback", "/options/mirror"]
        .iter()
        .map(|p| conductor_types::JsonPath::parse(p).unwrap())
        .collect();
    let open = policy(&["*"]);
    let list = policy(&[
        "https://*.github.com",
        "https://en.wikipedia.org",
        "198.51.100.0/24",
    ]);
    c.bench_function("evaluate/3-urls/open-web", |b| {
        b.iter(|| black_box(open.evaluate(black_box(&args), &pointers, &[], &Fixed)))
    });
    c.bench_function("evaluate/3-urls/allowlist", |b| {
        b.iter(|| black_box(list.evaluate(black_box(&args), &pointers, &[], &Fixed)))
    });
    // The same shape, with inputs that need the general path (both URL parsers): an
    // IPv4-mapped IPv6 literal, an IDN, userinfo and an explicit port.
    let general = serde_json::json!({
        "url": "https://user@api.github.com:8443/repos/acme/app/issues?state=open",
        "fallback": "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
        "options": {"mirror": "https://bücher.example/wiki/Server-side_request_forgery", "depth": 2},
    });
    c.bench_function("evaluate/3-urls/general-path", |b| {
        b.iter(|| black_box(open.evaluate(black_box(&general), &pointers, &[], &Fixed)))
    });
    c.bench_function("canonicalize/dotless-metadata", |b| {
        b.iter(|| {
            black_box(canonicalize(black_box(
                "http://2852039166/latest/meta-data/",
            )))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches, parts_group, parts_group2);

fn parts(c: &mut Criterion) {
    c.bench_function("part/url-parse", |b| {
        b.iter(|| {
            black_box(url::Url::parse(black_box(
                "http://2852039166/latest/meta-data/",
            )))
        })
    });
    // Prose of 4 KiB with `=`, `@`, `:`, numbers and names (a chat message or a shell
    // script): the word pass, its glued readings and the blocked-name prefilter.
    let prose = "Meeting at 10:30 with admin@example.com, ratio 1.5:1; see the runbook at docs/ops.md, key=value pairs, --timeout=30, the local cache on port 8080 and version 2.4.1 of the client. "
        .repeat(22);
    c.bench_function("part/find_in_text-4kib-prose", |b| {
        b.iter(|| black_box(conductor_net::find_in_text(black_box(&prose))))
    });
    c.bench_function("part/find_in_text", |b| {
        b.iter(|| {
            black_box(conductor_net::find_in_text(black_box(
                "https://en.wikipedia.org/wiki/Server-side_request_forgery",
            )))
        })
    });
}
criterion_group!(parts_group, parts);

fn parts2(c: &mut Criterion) {
    let args = serde_json::json!({
        "url": "https://api.github.com/repos/acme/app/issues?state=open",
        "fallback": "http://2852039166/latest/meta-data/",
        "options": {"mirror": "https://en.wikipedia.org/wiki/Server-side_request_forgery", "depth": 2},
    });
    let pointers: Vec<conductor_types::JsonPath> = ["/url", "/fallback", "/options/mirror"]
        .iter()
        .map(|p| conductor_types::JsonPath::parse(p).unwrap())
        .collect();
    let noscan = DestPolicy::compile(&DestPolicySpec {
        allow: vec!["*".into()],
        scan: false,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e:?}"));
    c.bench_function("part/evaluate-noscan", |b| {
        b.iter(|| black_box(noscan.evaluate(black_box(&args), &pointers, &[], &Fixed)))
    });
    c.bench_function("part/canon-https-name", |b| {
        b.iter(|| {
            black_box(canonicalize(black_box(
                "https://api.github.com/repos/acme/app/issues?state=open",
            )))
        })
    });
}
criterion_group!(parts_group2, parts2);
