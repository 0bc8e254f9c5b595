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
use conductor_gate::{APPROVAL_INPUT_KEY, Answered, Held, Verdict, is_our_state};

/// The `_meta` key of a 2026-07-28 request's protocol version.
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The `_meta` key of a 2026-07-28 request's client capabilities.
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// How the gate's own requests to the client (`elicitation/create`) are named: a
/// prefix and 128 random bits, so that they can collide with no id the server uses.
const ASK_ID_PREFIX: &str = "dev.conductor/approval/";

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
    /// The person's answer to the gate's `input_required` result, taken off the
    /// request (it is the gate's, never forwarded).
    pub answered: Option<Answered>,
    /// The request says (2026-07-28 `_meta`) that its client can take an
    /// `input_required` result with an elicitation in it.
    pub takes_input_required: bool,
}

/// How a held call is put to the person at the client, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Not at the client: the call waits for another approver.
    No,
    /// 2025-11-25: an `elicitation/create` request to the client.
    Elicit,
    /// 2026-07-28: an `input_required` result with a signed `requestState`.
    InputRequired,
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
    /// The client answered the gate's own `elicitation/create` for `held`: decide it
    /// with `result` (`None`: the client answered with an error; the call stays held).
    /// Nothing goes to the server.
    Answered {
        /// The held call asked about.
        held: Held,
        /// The `ElicitResult`, or `None` for an error answer.
        result: Option<Value>,
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
    /// The gate's own `elicitation/create` requests waiting for the client.
    asks: Asks,
    /// The client declared the `elicitation` capability in `initialize` (2025-11-25).
    elicits: bool,
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
                let mut value = value;
                let mut bytes = bytes;
                if method == "initialize" {
                    self.elicits = declares_elicitation(value.get("params"));
                }
                let takes_input_required = takes_input_required(&value);
                // The gate's own state and the person's answer are the gate's: taken off
                // the request, never forwarded (the server gets the call as first sent).
                let answered = take_answer(&mut value);
                if answered.is_some() {
                    match serde_json::to_vec(&value) {
                        Ok(b) => bytes = b,
                        Err(_) => {
                            self.pending.remove(&framing::id_key(&id));
                            return ClientStep::Answer(framing::error_line(
                                &id,
                                code::INTERNAL_ERROR,
                                "the gate could not rewrite this request; it was not forwarded",
                                None,
                            ));
                        }
                    }
                }
                let params = value.get("params").cloned().unwrap_or(Value::Null);
                ClientStep::Decide(Pending {
                    id: Some(id),
                    method,
                    params,
                    bytes,
                    mode,
                    answered,
                    takes_input_required,
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
                        answered: None,
                        takes_input_required: false,
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
                // INVARIANT: an answer to the gate's own question never reaches the server.
                if let Some(held) = self.asks.take(&id) {
                    return ClientStep::Answered {
                        held,
                        result: value.get("result").cloned(),
                    };
                }
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
                    answered: None,
                    takes_input_required: false,
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

    /// How a held call of `pending` is put to the person at the client, when the policy
    /// lets the gate ask there (`allowed`).
    pub fn ask_mode(&self, pending: &Pending, allowed: bool) -> Ask {
        let decided_request = pending.id.is_some() && pending.mode == Mode::Always;
        ask_mode(
            allowed && decided_request,
            pending.takes_input_required,
            self.elicits,
        )
    }

    /// The gate's `elicitation/create` request to the client about `held` (form
    /// `params`), under an id of the gate's own; `None` when no id could be drawn.
    pub fn ask(&mut self, held: &Held, params: Value) -> Option<Vec<u8>> {
        let from_server = &self.from_server;
        let request = self
            .asks
            .ask(held, params, |key| from_server.contains_key(key))?;
        serde_json::to_vec(&request).ok()
    }

    /// `held` was decided: if the gate's question about it is still open at the client,
    /// the `notifications/cancelled` that withdraws it.
    pub fn forget_ask(&mut self, held: &Held) -> Option<Vec<u8>> {
        serde_json::to_vec(&self.asks.forget(held)?).ok()
    }

    /// Answer `pending` with `result` (an `input_required` result) instead of sending
    /// it to the server.
    pub fn answer_with(&mut self, pending: Pending, result: Value) -> Decided {
        let Some(id) = pending.id else {
            return Decided::default();
        };
        self.pending.remove(&framing::id_key(&id));
        Decided {
            to_server: None,
            to_client: Some(framing::result_line(&id, result)),
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
                if self.asks.asked(&id) {
                    // INVARIANT: the client's answer must not be taken for the gate's.
                    crate::warn(
                        "dropped a request from the mcp server that reuses an id of the gate's own",
                    );
                    return ServerStep::Nothing;
                }
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

/// How a held call is put to the person at the client: `allowed` (the policy lets the
/// gate ask there, and the message is a decided request), then the 2026-07-28
/// `input_required` result when the request says its client takes one, else the
/// 2025-11-25 `elicitation/create` when the client declared `elicitation`.
pub fn ask_mode(allowed: bool, takes_input_required: bool, elicits: bool) -> Ask {
    if !allowed {
        Ask::No
    } else if takes_input_required {
        Ask::InputRequired
    } else if elicits {
        Ask::Elicit
    } else {
        Ask::No
    }
}

/// Whether `initialize` params declare the `elicitation` capability (2025-11-25).
pub fn declares_elicitation(params: Option<&Value>) -> bool {
    params
        .and_then(|p| p.pointer("/capabilities/elicitation"))
        .is_some_and(Value::is_object)
}

/// Whether `id` has the form of the gate's own requests to the client (it may be no
/// question open in this session).
pub fn is_ask_id(id: &Value) -> bool {
    id.as_str().is_some_and(|s| s.starts_with(ASK_ID_PREFIX))
}

/// The gate's own `elicitation/create` requests open at one client, by id: the book
/// every transport keeps (the stdio relay's [`Session`], the HTTP gateway's sessions).
///
/// INVARIANT: an id is drawn from 128 random bits under a prefix of the gate's, and is
/// never one the server has in flight: the client's answer cannot be taken for the
/// server's, nor the server's request for the gate's.
#[derive(Debug, Default)]
pub struct Asks {
    /// id key → (the id, the held call asked about).
    open: HashMap<String, (Value, Held)>,
}

impl Asks {
    /// A book with no question open.
    pub fn new() -> Asks {
        Asks::default()
    }

    /// The `elicitation/create` request asking about `held` (form `params`), under a new
    /// id of the gate's own (`in_use`: whether the transport already uses an id key);
    /// `None` when no id could be drawn or too many questions are open.
    pub fn ask(
        &mut self,
        held: &Held,
        params: Value,
        in_use: impl Fn(&str) -> bool,
    ) -> Option<Value> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).ok()?;
        let id = Value::String(format!("{ASK_ID_PREFIX}{}", hex::encode(raw)));
        let key = framing::id_key(&id);
        if in_use(&key) || self.open.contains_key(&key) || self.open.len() >= MAX_PENDING {
            return None;
        }
        self.open.insert(key, (id.clone(), held.clone()));
        Some(serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": "elicitation/create", "params": params,
        }))
    }

    /// Whether `id` is a question open here.
    pub fn asked(&self, id: &Value) -> bool {
        self.open.contains_key(&framing::id_key(id))
    }

    /// The client answered `id`: the held call it asked about, if it is open here (it
    /// is closed by this).
    pub fn take(&mut self, id: &Value) -> Option<Held> {
        self.open.remove(&framing::id_key(id)).map(|(_, held)| held)
    }

    /// `held` was decided: if the question about it is still open, it is closed and the
    /// `notifications/cancelled` that withdraws it is returned.
    pub fn forget(&mut self, held: &Held) -> Option<Value> {
        // (The id itself, not its key: a key is not JSON — `notifications/cancelled`
        // was never sent while it was read back from the key.)
        let key = self
            .open
            .iter()
            .find(|(_, (_, h))| h.id() == held.id())
            .map(|(k, _)| k.clone())?;
        let (id, _) = self.open.remove(&key)?;
        Some(serde_json::json!({
            "jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": id, "reason": "the call was decided elsewhere"},
        }))
    }
}

