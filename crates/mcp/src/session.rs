//! The MCP session logic, sans I/O: what to do with each message from either side.
//!
//! A transport reads a message, hands it to [`Session::on_client`] or
//! [`Session::on_server`], and carries out the step it gets back: forward bytes,
//! answer, or have the gate decide (then [`Session::decided`] says what to send).
//! The same logic serves the stdio relay and the HTTP gateway.
//!
//! INVARIANT: nothing from the client reaches the server undecided: decided methods
//! wait for their verdict; protocol metadata and known notifications pass only when
//! no detector finds anything in them (otherwise they are decided); unknown methods
//! are decided — and refused; the client's answers to the server's own requests are
//! decided before the server sees them.

use std::collections::HashMap;

use serde_json::Value;

use crate::framing::{self, Invalid, Message, code};
use crate::gate::{
    META_KEY, MethodClass, known_notification, method_class, refusal_result, refusal_text,
};
use conductor_gate::Verdict;

/// How many client requests may wait for the server at once.
pub const MAX_PENDING: usize = 4096;

/// The kind of answer a client request gets from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The answer is pinned and filtered, and scanned.
    ToolsList,
    /// The answer is scanned for labels.
    Labelled,
    /// A `prompts/get` answer: scanned, and every resource it embeds is decided like
    /// a `resources/read` of its URI.
    Prompt,
}

/// When a client message is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Always (a call, a read, a prompt, an unknown method).
    Always,
    /// Only when a detector finds something in its params (protocol metadata).
    IfFindings,
    /// The client's answer to the server's request `method`.
    Reply {
        /// The server's request method (`sampling/createMessage`, …).
        method: String,
    },
}

/// A client message waiting for a decision.
#[derive(Debug)]
pub struct Pending {
    /// The request id; `None` for a notification.
    pub id: Option<Value>,
    /// The method (for a reply: the server's request method).
    pub method: String,
    /// The params (a request's or notification's), or the reply's `result`/`error`.
    pub params: Value,
    /// The message as received (forwarded byte for byte when allowed).
    pub bytes: Vec<u8>,
    /// When it is decided.
    pub mode: Mode,
}

/// What to do with a message from the client.
#[derive(Debug)]
pub enum ClientStep {
    /// Send these bytes to the server.
    Forward(Vec<u8>),
    /// Answer the client with these bytes; nothing goes to the server.
    Answer(Vec<u8>),
    /// Have the gate decide (see [`Mode`]), then call [`Session::decided`].
    Decide(Pending),
    /// A decided method sent as a notification: record it as refused (it is dropped).
    RefuseNotification {
        /// The method.
        method: String,
        /// Its params.
        params: Option<Value>,
    },
    /// Nothing to send.
    Nothing,
}

/// What to send once a [`Pending`] message is decided.
#[derive(Debug, Default)]
pub struct Decided {
    /// To the server (the message itself, or an error answering the server's request).
    pub to_server: Option<Vec<u8>>,
    /// To the client (a refusal).
    pub to_client: Option<Vec<u8>>,
}

/// What to do with a message from the server.
#[derive(Debug)]
pub enum ServerStep {
    /// Label (and for `ToolsList`, pin and filter) `value`, then deliver — the
    /// original `bytes` unless the gate changed the value.
    Inspect {
        /// How to inspect it.
        kind: Kind,
        /// The parsed message.
        value: Value,
        /// The message as received.
        bytes: Vec<u8>,
        /// The client request it answers, if any.
        answers: Option<Value>,
    },
    /// Answer the client with these bytes (a server message that had to be dropped).
    Answer(Vec<u8>),
    /// Nothing to deliver.
    Nothing,
}

/// The state of one MCP session: what is in flight in each direction.
#[derive(Debug, Default)]
pub struct Session {
    /// Client requests waiting for the server: id key → (id, kind).
    pending: HashMap<String, (Value, Kind)>,
    /// Server requests waiting for the client: id key → method.
    from_server: HashMap<String, String>,
}

impl Session {
    /// A new session.
    pub fn new() -> Session {
        Session::default()
    }

    /// Client requests now waiting for the server.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Every client request still waiting (when the server is gone).
    pub fn drain_pending(&mut self) -> Vec<Value> {
        self.pending.drain().map(|(_, (id, _))| id).collect()
    }

