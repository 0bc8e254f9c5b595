//! The relay's behaviour: gate, pins, labels, faults, reload.

use conductor_mcp::EngineOptions;
use serde_json::{Value, json};

use crate::harness::{FakeOptions, Harness, POLICY, call, checks, list};

#[tokio::test]
async fn malformed_line_gets_parse_error_and_session_continues() {
    let mut h = Harness::start(FakeOptions::default()).await;
    h.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":1,\n").await;
    let a = h.recv().await;
    assert_eq!(a["error"]["code"], -32700);
    assert_eq!(a["id"], Value::Null);
    let a = h.call(call(2, "echo", json!({"x": 1}))).await;
    assert_eq!(a["id"], 2);
    assert_eq!(a["result"]["content"][0]["text"], "{\"x\":1}");
}

#[tokio::test]
async fn invalid_jsonrpc_shape_gets_invalid_request_with_its_id() {
    let mut h = Harness::start(FakeOptions::default()).await;
    for (bad, id) in [
        (json!({"id": 9, "method": "tools/call"}), json!(9)),
        (json!({"jsonrpc": "2.0", "id": "a"}), json!("a")),
        (
            json!([{"jsonrpc": "2.0", "id": 1, "method": "tools/call"}]),
            Value::Null,
        ),
        (json!({"jsonrpc": "2.0", "id": 3, "method": 7}), json!(3)),
        (json!(17), Value::Null),
    ] {
        let a = h.call(bad.clone()).await;
        assert_eq!(a["error"]["code"], -32600, "{bad}");
        assert_eq!(a["id"], id, "{bad}");
    }
    // Nothing of it reached the server (a batch could otherwise smuggle a call).
    assert!(h.seen().is_empty(), "{:?}", h.seen());
    let a = h.call(call(4, "echo", json!({}))).await;
    assert_eq!(a["id"], 4);
}

#[tokio::test]
async fn oversized_message_is_refused_and_session_continues() {
    let opts = EngineOptions {
        max_message_bytes: 1024,
        ..EngineOptions::default()
    };
    let mut h = Harness::start_with(FakeOptions::default(), opts, true).await;
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"x\":\"{}\"}}}}}}\n",
        "a".repeat(100_000)
    );
    h.send_raw(big.as_bytes()).await;
    let a = h.recv().await;
    assert_eq!(a["error"]["code"], -32600);
    assert_eq!(a["id"], Value::Null);
    assert!(
        a["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 1024 bytes"),
        "{a}"
    );
    let a = h.call(call(2, "echo", json!({"y": 2}))).await;
    assert_eq!(a["id"], 2);
    assert!(h.seen().iter().all(|l| l.len() < 1024));
    // An answer over the limit from the server: dropped, and its request answered.
    let a = h.call(call(3, "huge", json!({}))).await;
    assert_eq!(a["id"], 3, "{a}");
    assert_eq!(a["error"]["code"], -32603, "{a}");
    assert_eq!(h.call(call(4, "echo", json!({}))).await["id"], 4);
}

#[tokio::test]
async fn server_crash_mid_call_answers_pending_requests() {
    let mut h = Harness::start(FakeOptions::default()).await;
    h.send(call(1, "crash", json!({}))).await;
    let a = h.recv().await;
    assert_eq!(a["id"], 1);
    assert_eq!(a["error"]["code"], -32000);
    assert!(a["error"]["message"].as_str().unwrap().contains("exited"));
    let outcome = (&mut h.engine).await.unwrap();
    assert!(outcome.server_closed);
}

