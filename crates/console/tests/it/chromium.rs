//! The console in a real headless Chromium (Debian's `chromium`, installed by
//! scripts/setup-debian.sh; driven over the DevTools protocol by `headless_chrome`,
//! which launches the system browser and downloads nothing).
//!
//! A call is held in the approvals store with a real waiter on it (the store's one
//! watcher, as a held `wrap` call waits); the approver logs in, sees it, approves it;
//! the waiter is released and the call completes (its record is written), and the
//! record appears in the audit explorer. Screenshots go to target/test-artifacts/.

use std::sync::mpsc;
use std::time::Duration;

use conductor_audit::{
    ApprovalStore as _, AuditOptions, AuditStore, NewApproval, Outcome, SqliteApprovals,
};
use conductor_console::{Approver, Approvers, ConsoleOptions};
use serde_json::json;

use crate::browser::{approve, chromium, click, deny, go, launch, log_in, shot, text};

use crate::http::{KEY, record};

fn held(agent: &str, tool: &str, args: serde_json::Value) -> NewApproval {
    NewApproval {
        agent: agent.into(),
        tool: tool.into(),
        event: "tools/call".into(),
        action: "write".into(),
        session: Some("sess-42".into()),
        workflow: None,
        server: Some(tool.split('.').next().unwrap().into()),
        digest: conductor_audit::call_digest(agent, tool, None, &args),
        policy: "sha256:00".into(),
        arguments: args,
        reasons: json!([{"check": "tool", "rule": "roles.operator.approve[0]",
                         "message": "`github.merge_pr` requires approval"}]),
        ttl: Duration::from_secs(600),
    }
}

struct Server {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(opts: ConsoleOptions) -> Server {
    let (atx, arx) = mpsc::channel();
    let (stx, srx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            atx.send(l.local_addr().unwrap()).unwrap();
            conductor_console::serve(l, opts, async {
                let _ = srx.await;
            })
            .await
            .unwrap();
        });
    });
    Server {
        addr: arx.recv().unwrap(),
        stop: Some(stx),
        thread: Some(thread),
    }
}

#[test]
fn approver_logs_in_approves_a_held_call_and_sees_its_record() {
    let Some(path) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let audit = AuditStore::open(&db, AuditOptions::default()).unwrap();
    audit
        .append(record("research-bot", "fetch.fetch", "allow", json!([])))
        .unwrap();
    let approvals = SqliteApprovals::open(&db).unwrap();
    let args = json!({"repo": "acme/site", "pr": 7});
    let pending = approvals
        .create(held("deploy-bot", "github.merge_pr", args.clone()))
        .unwrap();
    // The held call: waits on the store's watcher, then completes (its record written).
    let (done_tx, done_rx) = mpsc::channel();
    let ticket = approvals.wait(&pending.id);
    let waiter = std::thread::spawn(move || {
        let outcome = ticket.wait_blocking();
        if let Outcome::Approved { .. } = &outcome {
            let mut r = record("deploy-bot", "github.merge_pr", "allow", json!([]));
            r.event = "tools/call".into();
            r.arguments = Some(json!({"repo": "acme/site", "pr": 7}));
            r.session = Some("sess-42".into());
            audit.append(r).unwrap();
        }
        done_tx.send(outcome).unwrap();
    });

    let server = start(ConsoleOptions {
        audit: db.clone(),
        approvers: Approvers::new(vec![Approver::with_key("alice", KEY).unwrap()]).unwrap(),
        tls: false,
        hosts: vec![],
    });
    let base = format!("http://{}", server.addr);
    let profile = tempfile::tempdir().unwrap();
    let browser = launch(path, profile.path());
    let tab = browser.new_tab().unwrap();
    tab.set_default_timeout(Duration::from_secs(20));

    // Not logged in: the console sends the browser to its login page.
    go(&tab, &format!("{base}/console/approvals"));
    assert!(
        tab.get_url().ends_with("/console/login"),
        "{}",
        tab.get_url()
    );
    shot(&tab, "01-login.png");

    // A wrong key first: refused, still on the login page.
    log_in(&tab, "alice", "not-the-key");
    let refused = text(&tab, ".alert-bad");
    assert!(refused.contains("do not match an approver"), "{refused}");

    log_in(&tab, "alice", KEY);

    // The held call is there, with its agent, tool and reasons.
    let card = tab.wait_for_element("article.pending").unwrap();
    let card_text = card.get_inner_text().unwrap();
    assert!(
        card_text.contains("github.merge_pr") && card_text.contains("deploy-bot"),
        "{card_text}"
    );
    assert!(card_text.contains("requires approval"), "{card_text}");
    assert!(card_text.contains(&pending.id), "{card_text}");
    assert!(card_text.contains("acme/site"), "{card_text}");
    // The script ran under the CSP: the pending count shows in the header.
    let count = tab
        .wait_for_element("#pending-count:not([hidden])")
        .unwrap();
    assert_eq!(count.get_inner_text().unwrap().trim(), "1");
    shot(&tab, "02-pending.png");

    // Live: a second call is held while the page is open; it appears without a reload.
    let second = approvals
        .create(held(
            "deploy-bot",
            "github.merge_pr",
            json!({"repo": "acme/api", "pr": 9}),
        ))
        .unwrap();
    tab.wait_for_element(&format!("article.pending[data-id=\"{}\"]", second.id))
        .unwrap();
    shot(&tab, "03-live.png");

    // Approve the first one (scope: this call).
    let flash = approve(&tab, &pending.id, None);
    assert!(flash.contains("approved"), "{flash}");
    shot(&tab, "04-approved.png");

    // The held call is released and completes.
    match done_rx.recv_timeout(Duration::from_secs(20)).unwrap() {
        Outcome::Approved {
            approver, scope, ..
        } => {
            assert_eq!(approver, "alice");
            assert_eq!(scope, "call");
        }
        other => panic!("the held call ended {other:?}"),
    }
    waiter.join().unwrap();

    // Its records appear in the explorer: the grant naming the approver, and the call.
    go(&tab, &format!("{base}/console/audit?tool=github.*"));
    let table = text(&tab, "#records");
    assert!(table.contains("github.merge_pr"), "{table}");
    assert!(
        table.contains("ALLOW") || table.contains("allow"),
        "{table}"
    );
    assert!(table.contains("approval"), "{table}");
    let status = text(&tab, "#chain-status");
    assert!(status.contains("hash chain verified"), "{status}");
    shot(&tab, "05-audit.png");

    // The grant's record names alice.
    let rows = tab.find_elements("#records tbody tr").unwrap();
    assert!(rows.len() >= 2);
    go(&tab, &format!("{base}/console/audit?check=approval"));
    click(&tab, "#records tbody tr a");
    let detail = text(&tab, "#main");
    assert!(detail.contains("alice"), "{detail}");
    shot(&tab, "06-record.png");

    // The other call still waits; deny it with a reason.
    go(&tab, &format!("{base}/console/approvals"));
    let flash = deny(&tab, &second.id, "not this repository", None);
    assert!(flash.contains("denied"), "{flash}");
    let after = approvals.show(&second.id).unwrap();
    assert_eq!(after.decided_by.as_deref(), Some("alice"));
    assert_eq!(after.note.as_deref(), Some("not this repository"));
    assert!(tab.find_element("article.pending").is_err());
    shot(&tab, "07-denied.png");

    // The chain still verifies with the decisions in it.
    let report = conductor_audit::AuditReader::open(&db)
        .unwrap()
        .verify(None)
        .unwrap();
    assert!(report.broken.is_none(), "{:?}", report.broken);
    drop(server);
}
