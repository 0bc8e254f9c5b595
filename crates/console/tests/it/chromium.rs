//! The console in a real headless Chromium (Debian's `chromium`, installed by
//! scripts/setup-debian.sh; driven over the DevTools protocol by `headless_chrome`,
//! which launches the system browser and downloads nothing).
//!
//! A call is held in the approvals store with a real waiter on it (the store's one
//! watcher, as a held `wrap` call waits); the approver logs in, sees it, approves it;
//! the waiter is released and the call completes (its record is written), and the
//! record appears in the audit explorer. Screenshots go to target/test-artifacts/.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use conductor_audit::{
    ApprovalStore as _, AuditOptions, AuditStore, NewApproval, Outcome, SqliteApprovals,
};
use conductor_console::{Approver, Approvers, ConsoleOptions};
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions};
use serde_json::json;

use crate::http::{KEY, record};

fn chromium() -> Option<PathBuf> {
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    None
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts/console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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

fn shot(tab: &headless_chrome::Tab, name: &str) {
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    std::fs::write(artifacts().join(name), png).unwrap();
}

#[test]
fn approver_logs_in_approves_a_held_call_and_sees_its_record() {
    let Some(path) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing: scripts/setup-debian.sh installs it"
        );
        eprintln!("SKIPPED: chromium is not installed (scripts/setup-debian.sh installs it)");
        return;
    };
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
    let browser = Browser::new(
        LaunchOptions::default_builder()
            .path(Some(path))
            .headless(true)
            .sandbox(false)
            .window_size(Some((1280, 1000)))
            .user_data_dir(Some(profile.path().to_path_buf()))
            .idle_browser_timeout(Duration::from_secs(60))
            .args(vec![
                // Nothing leaves this machine: every name but the console's fails.
                std::ffi::OsStr::new("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
                std::ffi::OsStr::new("--no-proxy-server"),
                std::ffi::OsStr::new("--disable-background-networking"),
                std::ffi::OsStr::new("--disable-component-update"),
                std::ffi::OsStr::new("--disable-dev-shm-usage"),
            ])
            .build()
            .unwrap(),
    )
    .unwrap();
    let tab = browser.new_tab().unwrap();
    tab.set_default_timeout(Duration::from_secs(20));

    // Not logged in: the console sends the browser to its login page.
    tab.navigate_to(&format!("{base}/console/approvals"))
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    assert!(
        tab.get_url().ends_with("/console/login"),
        "{}",
        tab.get_url()
    );
    shot(&tab, "01-login.png");

    // A wrong key first: refused, still on the login page.
    tab.wait_for_element("#name").unwrap().click().unwrap();
    tab.type_str("alice").unwrap();
    tab.wait_for_element("#key").unwrap().click().unwrap();
    tab.type_str("not-the-key").unwrap();
    tab.wait_for_element("#login").unwrap().click().unwrap();
    let refused = tab
        .wait_for_element(".alert-bad")
        .unwrap()
        .get_inner_text()
        .unwrap();
    assert!(refused.contains("do not match an approver"), "{refused}");

    tab.wait_for_element("#name").unwrap().click().unwrap();
    tab.type_str("alice").unwrap();
    tab.wait_for_element("#key").unwrap().click().unwrap();
    tab.type_str(KEY).unwrap();
    tab.wait_for_element("#login").unwrap().click().unwrap();

    // The held call is there, with its agent, tool and reasons.
    let card = tab.wait_for_element("article.pending").unwrap();
    let text = card.get_inner_text().unwrap();
    assert!(
        text.contains("github.merge_pr") && text.contains("deploy-bot"),
        "{text}"
    );
    assert!(text.contains("requires approval"), "{text}");
    assert!(text.contains(&pending.id), "{text}");
    assert!(text.contains("acme/site"), "{text}");
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
    tab.wait_for_element(&format!(
        "article.pending[data-id=\"{}\"] button.approve",
        pending.id
    ))
    .unwrap()
    .click()
    .unwrap();
    let flash = tab
        .wait_for_element("#flash")
        .unwrap()
        .get_inner_text()
        .unwrap();
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
    tab.navigate_to(&format!("{base}/console/audit?tool=github.*"))
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    let table = tab
        .wait_for_element("#records")
        .unwrap()
        .get_inner_text()
        .unwrap();
    assert!(table.contains("github.merge_pr"), "{table}");
    assert!(
        table.contains("ALLOW") || table.contains("allow"),
        "{table}"
    );
    assert!(table.contains("approval"), "{table}");
    let status = tab
        .wait_for_element("#chain-status")
        .unwrap()
        .get_inner_text()
        .unwrap();
    assert!(status.contains("hash chain verified"), "{status}");
    shot(&tab, "05-audit.png");

    // The grant's record names alice.
    let rows = tab.find_elements("#records tbody tr").unwrap();
    assert!(rows.len() >= 2);
    tab.navigate_to(&format!("{base}/console/audit?check=approval"))
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    tab.wait_for_element("#records tbody tr a")
        .unwrap()
        .click()
        .unwrap();
    let detail = tab
        .wait_for_element("#main")
        .unwrap()
        .get_inner_text()
        .unwrap();
    assert!(detail.contains("alice"), "{detail}");
    shot(&tab, "06-record.png");

    // The other call still waits; deny it with a reason.
    tab.navigate_to(&format!("{base}/console/approvals"))
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    tab.wait_for_element(&format!(
        "article.pending[data-id=\"{}\"] input[name=reason]",
        second.id
    ))
    .unwrap()
    .click()
    .unwrap();
    tab.type_str("not this repository").unwrap();
    tab.wait_for_element(&format!(
        "article.pending[data-id=\"{}\"] button.deny",
        second.id
    ))
    .unwrap()
    .click()
    .unwrap();
    let flash = tab
        .wait_for_element("#flash")
        .unwrap()
        .get_inner_text()
        .unwrap();
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