#[tokio::test]
async fn metadata_url_is_denied_before_the_server_sees_it() {
    let mut h = Harness::start(FakeOptions::default()).await;
    // 2852039166 is 169.254.169.254 (CVE-2026-26118 class).
    let a = h
        .call(call(
            1,
            "fetch",
            json!({"url": "http://2852039166/latest/meta-data/"}),
        ))
        .await;
    assert_eq!(a["result"]["isError"], true);
    assert_eq!(a["result"]["resultType"], "complete");
    let text = a["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("denied by policy: destination ("),
        "{text}"
    );
    assert!(
        text.contains("destinations.blocked.cloud-metadata"),
        "{text}"
    );
    assert_eq!(
        a["result"]["_meta"]["dev.conductor/decision"]["decision"],
        "deny"
    );
    // An allowed call after it is forwarded, and the server never saw the first.
    let a = h
        .call(call(
            2,
            "fetch",
            json!({"url": "https://en.wikipedia.org/wiki/MCP"}),
        ))
        .await;
    assert_eq!(a["id"], 2);
    assert!(a["result"].get("isError").is_none(), "{a}");
    let seen = h.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(!seen[0].contains("2852039166"));
    // Both decisions are recorded.
    let records = h.records();
    let decisions: Vec<_> = records.iter().map(|r| r.decision.as_str()).collect();
    assert!(
        decisions.contains(&"deny") && decisions.contains(&"allow"),
        "{decisions:?}"
    );
    assert!(
        records
            .iter()
            .all(|r| r.event == "tools/call" && r.tool == "fake.fetch")
    );
}

#[tokio::test]
async fn learned_uri_field_is_a_destination() {
    let mut h = Harness::start(FakeOptions::default()).await;
    // Before the schema is known, the bare host is not recognized as a destination.
    let a = h
        .call(call(1, "get", json!({"target": "2852039166"})))
        .await;
    assert!(a["result"].get("isError").is_none(), "{a}");
    h.call(list(1)).await;
    // `target` is only known as a destination from the schema's `format: uri`; scanning
    // would not catch a bare IP host without a scheme.
    let a = h
        .call(call(2, "get", json!({"target": "2852039166"})))
        .await;
    assert_eq!(a["result"]["isError"], true, "{a}");
    assert!(checks(&a).contains(&"destination".to_string()), "{a}");
    assert_eq!(h.seen().len(), 2);
}

#[tokio::test]
async fn resources_read_uri_is_a_destination() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let a = h
        .call(json!({"jsonrpc":"2.0","id":1,"method":"resources/read",
                     "params":{"uri":"http://169.254.169.254/latest/meta-data/iam/"}}))
        .await;
    assert_eq!(a["error"]["code"], -32001, "{a}");
    assert!(
        a["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("denied by policy")
    );
    assert_eq!(
        a["error"]["data"]["dev.conductor/decision"]["decision"],
        "deny"
    );
    let a = h
        .call(json!({"jsonrpc":"2.0","id":2,"method":"resources/read",
                     "params":{"uri":"https://en.wikipedia.org/wiki/X"}}))
        .await;
    assert_eq!(
        a["result"]["contents"][0]["uri"], "https://en.wikipedia.org/wiki/X",
        "{a}"
    );
    assert_eq!(h.seen().len(), 1);
    // What a resource carried raises the session's labels like a tool result.
    assert_eq!(h.gate.session_labels(), ["personal"]);
    assert!(h.records().iter().any(|r| r.tool == "fake.read_resource"));
}

// Review finding: `resources/subscribe` makes the server fetch the URI (again on every
// change) but passed the gate undecided. It is now decided like `resources/read`.
#[tokio::test]
async fn resources_subscribe_uri_is_a_destination() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let a = h
        .call(
            json!({"jsonrpc":"2.0","id":1,"method":"resources/subscribe",
                     "params":{"uri":"http://[::ffff:a9fe:a9fe]/latest/meta-data/"}}),
        )
        .await;
    assert_eq!(a["error"]["code"], -32001, "{a}");
    assert_eq!(
        a["error"]["data"]["dev.conductor/decision"]["decision"],
        "deny"
    );
    assert!(h.seen().is_empty(), "the server saw {:?}", h.seen());
    let a = h
        .call(
            json!({"jsonrpc":"2.0","id":2,"method":"resources/subscribe",
                     "params":{"uri":"https://en.wikipedia.org/wiki/X"}}),
        )
        .await;
    assert_eq!(a["result"]["echo"], "resources/subscribe", "{a}");
    assert_eq!(h.seen().len(), 1);
    let events: Vec<String> = h.records().iter().map(|r| r.event.clone()).collect();
    assert_eq!(events, ["resources/subscribe", "resources/subscribe"]);
}

#[tokio::test]
async fn tools_the_agent_can_never_call_are_filtered() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let a = h.call(list(1)).await;
    let names: Vec<&str> = a["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "fetch", "get", "crash", "leak"]);
    let mut h = Harness::start_with(FakeOptions::default(), EngineOptions::default(), false).await;
    let a = h.call(list(1)).await;
    assert_eq!(a["result"]["tools"].as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn changed_descriptor_refuses_calls_and_is_recorded() {
    let mut h = Harness::start(FakeOptions {
        rug_pull: true,
        ..FakeOptions::default()
    })
    .await;
    h.call(list(1)).await;
    let ok = call(2, "fetch", json!({"url": "https://en.wikipedia.org/"}));
    assert!(h.call(ok).await["result"].get("isError").is_none());
    let changed = h.call(list(3)).await; // the description changes here
    // Regression (issue 10, class 10): the rug-pulled description reached the client
    // as if it were the one first seen; it is marked instead.
    let fetch = changed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "fetch")
        .cloned()
        .unwrap();
    let desc = fetch["description"].as_str().unwrap();
    assert!(
        desc.starts_with("[conductor: the descriptor of `fetch` changed"),
        "{desc}"
    );
    let a = h
        .call(call(
            4,
            "fetch",
            json!({"url": "https://en.wikipedia.org/"}),
        ))
        .await;
    assert_eq!(a["result"]["isError"], true, "{a}");
    assert_eq!(checks(&a), ["pin"]);
    // Other tools are unaffected.
    assert_eq!(h.call(call(5, "echo", json!({}))).await["id"], 5);
    let records = h.records();
    let pin: Vec<_> = records.iter().filter(|r| r.event == "pin-change").collect();
    assert_eq!(pin.len(), 1, "{records:?}");
    assert_eq!(pin[0].tool, "fake.fetch");
    assert_eq!(pin[0].reasons[0]["check"], "pin");
    // The refused call was not forwarded.
    assert_eq!(
        h.seen().iter().filter(|l| l.contains("tools/call")).count(),
        2
    );
}

#[tokio::test]
async fn stateless_first_message_call_is_decided_and_relayed_byte_for_byte() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let raw = "{\"jsonrpc\":\"2.0\",  \"id\":\"s-1\",\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"b\":1,\"a\":2},\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\"}}}";
    h.send_raw(format!("{raw}\n").as_bytes()).await;
    let a = h.recv().await;
    assert_eq!(a["id"], "s-1");
    assert_eq!(h.seen(), [raw]);
    let a = h
        .call(json!({"jsonrpc":"2.0","id":2,"method":"server/discover","params":{}}))
        .await;
    assert_eq!(a["result"]["echo"], "server/discover");
}

