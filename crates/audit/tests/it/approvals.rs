//! The approvals store: held calls, decisions, grants, waiting, and the chain.

use std::time::{Duration, Instant};

use conductor_audit::{
    ApprovalFilter, ApprovalStore, AuditReader, GrantQuery, NewApproval, Outcome, Scope,
    SqliteApprovals, Status, call_digest,
};
use serde_json::json;

use crate::common::{fill, temp_store, verify};

fn held(agent: &str, args: serde_json::Value, ttl: Duration) -> NewApproval {
    NewApproval {
        agent: agent.into(),
        tool: "github.merge_pr".into(),
        event: "tools/call".into(),
        action: "write".into(),
        session: Some("s1".into()),
        workflow: None,
        server: Some("github".into()),
        digest: call_digest(agent, "github.merge_pr", None, &args),
        policy: format!("sha256:{}", "ab".repeat(32)),
        arguments: args,
        reasons: json!([{"check": "tool", "rule": "roles.operator.approve[0]", "message": "needs approval"}]),
        ttl,
    }
}

fn records_of(path: &std::path::Path, event: &str) -> Vec<conductor_audit::Record> {
    AuditReader::open(path)
        .unwrap()
        .last(1000)
        .unwrap()
        .into_iter()
        .filter(|r| r.event == event)
        .collect()
}

#[test]
fn approve_records_the_grant_in_the_chain_and_it_verifies() {
    let (_dir, path, store) = temp_store();
    fill(&store, 5);
    let ap = SqliteApprovals::open(&path).unwrap();
    let a = ap
        .create(held(
            "deploy-bot",
            json!({"pr": 7}),
            Duration::from_secs(60),
        ))
        .unwrap();
    assert_eq!(a.id.len(), 32);
    let listed = ap
        .list(&ApprovalFilter {
            pending_only: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].to_json()["status"], "pending");
    let done = ap.approve(&a.id, "alice", &Scope::Call).unwrap();
    assert_eq!(done.status, Status::Approved);
    // Interleave with the store's own writer: the chain must not fork.
    fill(&store, 3);
    store.flush().unwrap();
    let report = verify(&path);
    assert!(report.broken.is_none(), "{:?}", report.broken);
    assert_eq!(report.verified, 9);
    let grants = records_of(&path, "approval-grant");
    assert_eq!(grants.len(), 1);
    let g = &grants[0];
    assert_eq!(g.agent, "deploy-bot");
    assert_eq!(g.arguments.as_ref().unwrap()["approver"], "alice");
    assert_eq!(g.arguments.as_ref().unwrap()["approval"], a.id.as_str());
    assert!(
        g.reasons[0]["message"]
            .as_str()
            .unwrap()
            .contains("`alice`")
    );
    // Decided once only.
    assert!(ap.deny(&a.id, "bob", "late").is_err());
    assert!(
        ap.list(&ApprovalFilter {
            pending_only: true,
            ..Default::default()
        })
        .unwrap()
        .is_empty()
    );
}

#[test]
fn session_grant_releases_the_same_call_in_the_session_only() {
    let (_dir, path, _store) = temp_store();
    let ap = SqliteApprovals::open(&path).unwrap();
    let args = json!({"pr": 7});
    let a = ap
        .create(held("deploy-bot", args.clone(), Duration::from_secs(60)))
        .unwrap();
    let done = ap
        .approve(&a.id, "alice", &Scope::Session { duration: None })
        .unwrap();
    let gid = done.grant.clone().unwrap();
    let digest = call_digest("deploy-bot", "github.merge_pr", None, &args);
    let q = GrantQuery {
        agent: "deploy-bot",
        tool: "github.merge_pr",
        digest: &digest,
        session: Some("s1"),
        arguments: &args,
    };
    assert_eq!(ap.find_grant(&q).unwrap().unwrap().id, gid);
    // Another session, other arguments, another agent: not covered.
    assert!(
        ap.find_grant(&GrantQuery {
            session: Some("s2"),
            ..q
        })
        .unwrap()
        .is_none()
    );
    let other = json!({"pr": 8});
    let other_digest = call_digest("deploy-bot", "github.merge_pr", None, &other);
    assert!(
        ap.find_grant(&GrantQuery {
            digest: &other_digest,
            arguments: &other,
            ..q
        })
        .unwrap()
        .is_none()
    );
    assert!(
        ap.find_grant(&GrantQuery {
            agent: "research-bot",
            ..q
        })
        .unwrap()
        .is_none()
    );
    // Revoked: gone, and recorded.
    ap.revoke(&gid, "bob").unwrap();
    assert!(ap.find_grant(&q).unwrap().is_none());
    assert!(ap.revoke(&gid, "bob").is_err());
    assert_eq!(records_of(&path, "approval-revoke").len(), 1);
    assert!(verify(&path).broken.is_none());
}

