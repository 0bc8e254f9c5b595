//! The service: decide → record → forward, taint shared through the store, failures refuse.

use std::sync::Arc;

use conductor_audit::{AuditOptions, AuditReader, AuditStore};
use conductor_core::{Check, Effect};
use conductor_gate::{
    Call, GateResolver, MemoryStore, PinOutcome, ResolverConfig, Service, ServiceOptions,
    SessionStore, SqliteStore, Subject,
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
      - tools: ["fetch.*", "slack.*"]
data:
  labels:
    credentials: {level: secret, detect: [secrets]}
  default_egress: public
destinations:
  allow: ["https://ok.example"]
tools:
  fetch.fetch: {action: read, destinations: [/url]}
  slack.post: {action: write, destinations: ["https://ok.example"]}
"#;

fn service(dir: &std::path::Path, sessions: Arc<dyn SessionStore>) -> Service {
    service_with(dir, sessions, POLICY)
}

fn service_with(dir: &std::path::Path, sessions: Arc<dyn SessionStore>, policy: &str) -> Service {
    let policy = conductor_policy::load_str(policy, "policy.yaml", None).unwrap();
    let audit = Arc::new(AuditStore::open(&dir.join("audit.db"), AuditOptions::default()).unwrap());
    let resolver = GateResolver::new(
        ResolverConfig::from_args(&["ok.example=93.184.215.14".into()], true).unwrap(),
    );
    Service::new(
        policy,
        resolver,
        Arc::new(FingerprintKey([7; 32])),
        audit,
        sessions,
        ServiceOptions::default(),
    )
}

fn subject(session: &str) -> Subject {
    Subject {
        agent: "bot".into(),
        workflow: None,
        session: session.into(),
        server: Some("fetch".into()),
        auth: None,
    }
}

fn call(tool: &str, arguments: serde_json::Value) -> Call {
    Call::new("tools/call", tool, arguments)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_call_is_recorded_before_it_is_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), Arc::new(MemoryStore::default()));
    let v = svc
        .decide(
            &subject("s1"),
            call("fetch.fetch", json!({"url": "https://ok.example/a"})),
        )
        .await;
    assert!(v.forward, "{:?}", v.decision);
    let v = svc
        .decide(
            &subject("s1"),
            call("fetch.fetch", json!({"url": "http://169.254.169.254/"})),
        )
        .await;
    assert!(!v.forward);
    assert_eq!(v.decision.decision, Effect::Deny);
    svc.audit().flush().unwrap();
    let reader = AuditReader::open(&dir.path().join("audit.db")).unwrap();
    let records = reader.last(10).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].decision, "allow");
    assert_eq!(records[1].decision, "deny");
    assert!(reader.verify(None).unwrap().broken.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taint_received_through_one_process_restricts_the_agent_in_another() {
    // Regression (issue 10, class 8): labels were per `wrap` process, so a credential
    // received from server A did not restrict a public send through server B.
    let dir = tempfile::tempdir().unwrap();
    // The audit store is made first (session tables are added to its file).
    drop(AuditStore::open(&dir.path().join("audit.db"), AuditOptions::default()).unwrap());
    let store_a: Arc<dyn SessionStore> =
        Arc::new(SqliteStore::open(&dir.path().join("audit.db")).unwrap());
    let store_b: Arc<dyn SessionStore> =
        Arc::new(SqliteStore::open(&dir.path().join("audit.db")).unwrap());
    let a = service(dir.path(), store_a);
    let b = service(dir.path(), store_b);
    let before = b
        .decide(&subject("b1"), call("slack.post", json!({"text": "hello"})))
        .await;
    assert!(before.forward, "{:?}", before.decision);
    // Server A hands the agent an AWS key.
    let labels = a
        .label(&subject("a1"), &json!({"content": [{"type": "text", "text": "AKIAQYLPMN5HHHFPZAM2 wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEZ"}]}))
        .unwrap();
    assert_eq!(labels, vec!["credentials".to_string()]);
    let after = b
        .decide(&subject("b2"), call("slack.post", json!({"text": "hello"})))
        .await;
    assert!(!after.forward);
    assert!(
        after
            .decision
            .reasons
            .iter()
            .any(|r| r.check == Check::Flow),
        "{:?}",
        after.decision.reasons
    );
}

struct BrokenStore;

impl SessionStore for BrokenStore {
    fn labels(
        &self,
        _: &conductor_gate::TaintKey,
        _: i64,
    ) -> Result<std::collections::BTreeSet<String>, conductor_gate::StoreError> {
        Err(conductor_gate::StoreError {
            place: "test".into(),
            message: "disk on fire".into(),
        })
    }
    fn raise(
        &self,
        _: &conductor_gate::TaintKey,
        _: &[String],
        _: i64,
    ) -> Result<(), conductor_gate::StoreError> {
        Err(conductor_gate::StoreError {
            place: "test".into(),
            message: "disk on fire".into(),
        })
    }
    fn pin(&self, _: &str, _: &str, _: &str) -> Result<PinOutcome, conductor_gate::StoreError> {
        Err(conductor_gate::StoreError {
            place: "test".into(),
            message: "disk on fire".into(),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_store_that_cannot_be_read_refuses_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), Arc::new(BrokenStore));
    let v = svc
        .decide(&subject("s"), call("slack.post", json!({"text": "hello"})))
        .await;
    assert!(!v.forward);
    assert!(v.decision.reasons.iter().any(|r| r.rule == "sessions"));
    // Labels that cannot be stored are an error, so the transport withholds the result.
    assert!(
        svc.label(
            &subject("s"),
            &json!({"text": "AKIAQYLPMN5HHHFPZAM2 wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEZ"})
        )
        .is_err()
    );
    // A pin that cannot be checked counts as changed.
    assert!(matches!(
        svc.pin(&subject("s"), "t", "fetch.t", "sha256:aa"),
        PinOutcome::Changed { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_store_that_fails_refuses_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), Arc::new(MemoryStore::default()));
    // Make the store unwritable: drop its table from under it.
    let conn = conductor_audit::rusqlite::Connection::open(dir.path().join("audit.db")).unwrap();
    conn.execute_batch("DROP TABLE records;").ok();
    conn.execute_batch("DROP TABLE audit;").ok();
    let v = svc
        .decide(&subject("s"), call("slack.post", json!({"text": "hello"})))
        .await;
    assert!(!v.forward);
    assert!(
        v.decision.reasons.iter().any(|r| r.check == Check::Audit),
        "{:?}",
        v.decision.reasons
    );
}

#[test]
fn pins_are_per_session_and_a_change_is_sticky_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    assert_eq!(
        store.pin("s1:fetch", "t", "sha256:a").unwrap(),
        PinOutcome::New
    );
    assert_eq!(
        store.pin("s1:fetch", "t", "sha256:a").unwrap(),
        PinOutcome::Same
    );
    assert_eq!(
        store.pin("s1:fetch", "t", "sha256:b").unwrap(),
        PinOutcome::Changed {
            first: "sha256:a".into()
        }
    );
    assert_eq!(
        store.pin("s2:fetch", "t", "sha256:b").unwrap(),
        PinOutcome::New
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_read_in_pieces_still_labels_the_session() {
    // Regression (issue 10, class 8): a credential split across two content blocks, or
    // read in chunks (mcp-server-fetch `max_length`/`start_index`), labelled nothing.
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), Arc::new(MemoryStore::default()));
    let s = subject("chunks");
    let key = "AKIAQYLPMN5HHHFPZAM2 wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEZ";
    let (a, b) = key.split_at(14);
    assert!(
        svc.label(
            &s,
            &json!({"content": [{"type": "text", "text": format!("page one ... {a}")}]})
        )
        .unwrap()
        .is_empty()
    );
    let second = svc
        .label(
            &s,
            &json!({"content": [{"type": "text", "text": format!("{b} ... page two")}]}),
        )
        .unwrap();
    assert_eq!(second, vec!["credentials".to_string()]);
    // Two blocks of one message.
    let t = subject("blocks");
    let one = svc
        .label(
            &t,
            &json!({"content": [{"type": "text", "text": a}, {"type": "text", "text": b}]}),
        )
        .unwrap();
    assert_eq!(one, vec!["credentials".to_string()]);
    // Another session's tail does not join this one's.
    let u = subject("other");
    assert!(svc.label(&u, &json!({"text": b})).unwrap().is_empty());
    // After more text than the window holds, what the window keeps is the end of it
    // (the start of a split credential), not the beginning.
    let w = subject("long");
    let filler = "lorem ipsum dolor sit amet ".repeat(200);
    assert!(filler.len() > conductor_gate::LABEL_WINDOW_BYTES);
    assert!(
        svc.label(&w, &json!({"text": format!("{filler}{a}")}))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        svc.label(&w, &json!({"text": b})).unwrap(),
        vec!["credentials".to_string()]
    );
}

fn counting_service(dir: &std::path::Path, count: Arc<std::sync::atomic::AtomicUsize>) -> Service {
    let audit = Arc::new(AuditStore::open(&dir.join("audit.db"), AuditOptions::default()).unwrap());
    let resolver = GateResolver::with_lookup(
        ResolverConfig::default(),
        Arc::new(move |_h: &str| {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(vec!["93.184.215.14".parse().unwrap()])
        }),
    );
    Service::new(
        conductor_policy::load_str(
            "version: 1\nagents:\n  bot: {roles: [r]}\nroles:\n  r:\n    allow: [{tools: [\"fetch.*\"]}]\ndestinations:\n  allow: [\"*\"]\n",
            "p.yaml",
            None,
        )
        .unwrap(),
        resolver,
        Arc::new(FingerprintKey([7; 32])),
        audit,
        Arc::new(MemoryStore::default()),
        ServiceOptions::default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_resolves_nothing_for_a_call_it_denies_anyway() {
    // Regression (issue 10, class 4): a call refused for its tool still had its host
    // names resolved — a secret in a host label left through the gate's own DNS.
    let dir = tempfile::tempdir().unwrap();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let svc = counting_service(dir.path(), Arc::clone(&count));
    let v = svc
        .decide(
            &subject("s"),
            call(
                "github.delete_repo",
                json!({"url": "https://leak.attacker.example/"}),
            ),
        )
        .await;
    assert!(!v.forward);
    // A name in the envelope (`_meta`) of a refused call is not resolved either.
    let mut c = call("github.x", json!({}));
    c.envelope = Some(json!({"_meta": {"u": "https://env.attacker.example/"}}));
    assert!(!svc.decide(&subject("s"), c).await.forward);
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 0);
    // An allowed call resolves its name once.
    let v = svc
        .decide(
            &subject("s"),
            call("fetch.fetch", json!({"url": "https://ok.example/"})),
        )
        .await;
    assert!(v.forward, "{:?}", v.decision);
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_only_call_still_checks_every_address() {
    // A protocol method decided on its data alone must not skip the address checks
    // that resolve-last defers: the name is resolved and its address checked.
    let dir = tempfile::tempdir().unwrap();
    let audit =
        Arc::new(AuditStore::open(&dir.path().join("audit.db"), AuditOptions::default()).unwrap());
    let resolver = GateResolver::new(
        ResolverConfig::from_args(&["rebind.example=169.254.169.254".into()], true).unwrap(),
    );
    let svc = Service::new(
        conductor_policy::load_str(
            "version: 1\nagents:\n  bot: {roles: []}\ndestinations:\n  allow: [\"*\"]\n",
            "p.yaml",
            None,
        )
        .unwrap(),
        resolver,
        Arc::new(FingerprintKey([7; 32])),
        audit,
        Arc::new(MemoryStore::default()),
        ServiceOptions::default(),
    );
    let mut c = call(
        "fetch.method:logging/setLevel",
        json!({"level": "http://rebind.example/"}),
    );
    c.data_only = true;
    let v = svc.decide(&subject("s"), c).await;
    assert!(!v.forward);
    assert!(
        v.decision
            .reasons
            .iter()
            .any(|r| r.rule == "destinations.blocked.cloud-metadata"),
        "{:?}",
        v.decision.reasons
    );
    let mut ok = call("fetch.method:logging/setLevel", json!({"level": "debug"}));
    ok.data_only = true;
    assert!(svc.decide(&subject("s"), ok).await.forward);
}

fn micros_from_now(d: std::time::Duration, later: bool) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let t = if later { now + d } else { now - d };
    i64::try_from(t.as_micros()).unwrap()
}

// Regression (issue 10, class 8): labels must stay on the agent for as long as the
// policy says (`sessions.label_ttl`) — not for the life of one process, and not for
// ever. The store is asked directly at chosen instants, so nothing here waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_labels_last_as_long_as_the_policy_s_label_ttl() {
    let dir = tempfile::tempdir().unwrap();
    drop(AuditStore::open(&dir.path().join("audit.db"), AuditOptions::default()).unwrap());
    let store = Arc::new(SqliteStore::open(&dir.path().join("audit.db")).unwrap());
    let policy = format!("{POLICY}sessions: {{label_ttl: 1h}}\n");
    let svc = service_with(dir.path(), store.clone(), &policy);
    let labels = svc
        .label(
            &subject("s1"),
            &json!({"content": [{"type": "text", "text": "AKIAQYLPMN5HHHFPZAM2 wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEZ"}]}),
        )
        .unwrap();
    assert_eq!(labels, vec!["credentials".to_string()]);
    let key = conductor_gate::TaintKey {
        agent: "bot".into(),
        workflow: None,
    };
    let minute = std::time::Duration::from_secs(60);
    let in_50m = store
        .labels(&key, micros_from_now(50 * minute, true))
        .unwrap();
    assert!(in_50m.contains("credentials"), "{in_50m:?}");
    let in_70m = store
        .labels(&key, micros_from_now(70 * minute, true))
        .unwrap();
    assert!(in_70m.is_empty(), "labels outlived label_ttl: {in_70m:?}");
    // Another workflow of the same agent is a separate key.
    let other = conductor_gate::TaintKey {
        agent: "bot".into(),
        workflow: Some("w2".into()),
    };
    assert!(
        store
            .labels(&other, micros_from_now(minute, false))
            .unwrap()
            .is_empty()
    );
    // And the session that received them is refused the public send meanwhile.
    let after = svc
        .decide(&subject("s2"), call("slack.post", json!({"text": "hello"})))
        .await;
    assert!(!after.forward, "{:?}", after.decision);
}