#[tokio::test]
async fn unknown_methods_the_policy_lets_pass_go_byte_for_byte_both_ways() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let note =
        "{\"method\":\"notifications/x\" , \"jsonrpc\":\"2.0\",\"params\":{\"é\":\"\\u00e9\"}}";
    h.send_raw(format!("{note}\n").as_bytes()).await;
    let req =
        "{ \"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"weird/spacing\",\"params\":{\"z\":1.50}}\r";
    h.send_raw(format!("{req}\n").as_bytes()).await;
    let back = h.recv_line().await;
    assert_eq!(
        back,
        "{ \"jsonrpc\" : \"2.0\",\"id\":7 ,\"result\":{\"z\":1,  \"a\":[ ]} }"
    );
    // The fake server's line reader strips the `\r`; it was relayed with the line.
    assert_eq!(h.seen(), [note, req.trim_end_matches('\r')]);
}

#[tokio::test]
async fn result_labels_raise_the_session_and_the_flow_check_applies() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let url = json!({"url": "https://en.wikipedia.org/"});
    assert!(
        h.call(call(1, "fetch", url.clone())).await["result"]
            .get("isError")
            .is_none()
    );
    let a = h.call(call(2, "leak", json!({}))).await;
    assert!(
        a["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains('@')
    );
    assert_eq!(h.gate.session_labels(), ["personal"]);
    // The session now holds confidential data; wikipedia's egress max is public.
    let a = h.call(call(3, "fetch", url)).await;
    assert_eq!(a["result"]["isError"], true, "{a}");
    assert!(checks(&a).contains(&"flow".to_string()), "{a}");
}

#[tokio::test]
async fn policy_reload_swaps_a_valid_version_and_keeps_the_last_good_one() {
    let mut h = Harness::start(FakeOptions::default()).await;
    h.watch().await;
    assert_eq!(h.call(call(1, "echo", json!({}))).await["id"], 1);
    // A valid new version that no longer allows `echo`.
    std::fs::write(&h.policy_path, POLICY.replace("\"fake.echo\", ", "")).unwrap();
    let m = h.reports.recv().await.unwrap();
    assert!(m.contains("reloaded"), "{m}");
    let a = h.call(call(2, "echo", json!({}))).await;
    assert_eq!(a["result"]["isError"], true, "{a}");
    assert_eq!(checks(&a), ["tool"]);
    // An invalid version is reported and the last good one stays.
    std::fs::write(&h.policy_path, "version: 1\nagents: [\n").unwrap();
    let m = h.reports.recv().await.unwrap();
    assert!(m.contains("invalid") && m.contains("last good"), "{m}");
    let a = h.call(call(3, "echo", json!({}))).await;
    assert_eq!(checks(&a), ["tool"], "{a}");
    assert!(
        h.call(call(4, "fetch", json!({"url":"https://en.wikipedia.org/"})))
            .await["result"]
            .get("isError")
            .is_none()
    );
}

#[tokio::test]
async fn client_eof_closes_the_server_and_ends_the_relay() {
    let mut h = Harness::start(FakeOptions::default()).await;
    assert_eq!(h.call(call(1, "echo", json!({}))).await["id"], 1);
    h.close_client().await;
    let outcome = (&mut h.engine).await.unwrap();
    assert!(
        outcome.client_closed && outcome.server_closed,
        "{outcome:?}"
    );
}

#[tokio::test]
async fn pipelined_calls_keep_their_order() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let mut batch = Vec::new();
    for i in 0..50u64 {
        let name = if i % 7 == 3 {
            "delete_everything"
        } else {
            "echo"
        };
        let mut b = serde_json::to_vec(&call(i, name, json!({"i": i}))).unwrap();
        b.push(b'\n');
        batch.extend(b);
    }
    h.send_raw(&batch).await;
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(h.recv().await["id"].as_u64().unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..50).collect::<Vec<_>>());
    // The server saw the allowed calls in the client's order.
    let seen: Vec<u64> = h
        .seen()
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let expected: Vec<u64> = (0..50).filter(|i| i % 7 != 3).collect();
    assert_eq!(seen, expected);
}