#[test]
fn window_grant_matches_its_pattern_and_nothing_else() {
    let (_dir, path, _store) = temp_store();
    let ap = SqliteApprovals::open(&path).unwrap();
    let a = ap
        .create(held(
            "deploy-bot",
            json!({"repo": "acme/web"}),
            Duration::from_secs(60),
        ))
        .unwrap();
    ap.approve(
        &a.id,
        "alice",
        &Scope::Window {
            duration: Duration::from_secs(600),
            pattern: vec![("/repo".into(), "acme/*".into())],
        },
    )
    .unwrap();
    let check = |args: serde_json::Value| {
        let d = call_digest("deploy-bot", "github.merge_pr", None, &args);
        ap.find_grant(&GrantQuery {
            agent: "deploy-bot",
            tool: "github.merge_pr",
            digest: &d,
            session: Some("other"),
            arguments: &args,
        })
        .unwrap()
        .is_some()
    };
    assert!(check(json!({"repo": "acme/api"})));
    assert!(!check(json!({"repo": "evil/acme"})));
    // Not a string, or missing: no match (fail closed).
    assert!(!check(json!({"repo": ["acme/api"]})));
    assert!(!check(json!({})));
    // A window without a duration is refused.
    let b = ap
        .create(held("deploy-bot", json!({}), Duration::from_secs(60)))
        .unwrap();
    assert!(
        ap.approve(
            &b.id,
            "alice",
            &Scope::Window {
                duration: Duration::ZERO,
                pattern: vec![]
            }
        )
        .is_err()
    );
}

#[test]
fn window_pattern_pointers_are_json_pointers() {
    let (_dir, path, _store) = temp_store();
    let ap = SqliteApprovals::open(&path).unwrap();
    let window = |p: &str| Scope::Window {
        duration: Duration::from_secs(600),
        pattern: vec![(p.into(), "acme/*".into())],
    };
    // Not a pointer, a bad escape, or the withheld-member segment findings are
    // written with (`~k<i>` names a member by position, not by name): refused.
    for bad in ["repo", "/a~2", "/~k0"] {
        let a = ap
            .create(held("deploy-bot", json!({}), Duration::from_secs(60)))
            .unwrap();
        let err = ap.approve(&a.id, "alice", &window(bad)).unwrap_err();
        assert!(
            err.to_string().contains("not a JSON pointer"),
            "{bad}: {err}"
        );
    }
    // RFC 6901 escapes are read: `~1` is `/`.
    let a = ap
        .create(held("deploy-bot", json!({}), Duration::from_secs(60)))
        .unwrap();
    ap.approve(&a.id, "alice", &window("/a~1b")).unwrap();
    let args = json!({"a/b": "acme/web"});
    let d = call_digest("deploy-bot", "github.merge_pr", None, &args);
    let q = GrantQuery {
        agent: "deploy-bot",
        tool: "github.merge_pr",
        digest: &d,
        session: None,
        arguments: &args,
    };
    assert!(ap.find_grant(&q).unwrap().is_some());
}

#[test]
fn a_held_call_is_woken_by_a_decision_through_another_handle() {
    let (_dir, path, _store) = temp_store();
    let holder = SqliteApprovals::open(&path).unwrap();
    let approver = SqliteApprovals::open(&path).unwrap();
    let a = holder
        .create(held(
            "deploy-bot",
            json!({"pr": 1}),
            Duration::from_secs(60),
        ))
        .unwrap();
    let ticket = holder.wait(&a.id);
    let t = std::thread::spawn(move || ticket.wait_blocking());
    std::thread::sleep(Duration::from_millis(50));
    let released = Instant::now();
    approver.deny(&a.id, "carol", "not today").unwrap();
    let outcome = t.join().unwrap();
    assert_eq!(
        outcome,
        Outcome::Denied {
            approver: "carol".into(),
            reason: "not today".into()
        }
    );
    // (No timing assertion: the latency is measured by the bench.)
    let _ = released.elapsed();
    assert_eq!(records_of(&path, "approval-deny").len(), 1);
}

#[test]
fn an_undecided_call_expires_and_the_expiry_is_recorded() {
    let (_dir, path, _store) = temp_store();
    let ap = SqliteApprovals::open(&path).unwrap();
    let a = ap
        .create(held(
            "deploy-bot",
            json!({"pr": 2}),
            Duration::from_millis(200),
        ))
        .unwrap();
    let outcome = ap.wait(&a.id).wait_blocking();
    assert_eq!(outcome, Outcome::Expired);
    assert_eq!(ap.show(&a.id).unwrap().status, Status::Expired);
    let rec = records_of(&path, "approval-expire");
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].reasons[0]["check"], "approval");
    assert!(ap.approve(&a.id, "alice", &Scope::Call).is_err());
    assert!(verify(&path).broken.is_none());
}

#[test]
fn ids_are_unguessable_and_unknown_ids_are_refused() {
    let (_dir, path, _store) = temp_store();
    let ap = SqliteApprovals::open(&path).unwrap();
    let a = ap
        .create(held("x", json!({}), Duration::from_secs(5)))
        .unwrap();
    let b = ap
        .create(held("x", json!({}), Duration::from_secs(5)))
        .unwrap();
    assert_ne!(a.id, b.id);
    assert!(a.id.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(ap.show("0000").is_err());
    assert!(matches!(
        ap.wait("0000").wait_blocking(),
        Outcome::Failed(_)
    ));
    assert!(ap.approve(&a.id, "", &Scope::Call).is_err());
    assert!(ap.deny(&a.id, "alice", " ").is_err());
}

#[test]
fn glob_matching() {
    use conductor_audit::approvals::glob_match;
    assert!(glob_match("acme/*", "acme/web"));
    assert!(glob_match("*", ""));
    assert!(glob_match("a?c", "abc"));
    assert!(!glob_match("a?c", "ac"));
    assert!(glob_match("*.example.com/*", "https://x.example.com/a"));
    assert!(!glob_match("acme/*", "acme"));
}
