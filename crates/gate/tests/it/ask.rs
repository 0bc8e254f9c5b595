//! Approving in the MCP client: the elicitation answer and the signed `requestState`
//! of an `input_required` result (tampered, expired, replayed, for other arguments).

use std::sync::Arc;

use conductor_audit::{
    ApprovalFilter, ApprovalStore, AuditOptions, AuditReader, AuditStore, SqliteApprovals, Status,
};
use conductor_core::{Check, Effect};
use conductor_gate::{
    APPROVAL_INPUT_KEY, Answered, Call, ClientAnswer, GateResolver, MemoryStore, ResolverConfig,
    Service, ServiceOptions, Subject, Verdict,
};
use conductor_scan::FingerprintKey;
use serde_json::{Value, json};

fn policy(ttl: &str, in_client: bool) -> conductor_policy::Policy {
    let text = format!(
        r#"
version: 1
agents:
  bot: {{roles: [r], clearance: secret}}
  other: {{roles: [r], clearance: secret}}
roles:
  r:
    approve:
      - tools: ["github.merge_pr"]
tools:
  github.merge_pr: {{action: write, destinations: []}}
data:
  labels:
    credentials: {{level: secret, detect: [secrets]}}
sessions:
  approval_ttl: {ttl}
  approve_in_client: {in_client}
"#
    );
    conductor_policy::load_str(&text, "policy.yaml", None).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    service: Service,
    store: Arc<SqliteApprovals>,
    db: std::path::PathBuf,
}

fn fixture(ttl: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let audit = Arc::new(AuditStore::open(&db, AuditOptions::default()).unwrap());
    let service = Service::new(
        policy(ttl, true),
        GateResolver::new(ResolverConfig::from_args(&[], true).unwrap()),
        Arc::new(FingerprintKey([9; 32])),
        audit,
        Arc::new(MemoryStore::default()),
        ServiceOptions::default(),
    );
    let store = Arc::new(SqliteApprovals::open(&db).unwrap());
    service.set_approvals(store.clone());
    Fixture {
        _dir: dir,
        service,
        store,
        db,
    }
}

fn subject(agent: &str) -> Subject {
    Subject {
        agent: agent.into(),
        workflow: None,
        session: "s1".into(),
        server: Some("github".into()),
        auth: None,
    }
}

fn merge(pr: u64) -> Call {
    Call::new(
        "tools/call",
        "github.merge_pr",
        json!({"pr": pr, "token": "ghp_R8xK2mQ9vL4nT7wP1sZ6yB3cF5hJ0dG8aE2u"}),
    )
}

fn approve() -> Value {
    json!({"action": "accept", "content": {"decision": "approve"}})
}

/// Hold a call and return the signed state of its `input_required` result.
async fn held_state(f: &Fixture, pr: u64) -> (Verdict, String) {
    let v = f.service.decide(&subject("bot"), merge(pr)).await;
    assert_eq!(v.decision.decision, Effect::Approve);
    let held = v.held.clone().expect("the call is held");
    let result = f.service.input_required(&held).unwrap();
    assert_eq!(result["resultType"], "input_required");
    let ask = &result["inputRequests"][APPROVAL_INPUT_KEY];
    assert_eq!(ask["method"], "elicitation/create");
    // The person sees the tool and the arguments redacted, never the secret.
    let message = ask["params"]["message"].as_str().unwrap();
    assert!(message.contains("github.merge_pr"), "{message}");
    assert!(!message.contains("ghp_R8xK2"), "{message}");
    let state = result["requestState"].as_str().unwrap().to_string();
    // INVARIANT: the result the model could read carries no approval id.
    assert!(!result.to_string().contains(held.id()));
    (v, state)
}

async fn retry(f: &Fixture, agent: &str, pr: u64, state: &str, response: Value) -> Verdict {
    let answered = Answered {
        state: state.to_string(),
        response,
    };
    f.service
        .decide_answered(&subject(agent), merge(pr), answered)
        .await
}

