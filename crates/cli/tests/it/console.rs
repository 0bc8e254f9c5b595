//! The console in a real headless Chromium over a REAL held call: the `conductor`
//! binary (`serve` with `/console`, server-everything over stdio behind a spy), an
//! agent's raw JSON-RPC client over HTTP whose `tools/call` the policy holds, and an
//! approver who logs in, sees it (arguments redacted), approves it with a scope or
//! denies it. The client's own answer is the witness: the upstream's real result after
//! the approval, a refusal with check `approval` and the approver's reason after the
//! denial. The agent's credential is refused on every approval endpoint (console and
//! JSON API) against the held call's real id. Screenshots: target/test-artifacts/console/.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::approvals::Wrap;
use crate::serve::{
    Answer, DECISION_KEY, Gateway, JSON_SSE, Proc, everything_js, http, init_body, peers, spied,
    spy_saw, text_of,
};

#[path = "../../../console/tests/it/browser.rs"]
#[allow(dead_code, reason = "shared with the console's own browser test")]
mod browser;

use browser::{approve, chromium, click, deny, go, launch, log_in, shot, text};

const WAIT: Duration = Duration::from_secs(60);

/// `everything.echo` is held for a person; the agent may hold `personal` data (so the
/// e-mail address in the arguments is a finding, not a refusal: redacted when shown).
const POLICY: &str = r#"version: 1
agents:
  research-bot:
    roles: [researcher]
    clearance: confidential
roles:
  researcher:
    allow:
      - tools: ["everything.get-sum"]
    approve:
      - tools: ["everything.echo"]
tools:
  everything.echo: {action: write, destinations: []}
  everything.get-sum: {action: read, destinations: []}
data:
  levels: [public, internal, confidential, secret]
  labels:
    personal: {level: confidential, detect: [email]}
"#;

const EMAIL: &str = "alice.smith@example.com";

/// `conductor console --new-key alice`: (the key, the approvers-file entry).
fn approver_key(dir: &std::path::Path) -> (String, String) {
    let r = crate::run_in(dir, &["console", "--new-key", "alice"], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let key = r
        .stderr
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .trim()
        .to_string();
    assert!(key.starts_with("cnd_approver_"), "{}", r.stderr);
    (key, r.stdout.trim_end().to_string())
}

/// One agent session on `/mcp/everything` with its API key.
struct Agent {
    addr: String,
    key: String,
    sid: String,
}

impl Agent {
    fn open(gw: &Gateway, key: &str) -> Agent {
        let auth = format!("Bearer {key}");
        let mut h = JSON_SSE.to_vec();
        h.push(("Authorization", &auth));
        let a = http(&gw.addr, "POST", "/mcp/everything", &h, &init_body());
        assert_eq!(a.status, 200, "{}\n{}", a.body, gw.log());
        Agent {
            addr: gw.addr.clone(),
            key: key.to_string(),
            sid: a.header("mcp-session-id").unwrap().to_string(),
        }
    }

    /// `tools/call echo {message}` on its own thread: the answer comes when decided.
    fn call(&self, id: u64, message: &str) -> mpsc::Receiver<Answer> {
        let (tx, rx) = mpsc::channel();
        let (addr, key, sid) = (self.addr.clone(), self.key.clone(), self.sid.clone());
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                          "params": {"name": "echo", "arguments": {"message": message}}})
        .to_string();
        std::thread::spawn(move || {
            let auth = format!("Bearer {key}");
            let mut h = JSON_SSE.to_vec();
            h.extend([
                ("Authorization", auth.as_str()),
                ("Mcp-Session-Id", sid.as_str()),
                ("MCP-Protocol-Version", "2025-11-25"),
            ]);
            let _ = tx.send(http(&addr, "POST", "/mcp/everything", &h, &body));
        });
        rx
    }
}