// Calls decided at once are committed in batches (one transaction for every call the
// client had already sent): a message of another kind between them (a `ping`, which
// passes undecided) must still reach the server in the client's order.
#[tokio::test]
async fn batched_calls_and_undecided_messages_keep_their_order() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let mut batch = Vec::new();
    for i in 0..60u64 {
        let m = if i % 5 == 2 {
            json!({"jsonrpc": "2.0", "id": i, "method": "ping"})
        } else {
            call(i, "echo", json!({"i": i}))
        };
        let mut b = serde_json::to_vec(&m).unwrap();
        b.push(b'\n');
        batch.extend(b);
    }
    h.send_raw(&batch).await;
    for _ in 0..60 {
        h.recv().await;
    }
    let seen: Vec<u64> = h
        .seen()
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seen, (0..60).collect::<Vec<_>>());
    // Every call has its record, in the client's order.
    let records = h.records();
    assert_eq!(records.len(), 48, "{records:?}");
    assert!(records.iter().all(|r| r.decision == "allow"));
}

// A batch whose commit fails is refused whole: not one of its calls is forwarded.
#[tokio::test]
async fn a_batch_whose_commit_fails_is_refused_whole() {
    let mut h = Harness::start(FakeOptions::default()).await;
    assert_eq!(h.call(call(1, "echo", json!({}))).await["id"], 1);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = h.audit_path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    let mut batch = Vec::new();
    for i in 10..40u64 {
        let mut b = serde_json::to_vec(&call(i, "echo", json!({"i": i}))).unwrap();
        b.push(b'\n');
        batch.extend(b);
    }
    h.send_raw(&batch).await;
    for _ in 10..40 {
        let a = h.recv().await;
        assert_eq!(a["result"]["isError"], true, "{a}");
        assert!(checks(&a).contains(&"audit".to_string()), "{a}");
    }
    assert_eq!(h.seen().len(), 1, "no unrecorded call may be forwarded");
}

#[tokio::test]
async fn approval_is_refused_until_approvals_exist() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let a = h.call(call(1, "merge_all", json!({}))).await;
    assert_eq!(a["result"]["isError"], true, "{a}");
    let text = a["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("requires approval: "), "{text}");
    assert_eq!(
        a["result"]["_meta"]["dev.conductor/decision"]["decision"],
        "approve"
    );
    assert!(h.seen().is_empty());
    assert_eq!(h.records()[0].decision, "approve");
}

#[tokio::test]
async fn secrets_never_reach_the_audit_record_or_the_answer() {
    let mut h = Harness::start(FakeOptions::default()).await;
    // An email is `personal` (confidential), above the agent's clearance (internal).
    let a = h
        .call(call(
            1,
            "echo",
            json!({"note": "mail jane.doe@example.com now"}),
        ))
        .await;
    assert_eq!(a["result"]["isError"], true, "{a}");
    assert!(checks(&a).contains(&"data".to_string()), "{a}");
    assert!(!a.to_string().contains("jane.doe"), "{a}");
    let records = h.records();
    let args = records[0].arguments.as_ref().unwrap().to_string();
    assert!(args.contains("[REDACTED:personal]"), "{args}");
    assert!(!args.contains("jane.doe"), "{args}");
    assert!(h.seen().is_empty());
}

// Found by probing the release binary (notes, 23:23 UTC): a `tools/call` without an id
// was forwarded undecided to servers that do not insist on one.
#[tokio::test]
async fn gated_method_sent_as_notification_is_dropped_and_recorded() {
    let mut h = Harness::start(FakeOptions::default()).await;
    h.send(json!({"jsonrpc":"2.0","method":"tools/call",
                  "params":{"name":"delete_everything","arguments":{}}}))
        .await;
    h.send(json!({"jsonrpc":"2.0","method":"resources/read",
                  "params":{"uri":"http://169.254.169.254/"}}))
        .await;
    assert_eq!(h.call(call(1, "echo", json!({}))).await["id"], 1);
    let seen = h.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let records = h.records();
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r.reasons.to_string().contains("request.id"))
        .collect();
    assert_eq!(refused.len(), 2, "{records:?}");
    assert!(refused.iter().all(|r| r.decision == "deny"));
}

// Found by probing (notes, 23:23 UTC): Node servers echo id `2.0` as `2`, and the
// unmatched answer skipped filtering, pinning and scanning.
#[tokio::test]
async fn rewritten_numeric_ids_are_still_matched() {
    let opts = FakeOptions {
        integer_ids: true,
        ..FakeOptions::default()
    };
    let mut h = Harness::start(opts).await;
    h.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":2.0,\"method\":\"tools/list\"}\n")
        .await;
    let a = h.recv().await;
    assert_eq!(a["id"], 2);
    let names: Vec<&str> = a["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"delete_everything"), "{names:?}");
    h.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":1e0,\"method\":\"tools/call\",\"params\":{\"name\":\"leak\"}}\n")
        .await;
    let a = h.recv().await;
    assert_eq!(a["id"], 1);
    assert_eq!(h.gate.session_labels(), ["personal"]);
    h.close_client().await;
    let outcome = (&mut h.engine).await.unwrap();
    assert!(outcome.server_closed);
    // No spurious "server exited" errors for answered requests.
    assert_eq!(h.recv_rest().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_decision_that_cannot_be_recorded_is_refused() {
    let mut h = Harness::start(FakeOptions::default()).await;
    assert_eq!(h.call(call(1, "echo", json!({}))).await["id"], 1);
    // Make every insert into the store fail from now on.
    let conn = conductor_audit::rusqlite::Connection::open(&h.audit_path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER fail BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'injected'); END;",
    )
    .unwrap();
    let a = h.call(call(2, "echo", json!({}))).await;
    assert_eq!(a["result"]["isError"], true, "{a}");
    assert!(checks(&a).contains(&"audit".to_string()), "{a}");
    assert_eq!(
        h.seen().len(),
        1,
        "the unrecorded call must not be forwarded"
    );
}

