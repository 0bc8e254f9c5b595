//! `subscriptions/listen` on `/mcp` (2026-07-28): one client subscription fanned out to
//! the upstreams it involves, and one event stream back.
//!
//! The client's filter (`params.notifications`) is split per upstream ([`split`]): each
//! URI of `resourceSubscriptions` names its upstream by its namespace
//! (`conductor:<server>/<the server's uri>`) and goes to that upstream in its own name;
//! the list-changed flags (`toolsListChanged`, `promptsListChanged`,
//! `resourcesListChanged`) go to every upstream, since `/mcp`'s lists are the union of
//! theirs. Each upstream's part is decided on its own, through the same
//! [`Gating::decide`] as a listen on `/mcp/<server>` (as `<server>.read_resource`, its
//! URIs the destinations); then one upstream listen is opened per part. The client gets
//! one acknowledgement (the honoured filters merged, [`merged_filter`]) and then every
//! part's notifications, URIs back in the aggregate namespace and tagged with the
//! client's own subscription id.
//!
//! INVARIANT (fail closed): no upstream stream is opened before every part is allowed; a
//! refused part refuses the whole listen, with the refusal a listen on `/mcp/<server>`
//! gets. A URI that names no upstream of this gateway is an error naming it, never a
//! guess; so is a filter member the gateway does not know.
//!
//! INVARIANT: the client's stream lives only while every part does. A part that cannot
//! be opened, or that ends (its upstream answers or goes away), ends the client's stream
//! (so the client knows to listen again), and the client going away ends every part:
//! each upstream stream is dropped (cancelled) with it.

use std::sync::Arc;

use futures_util::StreamExt as _;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::gate_glue::code;
use crate::session::{
    App, ClientSession, Gated, Gating, aggregate_uri, error_answer, exchange, split_aggregate_uri,
};
use crate::upstream::SUBSCRIPTION_ID_META_KEY;

/// The method.
pub const LISTEN: &str = "subscriptions/listen";
/// The first message of a subscription stream.
pub const ACKNOWLEDGED: &str = "notifications/subscriptions/acknowledged";
/// The filter members that are flags (every upstream gets them).
const FLAGS: [&str; 3] = [
    "toolsListChanged",
    "promptsListChanged",
    "resourcesListChanged",
];
/// The filter member that lists resource URIs.
const RESOURCES: &str = "resourceSubscriptions";
/// Notifications kept while the other parts are not acknowledged yet; more are dropped.
const HELD_BEFORE_ACK: usize = 256;

/// One upstream's part of a listen on `/mcp`: the server, and the params it is sent
/// (the client's, with the filter in the server's own names).
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub server: String,
    pub params: Value,
}

/// Why a listen on `/mcp` cannot be split into parts. What the client wrote is shown
/// sanitized and cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("`subscriptions/listen` params need a `notifications` object")]
    NoFilter,
    #[error("`notifications.{0}` must be a boolean")]
    NotBool(&'static str),
    #[error("`notifications.resourceSubscriptions` must be an array of strings")]
    NotUris,
    #[error(
        "`notifications.{0}` is not known to the gateway, which cannot tell which upstream it is for; listen on `/mcp/<server>`"
    )]
    Unknown(String),
    #[error(
        "`{0}` is not a resource uri of `/mcp`: they are `conductor:<server>/<the server's uri>`"
    )]
    NotNamespaced(String),
    #[error("`{uri}` names the server `{server}`, which this gateway does not have")]
    UnknownServer { uri: String, server: String },
    #[error("`subscriptions/listen` names nothing to listen to")]
    Empty,
}

fn shown(s: &str) -> String {
    conductor_types::display::shown(s, 200)
}

