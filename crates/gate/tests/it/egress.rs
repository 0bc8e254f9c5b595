//! Connections out of the sandbox (`check_connection` / `record_connection`): the same
//! checks as a call's, on the destination the connection names and nothing else.

use std::sync::Arc;

use conductor_audit::{AuditOptions, AuditReader, AuditStore};
use conductor_core::{Check, Effect};
use conductor_gate::{
    Connection, GateResolver, MemoryStore, ResolverConfig, Service, ServiceOptions, Subject,
    connection_problem,
};
use conductor_scan::FingerprintKey;
use serde_json::json;

const POLICY: &str = r#"
version: 1
agents:
  bot: {roles: [r], clearance: secret}
roles:
  r:
    allow:
      - tools: ["fetch.*"]
data:
  labels:
    credentials: {level: secret, detect: [secrets]}
  egress:
    - to: ["https://vault.example", "http://vault.example"]
      max: secret
  default_egress: public
destinations:
  allow: ["*"]
"#;

fn service(dir: &std::path::Path) -> Service {
    let audit = Arc::new(AuditStore::open(&dir.join("audit.db"), AuditOptions::default()).unwrap());
    let resolver = GateResolver::new(
        ResolverConfig::from_args(
            &[
                "ok.example=93.184.215.14".into(),
                "vault.example=93.184.215.15".into(),
            ],
            true,
        )
        .unwrap(),
    );
    Service::new(
        conductor_policy::load_str(POLICY, "policy.yaml", None).unwrap(),
        resolver,
        Arc::new(FingerprintKey([7; 32])),
        audit,
        Arc::new(MemoryStore::default()),
        ServiceOptions::default(),
    )
}

fn subject() -> Subject {
    Subject {
        agent: "bot".into(),
        workflow: None,
        session: "s".into(),
        server: Some("fetch".into()),
        auth: None,
    }
}

fn get(origin: &str, body: &str) -> Connection {
    Connection {
        action: "post".into(),
        destination: origin.into(),
        shown: origin.into(),
        sni: None,
        content: json!({"target": format!("{origin}upload"), "headers": [], "body": body}),
    }
}

fn secret() -> String {
    ["AKIA", "2OGYBAH6TQKRXEVN"].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_decided_on_the_destination_it_names_only() {
    // A URL of the metadata service in the body is data the destination receives, not a
    // place the connection goes: the connection is allowed, to the checked address.
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let v = svc
        .decide_connection(
            &subject(),
            get("http://ok.example/", "see http://169.254.169.254/latest/"),
            Vec::new(),
        )
        .await;
    assert!(v.forward, "{:?}", v.decision);
    assert_eq!(v.decision.destinations.len(), 1);
    assert_eq!(v.decision.destinations[0].host, "ok.example");
    assert_eq!(
        v.decision.destinations[0].addresses,
        ["93.184.215.14".parse::<std::net::IpAddr>().unwrap()]
    );
    let records = AuditReader::open(&dir.path().join("audit.db"))
        .unwrap()
        .last(10)
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].event, "egress");
    assert_eq!(records[0].tool, "fetch.egress");
    assert_eq!(records[0].action, "post");
    assert_eq!(records[0].decision, "allow");
    // The record shows the origin, never the path or the body.
    let shown = records[0].arguments.as_ref().unwrap().to_string();
    assert!(
        !shown.contains("upload") && !shown.contains("169.254"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_carries_data_up_to_its_destination_s_egress_maximum() {
    // The destination is known exactly, so no "unknown destination" (`default_egress`)
    // applies on top of the destination's own egress rule.
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let body = format!("key={}", secret());
    let v = svc
        .decide_connection(&subject(), get("http://vault.example/", &body), Vec::new())
        .await;
    assert!(v.forward, "{:?}", v.decision);
    let v = svc
        .decide_connection(&subject(), get("http://ok.example/", &body), Vec::new())
        .await;
    assert!(!v.forward);
    assert!(
        v.decision
            .reasons
            .iter()
            .any(|r| r.check == Check::Data && r.rule == "data.default_egress"),
        "{:?}",
        v.decision
    );
    let all = AuditReader::open(&dir.path().join("audit.db"))
        .unwrap()
        .last(10)
        .unwrap();
    assert!(
        !all.iter()
            .any(|r| serde_json::to_string(r).unwrap().contains(&secret())),
        "a record holds the credential"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_problem_the_transport_found_denies_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let mut checked = svc
        .check_connection(
            &subject(),
            Connection {
                action: "connect".into(),
                destination: "https://ok.example:443".into(),
                shown: "ok.example:443".into(),
                sni: None,
                content: json!({"target": "ok.example:443"}),
            },
        )
        .await;
    assert!(checked.allowed());
    checked.set_sni(Some("fronted.example".into()));
    let v = svc
        .record_connection(
            &subject(),
            checked,
            vec![connection_problem(
                Check::Destination,
                conductor_types::RuleId::egress("sni-mismatch"),
                "the TLS server name is not the CONNECT host `ok.example`".into(),
            )],
        )
        .await;
    assert!(!v.forward);
    assert_eq!(v.decision.decision, Effect::Deny);
    let records = AuditReader::open(&dir.path().join("audit.db"))
        .unwrap()
        .last(10)
        .unwrap();
    assert_eq!(records.len(), 1, "one record per connection");
    assert_eq!(records[0].decision, "deny");
    assert_eq!(
        records[0].arguments.as_ref().unwrap()["sni"],
        "fronted.example"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_denied_by_the_blocked_classes_is_refused_with_no_forward() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path());
    let v = svc
        .decide_connection(
            &subject(),
            get("http://metadata.google.internal/", ""),
            Vec::new(),
        )
        .await;
    assert!(!v.forward);
    assert!(
        v.decision
            .reasons
            .iter()
            .any(|r| r.rule == "destinations.blocked.cloud-metadata"),
        "{:?}",
        v.decision
    );
}