// Found by review (notes, 23:28 UTC): with ids keyed by value, `1` and `1.0` in flight
// together shared one entry, and a list could be handled as a call (no pinning).
#[tokio::test]
async fn a_second_request_with_an_id_in_flight_is_refused() {
    let mut h = Harness::start(FakeOptions::default()).await;
    h.send(json!({"jsonrpc":"2.0","id":1,"method":"never/answer"}))
        .await;
    h.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":1.0,\"method\":\"tools/list\"}\n")
        .await;
    let a = h.recv().await;
    assert_eq!(a["error"]["code"], -32600, "{a}");
    assert!(
        a["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in flight")
    );
    let a = h.call(call(2, "echo", json!({}))).await;
    assert_eq!(a["id"], 2);
    assert_eq!(h.seen().len(), 2, "{:?}", h.seen());
}

// Found by review (notes, 23:33 UTC): data in server notifications reached the agent
// without raising the session's labels.
#[tokio::test]
async fn server_notifications_raise_the_session_labels() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let note = h
        .call(json!({"jsonrpc":"2.0","id":1,"method":"notify/me"}))
        .await;
    assert_eq!(note["method"], "notifications/message", "{note}");
    assert_eq!(h.recv().await["id"], 1);
    assert_eq!(h.gate.session_labels(), ["personal"]);
    // A tools/list is metadata: descriptions are pinned, not scanned.
    h.call(list(2)).await;
    let a = h
        .call(call(
            3,
            "fetch",
            json!({"url": "https://en.wikipedia.org/"}),
        ))
        .await;
    assert!(checks(&a).contains(&"flow".to_string()), "{a}");
}

// Servers that match member names case-insensitively (Go's encoding/json) would read
// `NAME` where the gate read `name`.
#[tokio::test]
async fn case_variant_member_names_are_refused() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let a = h
        .call(json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
                     "params":{"name":"echo","NAME":"delete_everything","arguments":{}}}))
        .await;
    assert_eq!(a["error"]["code"], -32600, "{a}");
    let a = h
        .call(json!({"jsonrpc":"2.0","id":2,"method":"ping","Method":"tools/call"}))
        .await;
    assert_eq!(a["error"]["code"], -32600, "{a}");
    assert!(h.seen().is_empty(), "{:?}", h.seen());
}

// Review finding: a server answer dropped because it held a bare CR left its request
// waiting until the server exited. The request now gets an error at once.
#[tokio::test]
async fn a_dropped_server_answer_still_answers_its_request() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let a = h
        .call(json!({"jsonrpc":"2.0","id":7,"method":"answer/bare-cr"}))
        .await;
    assert_eq!(a["id"], 7, "{a}");
    assert_eq!(a["error"]["code"], -32603, "{a}");
    assert!(a.get("result").is_none(), "{a}");
    // The session goes on.
    let a = h
        .call(json!({"jsonrpc":"2.0","id":8,"method":"other/thing"}))
        .await;
    assert_eq!(a["result"]["echo"], "other/thing", "{a}");
}

// Regression (issue 10, class 1): a method the gate does not know was forwarded
// undecided — a custom method could make a server act, unaudited.
#[tokio::test]
async fn unknown_methods_are_refused_and_recorded() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let a = h
        .call(json!({"jsonrpc":"2.0","id":1,"method":"vendor/run","params":{"cmd":"rm -rf /"}}))
        .await;
    assert_eq!(a["error"]["code"], -32601, "{a}");
    h.send(json!({"jsonrpc":"2.0","method":"vendor/notify","params":{}}))
        .await;
    let a = h.call(call(2, "echo", json!({}))).await;
    assert_eq!(a["id"], 2, "{a}");
    assert_eq!(h.seen().len(), 1, "{:?}", h.seen());
    let records = h.records();
    assert!(
        records
            .iter()
            .any(|r| r.event == "vendor/run" && r.decision == "deny")
    );
    assert!(
        records
            .iter()
            .any(|r| r.event == "vendor/notify" && r.decision == "deny")
    );
}