/// Split the params of a listen on `/mcp` into one part per upstream involved, in the
/// order of `servers` (the gateway's upstreams): the upstreams its URIs name, and every
/// upstream when a list-changed flag is set. Other params members (`_meta`…) go to every
/// part as they are.
pub fn split(servers: &[&str], params: Option<&Value>) -> Result<Vec<Part>, SplitError> {
    let params = params.and_then(Value::as_object);
    let filter = params
        .and_then(|p| p.get("notifications"))
        .and_then(Value::as_object)
        .ok_or(SplitError::NoFilter)?;
    let mut flags = Map::new();
    let mut every = false;
    let mut uris: Vec<(&str, Vec<Value>)> = servers.iter().map(|s| (*s, Vec::new())).collect();
    for (k, v) in filter {
        if let Some(flag) = FLAGS.iter().find(|f| **f == k) {
            let on = v.as_bool().ok_or(SplitError::NotBool(flag))?;
            every |= on;
            flags.insert(k.clone(), v.clone());
        } else if k == RESOURCES {
            for u in v.as_array().ok_or(SplitError::NotUris)? {
                let u = u.as_str().ok_or(SplitError::NotUris)?;
                let (server, own) =
                    split_aggregate_uri(u).ok_or_else(|| SplitError::NotNamespaced(shown(u)))?;
                let Some((_, list)) = uris.iter_mut().find(|(s, _)| *s == server) else {
                    return Err(SplitError::UnknownServer {
                        uri: shown(u),
                        server: shown(server),
                    });
                };
                list.push(Value::from(own));
            }
        } else {
            return Err(SplitError::Unknown(conductor_types::display::shown(k, 64)));
        }
    }
    let parts: Vec<Part> = uris
        .into_iter()
        .filter(|(_, own)| every || !own.is_empty())
        .map(|(server, own)| {
            let mut notifications = flags.clone();
            if !own.is_empty() {
                notifications.insert(RESOURCES.into(), Value::Array(own));
            }
            let mut p = params.cloned().unwrap_or_default();
            p.insert("notifications".into(), Value::Object(notifications));
            Part {
                server: server.to_string(),
                params: Value::Object(p),
            }
        })
        .collect();
    if parts.is_empty() {
        return Err(SplitError::Empty);
    }
    Ok(parts)
}

/// The filter the client is told is honoured: a flag when any upstream honours it, and
/// every URI an upstream honours, back in the aggregate namespace. `acks`: each part's
/// server and the `notifications` of its acknowledgement.
pub fn merged_filter(acks: &[(&str, Option<&Value>)]) -> Value {
    let mut merged = Map::new();
    for flag in FLAGS {
        if acks
            .iter()
            .any(|(_, n)| n.and_then(|n| n.get(flag)) == Some(&Value::Bool(true)))
        {
            merged.insert(flag.into(), Value::Bool(true));
        }
    }
    let uris: Vec<Value> = acks
        .iter()
        .flat_map(|(server, n)| {
            n.and_then(|n| n.get(RESOURCES))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|u| Value::from(aggregate_uri(server, u)))
        })
        .collect();
    if !uris.is_empty() {
        merged.insert(RESOURCES.into(), Value::Array(uris));
    }
    Value::Object(merged)
}

/// `m` tagged with the client's subscription id `id` (where it carries a tag).
pub fn tagged(mut m: Value, id: &Value) -> Value {
    if let Some(tag) = m
        .pointer_mut("/params/_meta")
        .and_then(Value::as_object_mut)
        .and_then(|meta| meta.get_mut(SUBSCRIPTION_ID_META_KEY))
    {
        *tag = id.clone();
    }
    m
}

/// An answer (not a notification or a server request).
fn is_answer(m: &Value) -> bool {
    m.get("method").is_none()
}

/// What an upstream's answer says went wrong, for the client: its code and its message
/// (sanitized, cut), or `fallback` for a result.
fn upstream_failure(m: &Value, fallback: &str) -> (i64, String) {
    match m.get("error") {
        Some(e) => (
            e.get("code")
                .and_then(Value::as_i64)
                .unwrap_or(code::SERVER_GONE),
            shown(e.get("message").and_then(Value::as_str).unwrap_or("")),
        ),
        None => (code::SERVER_GONE, fallback.to_string()),
    }
}

/// One part of the listen on its way.
struct Open {
    server: String,
    /// When its acknowledgement is due.
    due: Instant,
    /// The `notifications` of its acknowledgement, once it came.
    ack: Option<Value>,
}