fn refused_by(v: &Verdict, rule: &str) {
    assert!(!v.forward, "{:?}", v.decision);
    assert_eq!(v.decision.decision, Effect::Deny);
    assert!(
        v.decision
            .reasons
            .iter()
            .any(|r| r.check == Check::Approval && r.rule == *rule),
        "expected {rule}: {:?}",
        v.decision.reasons
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_required_answer_releases_the_call_and_records_the_client_user_as_approver() {
    let f = fixture("10m");
    let (_, state) = held_state(&f, 1).await;
    let v = retry(&f, "bot", 1, &state, approve()).await;
    assert!(v.forward, "{:?}", v.decision);
    assert_eq!(v.decision.decision, Effect::Allow);
    let approved = f.store.list(&ApprovalFilter::default()).unwrap();
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0].status, Status::Approved);
    assert_eq!(approved[0].decided_by.as_deref(), Some("elicitation:bot"));
    // The grant is in the chain, and the chain verifies.
    let reader = AuditReader::open(&f.db).unwrap();
    assert!(reader.verify(None).unwrap().broken.is_none());
    let grants = reader
        .last(100)
        .unwrap()
        .into_iter()
        .filter(|r| r.event == "approval-grant")
        .count();
    assert_eq!(grants, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_required_decline_denies_and_the_store_says_so() {
    let f = fixture("10m");
    let (_, state) = held_state(&f, 1).await;
    let v = retry(&f, "bot", 1, &state, json!({"action": "decline"})).await;
    refused_by(&v, "approval.denied");
    let a = f.store.list(&ApprovalFilter::default()).unwrap();
    assert_eq!(a[0].status, Status::Denied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_state_tampered_is_refused() {
    let f = fixture("10m");
    let (_, state) = held_state(&f, 1).await;
    // One character of the signed body changed.
    let (head, body_tag) = state.split_at("conductor.v1.".len());
    let mut bytes: Vec<char> = body_tag.chars().collect();
    bytes[3] = if bytes[3] == 'A' { 'B' } else { 'A' };
    let tampered = format!("{head}{}", bytes.into_iter().collect::<String>());
    refused_by(
        &retry(&f, "bot", 1, &tampered, approve()).await,
        "approval.state",
    );
    // A state without its tag, and one signed under another key.
    let untagged = state.rsplit_once('.').unwrap().0.to_string();
    refused_by(
        &retry(&f, "bot", 1, &untagged, approve()).await,
        "approval.state",
    );
    // Still pending: nothing was approved by the tampered answers.
    let a = f.store.list(&ApprovalFilter::default()).unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].status, Status::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_state_signed_under_another_installation_key_is_refused() {
    let f = fixture("10m");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let other = Service::new(
        policy("10m", true),
        GateResolver::new(ResolverConfig::from_args(&[], true).unwrap()),
        Arc::new(FingerprintKey([1; 32])),
        Arc::new(AuditStore::open(&db, AuditOptions::default()).unwrap()),
        Arc::new(MemoryStore::default()),
        ServiceOptions::default(),
    );
    other.set_approvals(Arc::new(SqliteApprovals::open(&db).unwrap()));
    let v = other.decide(&subject("bot"), merge(1)).await;
    let foreign = other.request_state(v.held.as_ref().unwrap()).unwrap();
    refused_by(
        &retry(&f, "bot", 1, &foreign, approve()).await,
        "approval.state",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_state_replayed_is_refused() {
    let f = fixture("10m");
    let (_, state) = held_state(&f, 1).await;
    let first = retry(&f, "bot", 1, &state, approve()).await;
    assert!(first.forward);
    refused_by(
        &retry(&f, "bot", 1, &state, approve()).await,
        "approval.state",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_state_replayed_into_another_process_is_refused_by_the_store() {
    // Another process (same key, same store) has not seen the nonce: the approval's
    // status refuses the second answer.
    let f = fixture("10m");
    let (_, state) = held_state(&f, 1).await;
    assert!(retry(&f, "bot", 1, &state, approve()).await.forward);
    let audit = Arc::new(AuditStore::open(&f.db, AuditOptions::default()).unwrap());
    let second = Service::new(
        policy("10m", true),
        GateResolver::new(ResolverConfig::from_args(&[], true).unwrap()),
        Arc::new(FingerprintKey([9; 32])),
        audit,
        Arc::new(MemoryStore::default()),
        ServiceOptions::default(),
    );
    second.set_approvals(Arc::new(SqliteApprovals::open(&f.db).unwrap()));
    let v = second
        .decide_answered(
            &subject("bot"),
            merge(1),
            Answered {
                state,
                response: approve(),
            },
        )
        .await;
    refused_by(&v, "approval.expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_state_expired_is_refused() {
    let f = fixture("1s");
    let (_, state) = held_state(&f, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    refused_by(
        &retry(&f, "bot", 1, &state, approve()).await,
        "approval.expired",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_state_for_other_arguments_or_another_agent_is_refused() {
    let f = fixture("10m");
    let (_, state) = held_state(&f, 1).await;
    refused_by(
        &retry(&f, "bot", 2, &state, approve()).await,
        "approval.state",
    );
    refused_by(
        &retry(&f, "other", 1, &state, approve()).await,
        "approval.state",
    );
    // The held call can still be answered once, properly.
    assert!(retry(&f, "bot", 1, &state, approve()).await.forward);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elicitation_answer_releases_or_denies_the_held_call_through_the_store() {
    let f = fixture("10m");
    let v = f.service.decide(&subject("bot"), merge(1)).await;
    let held = v.held.unwrap();
    let form = f.service.approval_form(&held);
    assert_eq!(form["mode"], "form");
    assert_eq!(
        form["requestedSchema"]["properties"]["decision"]["enum"],
        json!(["approve", "deny"])
    );
    let waiting = {
        let held = held.clone();
        let service = &f.service;
        async move { service.release(&held).await }
    };
    f.service
        .answer_in_client(&held, &ClientAnswer::Approve)
        .unwrap();
    let released = waiting.await;
    assert!(released.forward, "{:?}", released.decision);

    let v = f.service.decide(&subject("bot"), merge(2)).await;
    let held = v.held.unwrap();
    f.service
        .answer_in_client(
            &held,
            &ClientAnswer::from_elicit_result(&json!({"action": "cancel"})),
        )
        .unwrap();
    let released = f.service.release(&held).await;
    refused_by(&released, "approval.denied");
    // INVARIANT: what the agent reads carries no approval id.
    assert!(
        !serde_json::to_string(&released.decision)
            .unwrap()
            .contains(held.id())
    );
}

#[test]
fn only_accept_with_approve_approves() {
    let cases = [
        (
            json!({"action": "accept", "content": {"decision": "approve"}}),
            true,
        ),
        (
            json!({"action": "accept", "content": {"decision": "deny"}}),
            false,
        ),
        (
            json!({"action": "accept", "content": {"decision": "APPROVE"}}),
            false,
        ),
        (json!({"action": "accept"}), false),
        (
            json!({"action": "decline", "content": {"decision": "approve"}}),
            false,
        ),
        (json!({"action": "cancel"}), false),
        (json!("approve"), false),
        (Value::Null, false),
    ];
    for (answer, approves) in cases {
        assert_eq!(
            ClientAnswer::from_elicit_result(&answer) == ClientAnswer::Approve,
            approves,
            "{answer}"
        );
    }
}