// Regression (issue 10, class 1): mcp-server-fetch's `fetch` *prompt* fetches its
// `url` argument; `prompts/get` was forwarded undecided, so the metadata-service URL
// refused as a tool call was fetched as a prompt.
#[tokio::test]
async fn prompts_get_is_decided_like_a_call() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let a = h
        .call(json!({"jsonrpc":"2.0","id":1,"method":"prompts/get",
                     "params":{"name":"fetch","arguments":{"url":"http://169.254.169.254/latest/meta-data/"}}}))
        .await;
    assert_eq!(a["error"]["code"], -32001, "{a}");
    let a = h
        .call(json!({"jsonrpc":"2.0","id":2,"method":"completion/complete",
                     "params":{"ref":{"type":"ref/resource","uri":"http://169.254.169.254/"},"argument":{"name":"a","value":"b"}}}))
        .await;
    assert_eq!(a["error"]["code"], -32001, "{a}");
    assert!(h.seen().is_empty(), "{:?}", h.seen());
    assert!(
        h.records()
            .iter()
            .any(|r| r.event == "prompts/get" && r.decision == "deny")
    );
}

// Regression (issue 10, class 2): Go's encoding/json reads `paramſ` (U+017F) as
// `params` and keeps the last match; the server ran `delete_everything` while the
// audit trail said `echo` allowed.
#[tokio::test]
async fn unicode_case_folding_member_smuggling_is_refused() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let line = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{}},\"param\u{17f}\":{\"name\":\"delete_everything\",\"arguments\":{}}}\n";
    h.send_raw(line.as_bytes()).await;
    let a = h.recv().await;
    assert_eq!(a["error"]["code"], -32600, "{a}");
    let dup = b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"name\":\"delete_everything\",\"arguments\":{}}}\n";
    h.send_raw(dup).await;
    let a = h.recv().await;
    assert_eq!(a["error"]["code"], -32600, "{a}");
    assert!(h.seen().is_empty(), "{:?}", h.seen());
}

// Regression (issue 10, class 5): `_meta` and other params members reached the server
// without a data check.
#[tokio::test]
async fn data_in_meta_is_checked() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let a = h
        .call(json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
                     "params":{"name":"echo","arguments":{},"_meta":{"note":"mail jane.doe@example.com"}}}))
        .await;
    assert_eq!(a["result"]["isError"], true, "{a}");
    assert!(checks(&a).contains(&"data".to_string()), "{a}");
    assert!(h.seen().is_empty(), "{:?}", h.seen());
}

// Issue 10, class 1: a `prompts/get` answer that embeds a resource is decided like a
// `resources/read` of its URI: a prompt cannot hand the agent what a read would refuse.
#[tokio::test]
async fn a_prompt_embedding_a_refused_resource_is_withheld() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let ok = h
        .call(json!({"jsonrpc":"2.0","id":1,"method":"prompts/get",
                     "params":{"name":"p","arguments":{"embed":"https://en.wikipedia.org/wiki/X"}}}))
        .await;
    assert!(ok["result"]["messages"].is_array(), "{ok}");
    let refused = h
        .call(json!({"jsonrpc":"2.0","id":2,"method":"prompts/get",
                     "params":{"name":"p","arguments":{"embed":"shadow"}}}))
        .await;
    assert_eq!(refused["error"]["code"], -32001, "{refused}");
    assert!(refused.get("result").is_none(), "{refused}");
    let records = h.records();
    assert!(
        records
            .iter()
            .any(|r| r.event == "resources/read" && r.decision == "deny")
    );
}

// Regression (issue 10, class 10): the table of requests waiting for the server was
// unbounded; a client could grow it without limit. Past the bound, requests are refused.
#[tokio::test]
async fn the_pending_request_table_is_bounded() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let max = conductor_mcp::session::MAX_PENDING;
    let mut batch = Vec::new();
    for i in 0..max {
        batch.extend_from_slice(
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"never/answer\"}}\n").as_bytes(),
        );
    }
    h.send_raw(&batch).await;
    let a = h
        .call(json!({"jsonrpc":"2.0","id":"one-too-many","method":"never/answer"}))
        .await;
    assert_eq!(a["id"], "one-too-many", "{a}");
    assert_eq!(a["error"]["code"], -32600, "{a}");
    assert!(
        a["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in flight"),
        "{a}"
    );
}

fn saw_personal_data(h: &Harness) -> bool {
    h.seen().iter().any(|l| l.contains("jane.doe"))
}