/// Whether a request says (2026-07-28 `_meta`) that its client takes an
/// `input_required` result with an elicitation in it.
pub fn takes_input_required(request: &Value) -> bool {
    let Some(meta) = conductor_types::member(request, &["params", "_meta"]) else {
        return false;
    };
    let version = meta.get(META_VERSION).and_then(Value::as_str);
    version.is_some_and(|v| v >= "2026-07-28")
        && meta
            .get(META_CAPABILITIES)
            .and_then(|c| c.get("elicitation"))
            .is_some_and(Value::is_object)
}

/// Take the gate's `requestState` (and the person's answer under the gate's key in
/// `inputResponses`) off a retried request. A `requestState` of the server's is left.
pub fn take_answer(request: &mut Value) -> Option<Answered> {
    let params = request.get_mut("params")?.as_object_mut()?;
    let state = params.get("requestState")?.as_str()?;
    if !is_our_state(state) {
        return None;
    }
    let state = state.to_string();
    params.remove("requestState");
    let mut response = Value::Null;
    if let Some(Value::Object(responses)) = params.get_mut("inputResponses") {
        response = responses.remove(APPROVAL_INPUT_KEY).unwrap_or(Value::Null);
        if responses.is_empty() {
            params.remove("inputResponses");
        }
    }
    Some(Answered { state, response })
}

/// What a message carries to the client: a response's `result` or `error`, a
/// request's or notification's `params`.
pub fn answer_body(message: &Value) -> Option<&Value> {
    message
        .get("result")
        .or_else(|| message.get("error"))
        .or_else(|| message.get("params"))
}