    /// Handle one line from the client (without its newline).
    pub fn on_client(&mut self, bytes: Vec<u8>) -> ClientStep {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return ClientStep::Nothing;
        }
        let message = match framing::classify(&bytes) {
            Ok(m) => m,
            Err(Invalid::Parse(e)) => {
                return ClientStep::Answer(framing::error_line(
                    &Value::Null,
                    code::PARSE_ERROR,
                    &format!("parse error: {e}"),
                    None,
                ));
            }
            Err(Invalid::Shape { id, message }) => {
                return ClientStep::Answer(framing::error_line(
                    &id,
                    code::INVALID_REQUEST,
                    &format!("invalid request: {message}"),
                    None,
                ));
            }
        };
        match message {
            Message::Request { id, method, value } => {
                // INVARIANT: one pending entry per id (by value): a second request with
                // the id of one in flight could take over its answer's handling.
                let key = framing::id_key(&id);
                if self.pending.contains_key(&key) {
                    return ClientStep::Answer(framing::error_line(
                        &id,
                        code::INVALID_REQUEST,
                        "invalid request: a request with this id is already in flight",
                        None,
                    ));
                }
                if self.pending.len() >= MAX_PENDING {
                    return ClientStep::Answer(framing::error_line(
                        &id,
                        code::INVALID_REQUEST,
                        &format!("invalid request: more than {MAX_PENDING} requests in flight"),
                        None,
                    ));
                }
                let kind = match method.as_str() {
                    "tools/list" => Kind::ToolsList,
                    "prompts/get" => Kind::Prompt,
                    _ => Kind::Labelled,
                };
                // The id is reserved while the request is decided; a refusal releases it.
                self.pending.insert(key, (id.clone(), kind));
                let mode = if method_class(&method) == MethodClass::Metadata {
                    Mode::IfFindings
                } else {
                    Mode::Always
                };
                let params = value.get("params").cloned().unwrap_or(Value::Null);
                ClientStep::Decide(Pending {
                    id: Some(id),
                    method,
                    params,
                    bytes,
                    mode,
                })
            }
            Message::Notification { method, value } => {
                let class = method_class(&method);
                if known_notification(&method) || class == MethodClass::Unknown {
                    // Known notifications pass when nothing is found in them; unknown
                    // ones are decided (refused unless the policy lets them pass).
                    let params = value.get("params").cloned().unwrap_or(Value::Null);
                    let mode = if known_notification(&method) {
                        Mode::IfFindings
                    } else {
                        Mode::Always
                    };
                    ClientStep::Decide(Pending {
                        id: None,
                        method,
                        params,
                        bytes,
                        mode,
                    })
                } else {
                    // A decided method without an id cannot be answered: recorded as
                    // refused and dropped.
                    ClientStep::RefuseNotification {
                        method,
                        params: value.get("params").cloned(),
                    }
                }
            }
            Message::Response { id, value } => {
                let method = self
                    .from_server
                    .remove(&framing::id_key(&id))
                    .unwrap_or_else(|| "unknown".to_string());
                let answer = value
                    .get("result")
                    .or_else(|| value.get("error"))
                    .cloned()
                    .unwrap_or(Value::Null);
                ClientStep::Decide(Pending {
                    id: Some(id),
                    method: method.clone(),
                    params: answer,
                    bytes,
                    mode: Mode::Reply { method },
                })
            }
        }
    }

    /// What to send once `pending` is decided; `verdict` is `None` when no decision
    /// was needed (metadata in which no detector found anything).
    pub fn decided(&mut self, pending: Pending, verdict: Option<&Verdict>) -> Decided {
        let forward = verdict.is_none_or(|v| v.forward);
        if forward {
            return Decided {
                to_server: Some(pending.bytes),
                to_client: None,
            };
        }
        let Some(v) = verdict else {
            return Decided::default();
        };
        match (&pending.mode, &pending.id) {
            (Mode::Reply { .. }, Some(id)) => {
                // The server asked; the client's answer is withheld, and the server is
                // told so (it must not wait for ever).
                Decided {
                    to_server: Some(framing::error_line(
                        id,
                        code::DENIED,
                        &refusal_text(&v.decision),
                        None,
                    )),
                    to_client: None,
                }
            }
            (_, Some(id)) => {
                self.pending.remove(&framing::id_key(id));
                let line = if pending.method == "tools/call" {
                    framing::result_line(id, refusal_result(&v.decision))
                } else {
                    let code = if method_class(&pending.method) == MethodClass::Unknown {
                        code::METHOD_NOT_FOUND
                    } else {
                        code::DENIED
                    };
                    framing::error_line(
                        id,
                        code,
                        &refusal_text(&v.decision),
                        Some(serde_json::json!({ META_KEY: v.decision })),
                    )
                };
                Decided {
                    to_server: None,
                    to_client: Some(line),
                }
            }
            // A refused notification is dropped (its record says why).
            (_, None) => Decided::default(),
        }
    }

    /// The gate failed while deciding `pending`: refuse it.
    pub fn failed(&mut self, pending: Pending) -> Decided {
        match (&pending.mode, &pending.id) {
            (Mode::Reply { .. }, Some(id)) => Decided {
                to_server: Some(framing::error_line(
                    id,
                    code::INTERNAL_ERROR,
                    "the gate failed while deciding this answer; it was not forwarded",
                    None,
                )),
                to_client: None,
            },
            (_, Some(id)) => {
                self.pending.remove(&framing::id_key(id));
                Decided {
                    to_server: None,
                    to_client: Some(framing::error_line(
                        id,
                        code::INTERNAL_ERROR,
                        "the gate failed while deciding this request; it was not forwarded",
                        None,
                    )),
                }
            }
            (_, None) => Decided::default(),
        }
    }

    /// Handle one complete line from the server.
    pub fn on_server(&mut self, bytes: Vec<u8>) -> ServerStep {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return ServerStep::Nothing;
        }
        let message = match framing::classify(&bytes) {
            Ok(m) => m,
            Err(_) => {
                crate::warn("dropped a line from the mcp server that is not a json-rpc message");
                return self.answer_dropped(
                    &bytes,
                    "the mcp server's answer is not a valid json-rpc message; it was dropped",
                );
            }
        };
        match message {
            // A response we cannot match (an id the server rewrote, or never asked for)
            // is treated by its content: pinning, filtering and scanning are safe to
            // over-apply.
            Message::Response { id, value } => {
                let taken = self.pending.remove(&framing::id_key(&id));
                let kind = match taken {
                    Some((_, k)) => k,
                    None if value.pointer("/result/tools").is_some_and(Value::is_array) => {
                        Kind::ToolsList
                    }
                    None => Kind::Labelled,
                };
                ServerStep::Inspect {
                    kind,
                    value,
                    bytes,
                    answers: taken.map(|(id, _)| id),
                }
            }
            // Server requests and notifications carry text to the agent too.
            Message::Request { id, method, value } => {
                self.from_server.insert(framing::id_key(&id), method);
                if self.from_server.len() > MAX_PENDING {
                    self.from_server.clear();
                }
                ServerStep::Inspect {
                    kind: Kind::Labelled,
                    value,
                    bytes,
                    answers: None,
                }
            }
            Message::Notification { value, .. } => ServerStep::Inspect {
                kind: Kind::Labelled,
                value,
                bytes,
                answers: None,
            },
        }
    }

    /// A server line longer than the limit was dropped: answer the request it was
    /// meant for, when its id can be read from its head.
    pub fn on_server_too_long(&mut self, len: usize, head: &[u8]) -> ServerStep {
        crate::warn(&format!(
            "dropped a message of {len} bytes from the mcp server: longer than the limit"
        ));
        self.answer_dropped(
            head,
            &format!(
                "the mcp server's answer of {len} bytes is longer than the limit; it was dropped"
            ),
        )
    }

    fn answer_dropped(&mut self, head: &[u8], message: &str) -> ServerStep {
        if let Some(id) = framing::id_from_head(head)
            && self.pending.remove(&framing::id_key(&id)).is_some()
        {
            return ServerStep::Answer(framing::error_line(
                &id,
                code::INTERNAL_ERROR,
                message,
                None,
            ));
        }
        ServerStep::Nothing
    }

    /// The gate could not record the labels of an answer: it is withheld, and the
    /// client request it answers (if any) gets an error instead.
    pub fn withheld(&mut self, answers: Option<&Value>) -> Option<Vec<u8>> {
        answers.map(|id| {
            framing::error_line(
                id,
                code::INTERNAL_ERROR,
                "the gate could not record the labels of this answer; it was withheld",
                None,
            )
        })
    }

    /// A prompt embeds a resource the gate refuses: the answer is withheld, and the
    /// client gets the refusal instead.
    pub fn refused_answer(
        &mut self,
        answers: Option<&Value>,
        verdict: &Verdict,
    ) -> Option<Vec<u8>> {
        answers.map(|id| {
            framing::error_line(
                id,
                code::DENIED,
                &refusal_text(&verdict.decision),
                Some(serde_json::json!({ META_KEY: verdict.decision })),
            )
        })
    }
}

/// What a message carries to the client: a response's `result` or `error`, a
/// request's or notification's `params`.
pub fn answer_body(message: &Value) -> Option<&Value> {
    message
        .get("result")
        .or_else(|| message.get("error"))
        .or_else(|| message.get("params"))
}