// Regression (issue 10, class 1): besides `prompts/get` and `completion/complete`,
// `resources/unsubscribe`, `subscriptions/listen`, `tasks/*`, `logging/setLevel`,
// notifications carrying data, and gated method names in another case reached the
// server undecided.
#[tokio::test]
async fn every_method_that_makes_a_server_act_is_decided() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let metadata = "http://169.254.169.254/latest/meta-data/";
    let refused = [
        json!({"jsonrpc":"2.0","id":1,"method":"resources/unsubscribe","params":{"uri":metadata}}),
        json!({"jsonrpc":"2.0","id":2,"method":"subscriptions/listen",
               "params":{"subscriptions":[{"kind":"resource","uri":"https://en.wikipedia.org/"},{"kind":"resource","uri":metadata}]}}),
        json!({"jsonrpc":"2.0","id":3,"method":"tasks/get","params":{"taskId":"jane.doe@example.com"}}),
        json!({"jsonrpc":"2.0","id":4,"method":"tasks/cancel","params":{"taskId":metadata}}),
        json!({"jsonrpc":"2.0","id":5,"method":"logging/setLevel","params":{"level":"debug jane.doe@example.com"}}),
    ];
    for (i, msg) in refused.into_iter().enumerate() {
        let a = h.call(msg.clone()).await;
        assert_eq!(a["id"], i + 1, "{a}");
        assert_eq!(a["error"]["code"], -32001, "{msg} -> {a}");
    }
    // A gated method in another case is not `tools/call`: it is an unknown method.
    let a = h
        .call(json!({"jsonrpc":"2.0","id":6,"method":"Tools/Call",
                     "params":{"name":"delete_everything","arguments":{}}}))
        .await;
    assert_eq!(a["error"]["code"], -32601, "{a}");
    // A known notification carrying data is decided and dropped.
    h.send(json!({"jsonrpc":"2.0","method":"notifications/progress",
                  "params":{"progressToken":"t","progress":1,"message":"jane.doe@example.com"}}))
        .await;
    // The control: the same methods with nothing to refuse reach the server.
    let a = h
        .call(
            json!({"jsonrpc":"2.0","id":7,"method":"resources/unsubscribe",
                     "params":{"uri":"https://en.wikipedia.org/wiki/X"}}),
        )
        .await;
    assert_eq!(a["result"]["echo"], "resources/unsubscribe", "{a}");
    let a = h
        .call(
            json!({"jsonrpc":"2.0","id":8,"method":"logging/setLevel","params":{"level":"debug"}}),
        )
        .await;
    assert_eq!(a["result"]["echo"], "logging/setLevel", "{a}");
    let seen = h.seen();
    assert_eq!(
        seen.len(),
        2,
        "only the two clean requests reach the server: {seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("169.254") || l.contains("jane.doe"))
    );
    let records = h.records();
    for event in [
        "resources/unsubscribe",
        "subscriptions/listen",
        "tasks/get",
        "tasks/cancel",
        "logging/setLevel",
        "Tools/Call",
        "notifications/progress",
    ] {
        assert!(
            records
                .iter()
                .any(|r| r.event == event && r.decision == "deny"),
            "no deny record for {event}: {:?}",
            records
                .iter()
                .map(|r| (&r.event, &r.decision))
                .collect::<Vec<_>>()
        );
    }
}

// Regression (issue 10, class 5): what the server receives besides the arguments —
// `_meta.progressToken`, extra params members, the tool name, a prompt's name and
// arguments, a completion's argument — reached it without a data check.
#[tokio::test]
async fn data_beside_the_arguments_is_checked() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let pii = "jane.doe@example.com";
    let calls = [
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
               "params":{"name":"echo","arguments":{},"_meta":{"progressToken":pii}}}),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
               "params":{"name":"echo","arguments":{},"note":pii}}),
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call",
               "params":{"name":format!("echo {pii}"),"arguments":{}}}),
    ];
    for msg in calls {
        let a = h.call(msg.clone()).await;
        assert_eq!(a["result"]["isError"], true, "{msg} -> {a}");
        assert!(checks(&a).contains(&"data".to_string()), "{msg} -> {a}");
        assert!(
            !a.to_string().contains(pii),
            "the refusal quotes the data: {a}"
        );
    }
    let others = [
        json!({"jsonrpc":"2.0","id":4,"method":"prompts/get",
               "params":{"name":format!("p {pii}"),"arguments":{}}}),
        json!({"jsonrpc":"2.0","id":5,"method":"prompts/get",
               "params":{"name":"p","arguments":{"who":pii}}}),
        json!({"jsonrpc":"2.0","id":6,"method":"completion/complete",
               "params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"who","value":pii}}}),
    ];
    for msg in others {
        let a = h.call(msg.clone()).await;
        assert_eq!(a["error"]["code"], -32001, "{msg} -> {a}");
        let reasons = a["error"]["data"][conductor_mcp::META_KEY]["reasons"].to_string();
        assert!(reasons.contains("\"data\""), "{msg} -> {a}");
    }
    assert!(h.seen().is_empty(), "{:?}", h.seen());
    let records = h.records();
    assert_eq!(records.iter().filter(|r| r.decision == "deny").count(), 6);
    for r in &records {
        assert!(!format!("{r:?}").contains(pii), "{r:?}");
    }
}

// Regression (issue 10, class 5): the client's answers to the server's own requests
// (`sampling/createMessage`, `elicitation/create`, `roots/list`) reached the server
// without a data check. A refused answer reaches it as an error instead.
#[tokio::test]
async fn client_replies_to_server_requests_are_checked_before_the_server_gets_them() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let replies = [
        (
            "sampling/createMessage",
            json!({"role":"assistant","model":"m","content":{"type":"text","text":"mail jane.doe@example.com"}}),
        ),
        (
            "elicitation/create",
            json!({"action":"accept","content":{"email":"jane.doe@example.com"}}),
        ),
        (
            "roots/list",
            json!({"roots":[{"uri":"file:///srv/jane.doe@example.com/","name":"home"}]}),
        ),
    ];
    for (i, (method, result)) in replies.iter().enumerate() {
        let ask = h
            .call(json!({"jsonrpc":"2.0","id":i,"method":"answer/ask","params":{"ask":method}}))
            .await;
        assert_eq!(ask["method"], *method, "{ask}");
        let id = ask["id"].clone();
        assert_eq!(h.recv().await["id"], i, "the request's own answer");
        h.send(json!({"jsonrpc":"2.0","id":id,"result":result}))
            .await;
    }
    // A clean reply is forwarded as sent (the control).
    let ask = h
        .call(json!({"jsonrpc":"2.0","id":9,"method":"answer/ask","params":{"ask":"roots/list"}}))
        .await;
    let clean = json!({"jsonrpc":"2.0","id":ask["id"],"result":{"roots":[]}});
    assert_eq!(h.recv().await["id"], 9);
    h.send(clean.clone()).await;
    // A request after the replies: once answered, every reply before it was handled.
    assert_eq!(h.call(call(10, "echo", json!({}))).await["id"], 10);
    let seen = h.seen();
    assert!(!saw_personal_data(&h), "{seen:?}");
    for (method, _) in &replies {
        let reply = seen
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| v["id"] == format!("ask-{method}"))
            .unwrap_or_else(|| panic!("the server got no answer to {method}: {seen:?}"));
        assert_eq!(reply["error"]["code"], -32001, "{reply}");
    }
    assert!(
        seen.iter()
            .any(|l| serde_json::from_str::<Value>(l).unwrap() == clean)
    );
    let records = h.records();
    for (method, _) in &replies {
        assert!(
            records
                .iter()
                .any(|r| r.event == format!("reply:{method}") && r.decision == "deny"),
            "{method}"
        );
    }
}