/// `conductor approvals ARGS --audit audit.db` in the gateway's folder (another process).
fn approvals(gw: &Gateway, args: &[&str]) -> crate::Run {
    let mut all = vec!["approvals"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--audit", "audit.db"]);
    crate::run_in(gw.dir.path(), &all, "")
}

/// Wait until `n` approvals are pending; their JSON, newest first.
fn pending(gw: &Gateway, n: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let r = approvals(gw, &["list", "--format", "json"]);
        if r.code == 0 {
            let v: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
            if v.len() == n {
                return v;
            }
        }
        assert!(
            started.elapsed() < WAIT,
            "never saw {n} pending approvals\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The reasons the gate gave with a refused call's result.
fn reasons(result: &Value) -> Vec<Value> {
    result["_meta"][DECISION_KEY]["reasons"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Every approval endpoint of the gateway (the console's and the JSON API's), with the
/// agent's own API key (as a bearer token and as `X-API-Key`), aimed at the agent's own
/// held call: refused with 401 or 403, and the call stays held.
fn agent_key_cannot_decide(gw: &Gateway, key: &str, id: &str) {
    let bearer = format!("Bearer {key}");
    let form =
        "csrf=0000000000000000000000000000000000000000000000000000000000000000&scope=call&reason=x";
    let endpoints: Vec<(&str, String, &str)> = vec![
        ("GET", "/console/".into(), ""),
        ("GET", "/console/approvals".into(), ""),
        ("POST", format!("/console/approvals/{id}/approve"), form),
        ("POST", format!("/console/approvals/{id}/deny"), form),
        ("POST", format!("/console/grants/{id}/revoke"), form),
        ("GET", "/console/api/live".into(), ""),
        ("GET", "/console/audit".into(), ""),
        ("GET", "/v1/approvals".into(), ""),
        ("GET", format!("/v1/approvals/{id}"), ""),
        (
            "POST",
            format!("/v1/approvals/{id}/approve"),
            r#"{"scope":"call"}"#,
        ),
        (
            "POST",
            format!("/v1/approvals/{id}/deny"),
            r#"{"reason":"x"}"#,
        ),
        ("GET", "/v1/grants".into(), ""),
        ("POST", format!("/v1/grants/{id}/revoke"), "{}"),
    ];
    for (method, path, body) in &endpoints {
        let ctype = if path.starts_with("/console") {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        };
        for (name, value, want) in [
            // The console refuses any agent-style credential outright (403); the JSON
            // API takes a bearer token only as an approver key (401: it is not one) and
            // refuses the agents' header (403).
            (
                "Authorization",
                bearer.as_str(),
                if path.starts_with("/console") {
                    403
                } else {
                    401
                },
            ),
            ("X-API-Key", key, 403),
        ] {
            let a = http(
                &gw.addr,
                method,
                path,
                &[(name, value), ("Content-Type", ctype)],
                body,
            );
            assert_eq!(a.status, want, "{method} {path} with {name}: {}", a.body);
            assert!(!a.body.contains(key), "{method} {path} echoed the key");
        }
    }
    let still = approvals(gw, &["show", id]);
    assert!(still.stdout.contains("pending"), "{}", still.stdout);
}

#[test]
fn serve_console_in_chromium_approves_and_denies_real_held_calls() {
    let Some(peers) = peers() else { return };
    let Some(chrome) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (alice, entry) = approver_key(dir.path());
    let (agent_key, agent_hash) = conductor_serve::auth::keys::generate().unwrap();
    let spy = dir.path().join("spy.log");
    let server = spied(
        &peers,
        &spy,
        &["node".into(), everything_js(&peers), "stdio".into()],
    );
    let gateway = format!(
        "version: 1\nlisten: \"127.0.0.1:0\"\nservers:\n  everything:\n    command: {server}\n\
         auth:\n  api_keys:\n    - {{agent: research-bot, sha256: \"{agent_hash}\"}}\n\
         approvers:\n{entry}\n"
    );
    let gw = Gateway::launch(dir, POLICY, &gateway, &[]);
    let base = gw.url("/console");

    // 1. The agent's call is held: no answer, nothing upstream.
    let agent = Agent::open(&gw, &agent_key);
    let message = format!("mail {EMAIL} the release notes");
    let first = agent.call(2, &message);
    let held = pending(&gw, 1);
    let id = held[0]["id"].as_str().unwrap().to_string();
    assert_eq!(held[0]["tool"], "everything.echo");
    assert_eq!(held[0]["agent"], "research-bot");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        first.try_recv().is_err(),
        "the held call was answered before anyone decided"
    );
    assert!(
        !spy_saw(&spy).contains("release notes"),
        "the held call reached the upstream"
    );

    // 2. The agent's own key decides nothing, anywhere.
    agent_key_cannot_decide(&gw, &agent_key, &id);

    // 3. The approver logs in and sees the held call, its arguments redacted.
    let profile = tempfile::tempdir().unwrap();
    let browser = launch(chrome, profile.path());
    let tab = browser.new_tab().unwrap();
    tab.set_default_timeout(Duration::from_secs(30));
    go(&tab, &format!("{base}/approvals"));
    assert!(
        tab.get_url().ends_with("/console/login"),
        "{}",
        tab.get_url()
    );
    shot(&tab, "serve-01-login.png");
    log_in(&tab, "alice", &alice);
    tab.wait_for_element("#main").unwrap();
    go(&tab, &format!("{base}/approvals"));
    let card = tab
        .wait_for_element(&format!("article.pending[data-id=\"{id}\"]"))
        .unwrap();
    let card_text = card.get_inner_text().unwrap();
    assert!(
        card_text.contains("everything.echo") && card_text.contains("research-bot"),
        "{card_text}"
    );
    assert!(
        card_text.contains("requires a human to approve"),
        "{card_text}"
    );
    assert!(card_text.contains("release notes"), "{card_text}");
    assert!(card_text.contains("[REDACTED:personal]"), "{card_text}");
    assert!(
        !card_text.contains(EMAIL),
        "the console showed a matched value: {card_text}"
    );
    shot(&tab, "serve-02-pending.png");

    // 4. Approve it for this session.
    let flash = approve(&tab, &id, Some("session"));
    assert!(flash.contains("approved"), "{flash}");
    shot(&tab, "serve-03-approved.png");

    // 5. The client's call completes with the upstream's real answer.
    let answer = first
        .recv_timeout(WAIT)
        .expect("the released call's answer");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let result = &answer.last()["result"];
    assert_ne!(result["isError"], true, "{}", answer.body);
    assert!(
        text_of(result).contains("Echo: mail") && text_of(result).contains("release notes"),
        "not server-everything's echo: {}",
        answer.body
    );
    assert!(spy_saw(&spy).contains("release notes"));
    let shown = approvals(&gw, &["show", &id]);
    assert!(
        shown.stdout.contains("approved") && shown.stdout.contains("alice"),
        "{}",
        shown.stdout
    );

    // 6. Scope `session`: the same call again passes without asking.
    let again = agent
        .call(3, &message)
        .recv_timeout(WAIT)
        .expect("the repeated call's answer");
    assert!(
        text_of(&again.last()["result"]).contains("release notes"),
        "the identical call was not released by the session grant: {}",
        again.body
    );

    // 7. The explorer shows the call's records (held, then allowed by the approval) and
    //    the grant naming alice; the chain verifies.
    go(&tab, &format!("{base}/audit?tool=everything.echo"));
    let table = text(&tab, "#records");
    assert!(table.contains("everything.echo"), "{table}");
    assert!(table.to_lowercase().contains("allow"), "{table}");
    assert!(table.to_lowercase().contains("approve"), "{table}");
    assert!(table.contains("approval"), "{table}");
    let status = text(&tab, "#chain-status");
    assert!(status.contains("hash chain verified"), "{status}");
    shot(&tab, "serve-04-audit.png");
    let events = gw.audit();
    let grant = events
        .iter()
        .position(|(e, _, _)| e == "approval-grant")
        .unwrap_or_else(|| panic!("no grant record: {events:?}"));
    let allowed = events
        .iter()
        .rposition(|(e, t, d)| e == "tools/call" && t == "everything.echo" && d == "allow")
        .unwrap_or_else(|| panic!("no allow record of the call: {events:?}"));
    assert!(
        grant < allowed,
        "the call was recorded allowed before its grant: {events:?}"
    );
    go(&tab, &format!("{base}/audit?check=approval"));
    click(&tab, "#records tbody tr a");
    let detail = text(&tab, "#main");
    assert!(detail.contains("alice"), "{detail}");
    assert!(!detail.contains(EMAIL), "{detail}");
    shot(&tab, "serve-05-record.png");

    // 8. Other arguments: held again; deny it in the console.
    let other = agent.call(4, "publish the draft");
    let held = pending(&gw, 1);
    let other_id = held[0]["id"].as_str().unwrap().to_string();
    assert_ne!(other_id, id);
    go(&tab, &format!("{base}/approvals"));
    let flash = deny(
        &tab,
        &other_id,
        "not before the review",
        Some("serve-06-deny.png"),
    );
    assert!(flash.contains("denied"), "{flash}");
    shot(&tab, "serve-07-denied.png");
    let refused = other.recv_timeout(WAIT).expect("the denied call's answer");
    let result = &refused.last()["result"];
    assert_eq!(result["isError"], true, "{}", refused.body);
    let why = reasons(result);
    assert!(
        why.iter().any(|r| r["check"] == "approval"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.contains("not before the review") && m.contains("alice"))),
        "{}",
        refused.body
    );
    assert!(
        !spy_saw(&spy).contains("publish the draft"),
        "the denied call reached the upstream"
    );

    // 9. The chain verifies with the grant and the denial in it.
    let v = crate::run_in(
        gw.dir.path(),
        &["audit", "verify", "--audit", "audit.db"],
        "",
    );
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    let events = gw.audit();
    assert!(
        events.iter().any(|(e, _, _)| e == "approval-deny"),
        "{events:?}"
    );
    drop(tab);
    drop(browser);
}

/// `conductor console --audit PATH` over the store a `wrap` writes: the approver decides
/// in Chromium, the `wrap` process (held meanwhile) answers its client.
#[test]
fn wrap_console_in_chromium_releases_and_refuses_the_wrapped_clients_held_calls() {
    let Some(chrome) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (alice, entry) = approver_key(dir.path());
    std::fs::write(
        dir.path().join("approvers.yaml"),
        format!("version: 1\napprovers:\n{entry}\n"),
    )
    .unwrap();
    let mut w = Wrap::start(dir.path(), "10m");
    w.call(1, "echo", json!({"text": "merge-7"}));
    let id = w.pending(1)[0]["id"].as_str().unwrap().to_string();
    assert!(w.answered().is_none(), "answered before anyone decided");
    assert!(!w.server_saw("merge-7"), "the held call reached the server");

    let mut cmd = crate::conductor_in(dir.path());
    cmd.arg("console")
        .arg("--audit")
        .arg(&w.audit)
        .args([
            "--approvers",
            "approvers.yaml",
            "--listen",
            "127.0.0.1:0",
            "--print-address",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut console = Proc::spawn(cmd);
    let mut first = String::new();
    BufReader::new(console.child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = format!("http://{}/console", first.trim());

    let profile = tempfile::tempdir().unwrap();
    let browser = launch(chrome, profile.path());
    let tab = browser.new_tab().unwrap();
    tab.set_default_timeout(Duration::from_secs(30));
    go(&tab, &format!("{base}/approvals"));
    log_in(&tab, "alice", &alice);
    tab.wait_for_element("#main").unwrap();
    go(&tab, &format!("{base}/approvals"));
    let card = text(&tab, &format!("article.pending[data-id=\"{id}\"]"));
    assert!(
        card.contains("fake.echo") && card.contains("merge-7"),
        "{card}"
    );
    shot(&tab, "wrap-01-pending.png");
    let flash = approve(&tab, &id, None);
    assert!(flash.contains("approved"), "{flash}");
    shot(&tab, "wrap-02-approved.png");
    // The wrap process, held meanwhile, forwards the call and answers its client.
    let a = w.answer();
    assert_eq!(a["id"], 1, "{a}");
    assert!(a["result"]["isError"].is_null(), "{a}");
    assert!(crate::approvals::text(&a).contains("merge-7"), "{a}");
    assert!(w.server_saw("merge-7"));

    // Scope `call` (the default): the same call again is held again; deny it.
    w.call(2, "echo", json!({"text": "merge-7"}));
    let again = w.pending(1)[0]["id"].as_str().unwrap().to_string();
    assert_ne!(again, id);
    go(&tab, &format!("{base}/approvals"));
    let flash = deny(&tab, &again, "one merge is enough", None);
    assert!(flash.contains("denied"), "{flash}");
    shot(&tab, "wrap-03-denied.png");
    let a = w.answer();
    assert_eq!(a["id"], 2, "{a}");
    assert_eq!(a["result"]["isError"], true, "{a}");
    let t = crate::approvals::text(&a);
    assert!(t.contains("approval (approval.denied)"), "{t}");
    assert!(
        t.contains("`alice`") && t.contains("one merge is enough"),
        "{t}"
    );

    // The explorer: the call allowed after its grant; the chain verified.
    go(&tab, &format!("{base}/audit?tool=fake.echo"));
    let table = text(&tab, "#records").to_lowercase();
    assert!(
        table.contains("allow") && table.contains("approval"),
        "{table}"
    );
    let status = text(&tab, "#chain-status");
    assert!(status.contains("hash chain verified"), "{status}");
    shot(&tab, "wrap-04-audit.png");
    assert_eq!(w.records("approval-grant").len(), 1);
    assert_eq!(w.records("approval-deny").len(), 1);
    drop(tab);
    drop(browser);
    drop(console);
    w.finish();
}