/// Answer a `subscriptions/listen` on `/mcp`: split, decide every part, open every part
/// upstream and relay one stream to `out` until a part ends or the client goes away. The
/// return is the last message of the client's stream (the listen's answer).
pub(crate) async fn listen_all(
    app: &Arc<App>,
    session: &Arc<ClientSession>,
    msg: Value,
    traceparent: Option<String>,
    out: &mpsc::Sender<Value>,
    sse: bool,
) -> Value {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let cfg = app.config();
    let servers: Vec<&str> = cfg.servers.iter().map(|s| s.id.as_str()).collect();
    let parts = match split(&servers, msg.get("params")) {
        Ok(p) => p,
        Err(e) => return error_answer(&id, code::INVALID_PARAMS, &e.to_string()),
    };
    // INVARIANT (fail closed): every part is decided before any upstream stream opens.
    let mut decided = Vec::with_capacity(parts.len());
    for part in parts {
        let link = match session.link(app, &part.server).await {
            Ok(l) => l,
            Err(e) => return json!({"jsonrpc": "2.0", "id": id, "error": e}),
        };
        let mut m = json!({"jsonrpc": "2.0", "id": id, "method": LISTEN, "params": part.params});
        let gating = Gating {
            app,
            session,
            link: &link,
            out,
            sse,
        };
        if let Gated {
            refused: Some(answer),
            ..
        } = gating.decide(&id, LISTEN, &mut m).await
        {
            return answer;
        }
        decided.push((link, m));
    }
    // Every part is an exchange of its own whose sink is read here: dropping `streams`
    // (when this returns) closes every sink, and each exchange then cancels its stream
    // upstream.
    let mut streams = futures_util::stream::SelectAll::new();
    let mut open = Vec::with_capacity(decided.len());
    let now = Instant::now();
    for (i, (link, m)) in decided.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel::<Value>(64);
        open.push(Open {
            server: link.server.id.clone(),
            due: now + link.server.timeout.min(cfg.limits.request_timeout),
            ack: None,
        });
        let (app, session, tp) = (Arc::clone(app), Arc::clone(session), traceparent.clone());
        tokio::spawn(async move {
            let answer = exchange(&app, &session, &link, m, LISTEN, tp, Some(&tx)).await;
            let _ = tx.send(answer).await;
        });
        streams.push(Box::pin(
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            )
            .map(move |m| (i, m)),
        ));
    }
    let gone = || error_answer(&id, code::INTERNAL_ERROR, "cancelled: the client went away");
    let server_of =
        |open: &[Open], i: usize| open.get(i).map(|o| o.server.clone()).unwrap_or_default();
    // Every part's acknowledgement first; what comes meanwhile waits.
    let mut held = Vec::new();
    while let Some(due) = open.iter().filter(|o| o.ack.is_none()).map(|o| o.due).min() {
        let next = tokio::select! {
            () = out.closed() => return gone(),
            m = streams.next() => m,
            () = tokio::time::sleep_until(due) => {
                let late = open.iter().find(|o| o.ack.is_none() && o.due == due)
                    .map(|o| o.server.clone()).unwrap_or_default();
                return error_answer(&id, code::SERVER_GONE, &format!(
                    "upstream `{late}` did not acknowledge its part of the subscription in time"));
            }
        };
        let Some((i, m)) = next else {
            return error_answer(&id, code::SERVER_GONE, "the upstream streams ended");
        };
        if is_answer(&m) {
            let server = server_of(&open, i);
            let (c, why) = upstream_failure(&m, "it ended the stream at once");
            return error_answer(
                &id,
                c,
                &format!("upstream `{server}` did not open its part of the subscription: {why}"),
            );
        }
        let first = m.get("method").and_then(Value::as_str) == Some(ACKNOWLEDGED);
        match open.get_mut(i) {
            Some(o) if first && o.ack.is_none() => {
                o.ack = Some(
                    m.pointer("/params/notifications")
                        .cloned()
                        .unwrap_or(json!({})),
                );
            }
            _ if held.len() < HELD_BEFORE_ACK => held.push(m),
            _ => tracing::warn!(
                "dropped an upstream notification that came before every part of the subscription was acknowledged"
            ),
        }
    }
    let acks: Vec<(&str, Option<&Value>)> = open
        .iter()
        .map(|o| (o.server.as_str(), o.ack.as_ref()))
        .collect();
    let ack = json!({"jsonrpc": "2.0", "method": ACKNOWLEDGED, "params": {
        "_meta": {SUBSCRIPTION_ID_META_KEY: id}, "notifications": merged_filter(&acks)}});
    if out.send(ack).await.is_err() {
        return gone();
    }
    for m in held {
        if out.send(tagged(m, &id)).await.is_err() {
            return gone();
        }
    }
    loop {
        let next = tokio::select! {
            () = out.closed() => return gone(),
            m = streams.next() => m,
        };
        let Some((i, m)) = next else {
            return error_answer(&id, code::SERVER_GONE, "the upstream streams ended");
        };
        if is_answer(&m) {
            let server = server_of(&open, i);
            if m.get("result").is_some() {
                // Ended on purpose (a server shutting down): so does the client's.
                tracing::info!(server = %server, "an upstream ended its part of a subscription; the client's stream ends");
                return json!({"jsonrpc": "2.0", "id": id, "result": {
                    "_meta": {SUBSCRIPTION_ID_META_KEY: id}, "resultType": "complete"}});
            }
            let (c, why) = upstream_failure(&m, "");
            return error_answer(
                &id,
                c,
                &format!(
                    "upstream `{server}` ended its part of the subscription ({why}); listen again"
                ),
            );
        }
        if out.send(tagged(m, &id)).await.is_err() {
            return gone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVERS: [&str; 3] = ["a", "ab", "wiki"];

    fn listen(notifications: Value) -> Value {
        json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"},
               "notifications": notifications})
    }

    fn parts(notifications: Value) -> Result<Vec<Part>, SplitError> {
        split(&SERVERS, Some(&listen(notifications)))
    }

    #[test]
    fn uris_go_to_the_upstream_their_namespace_names_in_its_own_names() {
        let p = parts(json!({"resourceSubscriptions": [
            "conductor:a/file:///x.txt", "conductor:wiki/note://1", "conductor:a/note://a/2"]}))
        .unwrap();
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].server, "a");
        assert_eq!(
            p[0].params["notifications"],
            json!({"resourceSubscriptions": ["file:///x.txt", "note://a/2"]})
        );
        assert_eq!(p[1].server, "wiki");
        assert_eq!(
            p[1].params["notifications"],
            json!({"resourceSubscriptions": ["note://1"]})
        );
        // The rest of the params (the request envelope) goes to every part.
        for part in &p {
            assert_eq!(
                part.params["_meta"]["io.modelcontextprotocol/protocolVersion"],
                "2026-07-28"
            );
        }
    }

    #[test]
    fn a_list_changed_flag_goes_to_every_upstream() {
        let p = parts(
            json!({"toolsListChanged": true, "promptsListChanged": false,
                             "resourceSubscriptions": ["conductor:ab/x://1"]}),
        )
        .unwrap();
        let servers: Vec<&str> = p.iter().map(|p| p.server.as_str()).collect();
        assert_eq!(servers, SERVERS);
        assert_eq!(
            p[1].params["notifications"],
            json!({"toolsListChanged": true, "promptsListChanged": false,
                   "resourceSubscriptions": ["x://1"]})
        );
        assert_eq!(
            p[0].params["notifications"],
            json!({"toolsListChanged": true, "promptsListChanged": false})
        );
    }

    // Hostile inputs: never a guess about which upstream a URI is for.
    #[test]
    fn a_uri_that_names_no_upstream_is_an_error_naming_it() {
        let err = |u: &str| parts(json!({"resourceSubscriptions": [u]})).unwrap_err();
        // A server the gateway does not have.
        assert_eq!(
            err("conductor:nosuch/file:///x"),
            SplitError::UnknownServer {
                uri: "conductor:nosuch/file:///x".into(),
                server: "nosuch".into()
            }
        );
        // The server a URI names is the text before its first `/`, as written: a prefix
        // of another server's name, a name another is a prefix of, and percent-encoded
        // separators (not separators, and not decoded) name no server of the gateway.
        for (uri, server) in [
            ("conductor:w/x://1", "w"),
            ("conductor:abc/x://1", "abc"),
            ("conductor:wikix://1", "wikix:"),
            ("conductor:a%2Fx://1", "a%2Fx:"),
            ("conductor:a%2fb/x://1", "a%2fb"),
        ] {
            assert_eq!(
                err(uri),
                SplitError::UnknownServer {
                    uri: uri.into(),
                    server: server.into()
                }
            );
        }
        // Un-namespaced, empty parts, another case of the prefix.
        for u in [
            "file:///etc/passwd",
            "conductor:a%2Fnote",
            "conductor%3Aa/x://1",
            "conductor:a",
            "conductor:/x://1",
            "conductor:a/",
            "Conductor:a/x://1",
            "",
        ] {
            assert!(matches!(err(u), SplitError::NotNamespaced(_)), "{u}");
        }
        // The message names the URI, shown safely.
        let e = err("conductor:nosuch/\u{1b}[2Jx").to_string();
        assert!(e.contains("conductor:nosuch/\\u{1b}[2Jx"), "{e}");
        assert!(!e.contains('\u{1b}'), "{e}");
    }

    #[test]
    fn a_filter_the_gateway_cannot_split_is_an_error() {
        assert_eq!(split(&SERVERS, None), Err(SplitError::NoFilter));
        assert_eq!(
            split(&SERVERS, Some(&json!({"notifications": []}))),
            Err(SplitError::NoFilter)
        );
        assert_eq!(
            parts(json!({"toolsListChanged": "yes"})),
            Err(SplitError::NotBool("toolsListChanged"))
        );
        assert_eq!(
            parts(json!({"resourceSubscriptions": "conductor:a/x://1"})),
            Err(SplitError::NotUris)
        );
        assert_eq!(
            parts(json!({"resourceSubscriptions": [1]})),
            Err(SplitError::NotUris)
        );
        assert_eq!(
            parts(json!({"tasks": {"uri": "conductor:a/x://1"}})),
            Err(SplitError::Unknown("tasks".into()))
        );
        for nothing in [
            json!({}),
            json!({"toolsListChanged": false}),
            json!({"resourceSubscriptions": []}),
        ] {
            assert_eq!(parts(nothing), Err(SplitError::Empty));
        }
    }

    #[test]
    fn the_acknowledgements_merge_back_into_the_aggregate_namespace() {
        let a = json!({"toolsListChanged": true, "resourceSubscriptions": ["file:///x"]});
        let wiki = json!({"resourceSubscriptions": ["note://1", 7], "promptsListChanged": false});
        let merged = merged_filter(&[("a", Some(&a)), ("wiki", Some(&wiki)), ("ab", None)]);
        assert_eq!(
            merged,
            json!({"toolsListChanged": true,
                   "resourceSubscriptions": ["conductor:a/file:///x", "conductor:wiki/note://1"]})
        );
        // A URI that went out comes back as the client wrote it.
        let p = parts(json!({"resourceSubscriptions": ["conductor:wiki/note://1"]})).unwrap();
        let back = merged_filter(&[("wiki", Some(&p[0].params["notifications"]))]);
        assert_eq!(
            back,
            json!({"resourceSubscriptions": ["conductor:wiki/note://1"]})
        );
    }

    #[test]
    fn notifications_are_tagged_with_the_clients_subscription_id() {
        let m = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                       "params": {"uri": "conductor:a/x://1",
                                  "_meta": {SUBSCRIPTION_ID_META_KEY: 3}}});
        let t = tagged(m, &json!("client-7"));
        assert_eq!(t["params"]["_meta"][SUBSCRIPTION_ID_META_KEY], "client-7");
        assert_eq!(t["params"]["uri"], "conductor:a/x://1");
        let untagged = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {}});
        assert_eq!(tagged(untagged.clone(), &json!(1)), untagged);
    }
}