// Regression (issue 10, class 8): `initialize`, `ping` and `tools/list` answers were
// never scanned, so what a server put in them did not label the session.
#[tokio::test]
async fn initialize_ping_and_tools_list_answers_label_the_session() {
    let opts = FakeOptions {
        metadata_leak: true,
        ..FakeOptions::default()
    };
    for request in [
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
        json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
        list(1),
    ] {
        let mut h = Harness::start(opts).await;
        assert!(h.gate.session_labels().is_empty());
        let a = h.call(request.clone()).await;
        assert_eq!(a["id"], 1, "{a}");
        assert_eq!(h.gate.session_labels(), ["personal"], "{request}");
        // And the flow check applies to the next call.
        let a = h
            .call(call(
                2,
                "fetch",
                json!({"url": "https://en.wikipedia.org/"}),
            ))
            .await;
        assert!(checks(&a).contains(&"flow".to_string()), "{request}: {a}");
    }
}

// Regression (issue 10, class 10): an audit database deleted mid-session did not stop
// forwarding — records went into the unlinked file.
#[tokio::test]
async fn an_audit_database_deleted_mid_session_stops_forwarding() {
    let mut h = Harness::start(FakeOptions::default()).await;
    assert_eq!(h.call(call(1, "echo", json!({}))).await["id"], 1);
    assert_eq!(h.seen().len(), 1);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = h.audit_path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    let a = h.call(call(2, "echo", json!({}))).await;
    assert_eq!(a["result"]["isError"], true, "{a}");
    assert!(checks(&a).contains(&"audit".to_string()), "{a}");
    assert_eq!(
        h.seen().len(),
        1,
        "the unrecorded call must not be forwarded"
    );
}

// Regression (issue 10, class 2), found this session: a *lone* member whose name folds
// to one the gate reads (`paramſ` with no `params`, `argumentſ` or `Arguments` with no
// `arguments`) was not ambiguous to the strict reader (no second name to collide with),
// so the gate decided an empty message — while Go's `encoding/json` reads `paramſ` as
// `params` and the server acted on what the gate never checked.
#[tokio::test]
async fn a_lone_case_folded_member_is_refused() {
    let mut h = Harness::start(FakeOptions::default()).await;
    let lines = [
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"logging/setLevel\",\"param\u{17f}\":{\"level\":\"mail jane.doe@example.com\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"argument\u{17f}\":{\"url\":\"http://169.254.169.254/\"}}}",
        "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"Arguments\":{\"note\":\"jane.doe@example.com\"}}}",
        "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"completion/complete\",\"param\u{17f}\":{\"ref\":{\"type\":\"ref/resource\",\"uri\":\"http://169.254.169.254/\"}}}",
        "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"resources/read\",\"params\":{\"uri\":\"https://en.wikipedia.org/\",\"\u{212a}\":1,\"URI\":\"http://169.254.169.254/\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\",\"\u{212a}ind\":1,\"ID\":9}",
    ];
    for (i, line) in lines.iter().enumerate() {
        h.send_raw(format!("{line}\n").as_bytes()).await;
        let a = h.recv().await;
        assert_eq!(a["id"], i + 1, "{line} -> {a}");
        assert_eq!(a["error"]["code"], -32600, "{line} -> {a}");
    }
    // The control: the exact spellings pass.
    let a = h
        .call(
            json!({"jsonrpc":"2.0","id":7,"method":"logging/setLevel","params":{"level":"debug"}}),
        )
        .await;
    assert_eq!(a["result"]["echo"], "logging/setLevel", "{a}");
    assert_eq!(h.seen().len(), 1, "{:?}", h.seen());
}
