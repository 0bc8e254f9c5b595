//! The relay: client ⇄ gate ⇄ server over newline-delimited JSON-RPC.
//!
//! INVARIANT: a message the gate does not change is relayed byte for byte (the
//! original line; it is parsed only to be inspected). Messages keep their order in
//! each direction: a gated request holds its place in the queue to the server until
//! it is decided, and a result being inspected holds its place in the queue to the
//! client.
//!
//! INVARIANT: a `tools/call`, `resources/read` or `resources/subscribe` reaches the server only after the
//! gate has allowed it and committed its audit record.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, oneshot, watch};

use crate::framing::{self, Invalid, Line, Message, code};
use crate::gate::{Gate, Verdict, refusal_result, refusal_text};

/// Default largest message, in bytes (16 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Largest line accepted from either side.
    pub max_message_bytes: usize,
    /// After the client is gone (EOF or shutdown), how long the server gets to exit
    /// on its own once its input is closed.
    pub shutdown_grace: Duration,
    /// Decide gated requests on the relay task itself and await their audit commit
    /// without a thread (instead of one `spawn_blocking` per decision). Only for a gate
    /// whose resolver never blocks (no DNS lookups: `--no-dns`, fixed addresses).
    pub decide_inline: bool,
    /// With `decide_inline`: commit the audit records on the relay task too, several
    /// per transaction (every gated line read while more complete lines are buffered
    /// joins the batch; the batch commits when none is left), instead of handing each to
    /// the audit writer thread. The task blocks for each commit: for a store whose
    /// commits do not wait for the disk (durability `normal`).
    pub commit_inline: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            shutdown_grace: Duration::from_secs(2),
            decide_inline: false,
            commit_inline: false,
        }
    }
}

/// How the relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The server closed its output (it exited, or is exiting).
    pub server_closed: bool,
    /// The client closed its input (EOF) or shutdown was requested.
    pub client_closed: bool,
}

/// What a relay queue carries: a line now, or a line (or nothing) once decided.
enum Out {
    Ready(Vec<u8>),
    Later(oneshot::Receiver<Option<Vec<u8>>>),
    /// A line (or nothing) once this future (an audit commit) resolves.
    Wait(Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The answer is pinned and filtered (not scanned: descriptors are metadata).
    ToolsList,
    /// The answer is scanned for labels: every method but the metadata ones.
    Labelled,
    /// `initialize`, `server/discover`, `ping`: metadata, relayed as is.
    Metadata,
}

/// The kind of answer a client request gets.
fn kind_of(method: &str) -> Kind {
    match method {
        "tools/list" => Kind::ToolsList,
        "initialize" | "server/discover" | "ping" => Kind::Metadata,
        _ => Kind::Labelled,
    }
}

fn pending_has(p: &Pending, id: &Value) -> bool {
    p.lock()
        .map(|m| m.contains_key(&framing::id_key(id)))
        .unwrap_or(true)
}

type Pending = Arc<Mutex<HashMap<String, (Value, Kind)>>>;

fn pending_insert(p: &Pending, id: &Value, kind: Kind) {
    if let Ok(mut m) = p.lock() {
        m.insert(framing::id_key(id), (id.clone(), kind));
    }
}

fn pending_take(p: &Pending, id: &Value) -> Option<Kind> {
    p.lock()
        .ok()
        .and_then(|mut m| m.remove(&framing::id_key(id)))
        .map(|(_, k)| k)
}

const QUEUE: usize = 1024;

/// Results up to this size are scanned on the relay task itself (a few microseconds);
/// larger ones on a blocking thread.
const INLINE_SCAN_BYTES: usize = 16 * 1024;

/// Relay between a client (`client_in`/`client_out`) and a server (`server_out` is
/// what the server writes, `server_in` what it reads) until the server closes its
/// output, or the client is gone and the server has had `shutdown_grace` to exit.
/// Setting `shutdown` to `true` acts like EOF from the client.
pub async fn run<CR, CW, SR, SW>(
    gate: Arc<Gate>,
    options: EngineOptions,
    client_in: CR,
    client_out: CW,
    server_out: SR,
    server_in: SW,
    mut shutdown: watch::Receiver<bool>,
) -> Outcome
where
    CR: AsyncRead + Unpin + Send + 'static,
    CW: AsyncWrite + Unpin + Send + 'static,
    SR: AsyncRead + Unpin + Send + 'static,
    SW: AsyncWrite + Unpin + Send + 'static,
{
    let max = options.max_message_bytes;
    let inline = match (options.decide_inline, options.commit_inline) {
        (false, _) => Inline::No,
        (true, false) => Inline::Decide,
        (true, true) => Inline::DecideAndCommit,
    };
    let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
    let (to_client, client_rx) = mpsc::channel::<Out>(QUEUE);
    let (to_server, server_rx) = mpsc::channel::<Out>(QUEUE);

    let client_writer = tokio::spawn(write_queue(client_out, client_rx, "client"));
    let server_writer = tokio::spawn(write_queue(server_in, server_rx, "server"));

    // Server → client.
    let server_reader = {
        let gate = Arc::clone(&gate);
        let pending = Arc::clone(&pending);
        let to_client = to_client.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::with_capacity(64 * 1024, server_out);
            loop {
                let line = match framing::read_line(&mut reader, max).await {
                    Ok(Line::Eof) | Err(_) => break,
                    Ok(l) => l,
                };
                if !relay_from_server(&gate, &pending, &to_client, line).await {
                    break;
                }
            }
            // INVARIANT: every request still waiting for the server gets an answer.
            let waiting: Vec<Value> = match pending.lock() {
                Ok(mut m) => m.drain().map(|(_, (id, _))| id).collect(),
                Err(_) => Vec::new(),
            };
            for id in waiting {
                let line = framing::error_line(
                    &id,
                    code::SERVER_GONE,
                    "the mcp server exited before answering this request",
                    None,
                );
                let _ = to_client.send(Out::Ready(line)).await;
            }
        })
    };

    // Client → server.
    let client_reader = {
        let gate = Arc::clone(&gate);
        let pending = Arc::clone(&pending);
        let to_client = to_client.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::with_capacity(64 * 1024, client_in);
            let mut batch = Batch::default();
            loop {
                // Commit what is held once no complete line is left to read: the client
                // is waiting for these answers (a partial line may never be completed).
                if !batch.held.is_empty()
                    && !reader.buffer().contains(&b'\n')
                    && !batch.commit(&gate, &pending, &to_client, &to_server).await
                {
                    break;
                }
                let line = tokio::select! {
                    biased;
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() { break; }
                        continue;
                    }
                    l = framing::read_line(&mut reader, max) => l,
                };
                let line = match line {
                    Ok(Line::Eof) | Err(_) => break,
                    Ok(l) => l,
                };
                if !relay_from_client(
                    &gate, &pending, &to_client, &to_server, line, max, inline, &mut batch,
                )
                .await
                {
                    break;
                }
            }
            let _ = batch.commit(&gate, &pending, &to_client, &to_server).await;
            // Dropping `to_server` closes the server's input once the queue drains.
        })
    };
    drop(to_client);

    let mut server_reader = server_reader;
    let mut client_reader = client_reader;
    let mut outcome = Outcome {
        server_closed: false,
        client_closed: false,
    };
    tokio::select! {
        _ = &mut server_reader => {
            outcome.server_closed = true;
            client_reader.abort();
            let _ = client_reader.await;
        }
        _ = &mut client_reader => {
            outcome.client_closed = true;
            // The server's input closes when its queue drains; give it time to finish.
            if tokio::time::timeout(options.shutdown_grace, &mut server_reader).await.is_ok() {
                outcome.server_closed = true;
            } else {
                server_reader.abort();
            }
        }
    }
    let _ = client_writer.await;
    server_writer.abort();
    outcome
}

/// Write queued lines in order, flushing when the queue is momentarily empty. A peer
/// that went away makes further lines be discarded (so that no sender blocks).
async fn write_queue<W: AsyncWrite + Unpin>(out: W, mut rx: mpsc::Receiver<Out>, _who: &str) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    let mut broken = false;
    while let Some(item) = rx.recv().await {
        let line = match item {
            Out::Ready(l) => Some(l),
            Out::Later(rx) => rx.await.ok().flatten(),
            Out::Wait(f) => f.await,
        };
        if let Some(line) = line
            && !broken
        {
            let r = async {
                out.write_all(&line).await?;
                out.write_all(b"\n").await
            }
            .await;
            broken = r.is_err();
        }
        if rx.is_empty() && !broken {
            broken = out.flush().await.is_err();
        }
    }
    let _ = out.flush().await;
    let _ = out.shutdown().await;
}

/// Handle one line from the client. Returns false when the relay must stop.
#[expect(
    clippy::too_many_arguments,
    reason = "the relay's shared state, passed as is until the service crate replaces this function"
)]
async fn relay_from_client(
    gate: &Arc<Gate>,
    pending: &Pending,
    to_client: &mpsc::Sender<Out>,
    to_server: &mpsc::Sender<Out>,
    line: Line,
    max: usize,
    inline: Inline,
    batch: &mut Batch,
) -> bool {
    let bytes = match line {
        Line::Eof => return false,
        Line::TooLong { len: n, .. } => {
            let msg = format!(
                "message of {n} bytes is longer than the limit of {max} bytes; it was dropped"
            );
            return to_client
                .send(Out::Ready(framing::error_line(
                    &Value::Null,
                    code::INVALID_REQUEST,
                    &msg,
                    None,
                )))
                .await
                .is_ok();
        }
        Line::Complete(b) => b,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return true;
    }
    let message = match framing::classify(&bytes) {
        Ok(m) => m,
        Err(Invalid::Parse(e)) => {
            let line = framing::error_line(
                &Value::Null,
                code::PARSE_ERROR,
                &format!("parse error: {e}"),
                None,
            );
            return to_client.send(Out::Ready(line)).await.is_ok();
        }
        Err(Invalid::Shape { id, message }) => {
            let line = framing::error_line(
                &id,
                code::INVALID_REQUEST,
                &format!("invalid request: {message}"),
                None,
            );
            return to_client.send(Out::Ready(line)).await.is_ok();
        }
    };
    let held_here = inline == Inline::DecideAndCommit
        && matches!(&message, Message::Request { method, .. } if is_gated(method));
    // Lines keep their order to the server: what is held is committed (and forwarded)
    // before any other line goes to the server queue.
    if !held_here
        && !batch.held.is_empty()
        && !batch.commit(gate, pending, to_client, to_server).await
    {
        return false;
    }
    // INVARIANT: one pending entry per id (by value): a second request with the id of
    // one in flight could otherwise take over its answer's handling (a `tools/list`
    // matched as a call would skip pinning and filtering).
    if let Message::Request { id, .. } = &message
        && pending_has(pending, id)
    {
        let line = framing::error_line(
            id,
            code::INVALID_REQUEST,
            "invalid request: a request with this id is already in flight",
            None,
        );
        return to_client.send(Out::Ready(line)).await.is_ok();
    }
    match message {
        Message::Request { id, method, value } if held_here => {
            // The id is reserved while the call is decided; a refusal releases it.
            pending_insert(pending, &id, Kind::Labelled);
            let is_call = method == "tools/call";
            // Decided here (CPU only: the resolver does no lookups); its record is
            // committed with the batch, before the line is forwarded.
            let held = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let params = value.get("params");
                if is_call {
                    gate.decide_call_held(params)
                } else {
                    gate.decide_resource_held(&method, params)
                }
            }));
            let Ok(held) = held else {
                // INVARIANT: a decision that failed is a refusal.
                let _ = pending_take(pending, &id);
                let line = framing::error_line(
                    &id,
                    code::INTERNAL_ERROR,
                    "the gate failed while deciding this request; it was not forwarded",
                    None,
                );
                return to_client.send(Out::Ready(line)).await.is_ok();
            };
            batch.held.push(held);
            batch.lines.push((id, is_call, bytes));
            if batch.held.len() >= MAX_HELD {
                return batch.commit(gate, pending, to_client, to_server).await;
            }
            true
        }
        Message::Request { id, method, value } if is_gated(&method) && inline == Inline::Decide => {
            // The id is reserved while the call is decided; a refusal releases it.
            pending_insert(pending, &id, Kind::Labelled);
            let is_call = method == "tools/call";
            // Decided here (CPU only: the resolver does no lookups); the record is
            // handed to the audit writer, and the line waits for its commit in its place
            // in the server queue, so the next line is read at once.
            let submitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let params = value.get("params");
                if is_call {
                    gate.decide_call_submitted(params)
                } else {
                    gate.decide_resource_submitted(&method, params)
                }
            }));
            let Ok(submitted) = submitted else {
                // INVARIANT: a decision that failed is a refusal.
                let _ = pending_take(pending, &id);
                let line = framing::error_line(
                    &id,
                    code::INTERNAL_ERROR,
                    "the gate failed while deciding this request; it was not forwarded",
                    None,
                );
                return to_client.send(Out::Ready(line)).await.is_ok();
            };
            let pending = Arc::clone(pending);
            let to_client = to_client.clone();
            let forward = async move {
                // INVARIANT: the line is written only once its record is committed.
                match submitted.verdict().await {
                    Verdict { forward: true, .. } => Some(bytes),
                    Verdict { decision, .. } => {
                        let _ = pending_take(&pending, &id);
                        let _ = to_client
                            .send(Out::Ready(refusal_line(&id, is_call, &decision)))
                            .await;
                        None
                    }
                }
            };
            to_server.send(Out::Wait(Box::pin(forward))).await.is_ok()
        }
        Message::Request { id, method, value } if is_gated(&method) => {
            // The id is reserved while the call is decided; a refusal releases it.
            pending_insert(pending, &id, Kind::Labelled);
            let (tx, rx) = oneshot::channel();
            if to_server.send(Out::Later(rx)).await.is_err() {
                return false;
            }
            let gate = Arc::clone(gate);
            let pending = Arc::clone(pending);
            let to_client = to_client.clone();
            // One hop: the decision, its audit commit and the hand-off all happen on a
            // blocking thread (DNS and the commit block).
            tokio::task::spawn_blocking(move || {
                let is_call = method == "tools/call";
                let params = value.get("params");
                let decided = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    if is_call {
                        gate.decide_call(params)
                    } else {
                        gate.decide_resource(&method, params)
                    }
                }));
                match decided {
                    Ok(Verdict { forward: true, .. }) => {
                        let _ = tx.send(Some(bytes));
                    }
                    Ok(Verdict { decision, .. }) => {
                        let _ = pending_take(&pending, &id);
                        let _ = tx.send(None);
                        let line = refusal_line(&id, is_call, &decision);
                        let _ = to_client.blocking_send(Out::Ready(line));
                    }
                    Err(_) => {
                        // INVARIANT: a decision that failed is a refusal.
                        let _ = pending_take(&pending, &id);
                        let _ = tx.send(None);
                        let line = framing::error_line(
                            &id,
                            code::INTERNAL_ERROR,
                            "the gate failed while deciding this request; it was not forwarded",
                            None,
                        );
                        let _ = to_client.blocking_send(Out::Ready(line));
                    }
                }
            });
            true
        }
        Message::Request { id, method, .. } => {
            pending_insert(pending, &id, kind_of(&method));
            to_server.send(Out::Ready(bytes)).await.is_ok()
        }
        Message::Notification { method, value } if is_gated(&method) => {
            // INVARIANT: a gated method never passes undecided. Without an id it cannot
            // be answered, so it is recorded as refused and dropped.
            let gate = Arc::clone(gate);
            let done = tokio::task::spawn_blocking(move || {
                gate.refuse_notification(&method, value.get("params"));
            })
            .await;
            done.is_ok()
        }
        Message::Notification { .. } | Message::Response { .. } => {
            to_server.send(Out::Ready(bytes)).await.is_ok()
        }
    }
}

/// Where gated requests are decided and committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inline {
    /// On a blocking thread (decision and audit commit).
    No,
    /// Decided on the relay task, the record handed to the audit writer thread.
    Decide,
    /// Decided on the relay task and committed there, several per transaction.
    DecideAndCommit,
}

/// Most decisions held for one commit.
const MAX_HELD: usize = 256;

/// Gated requests decided on the relay task, waiting for their common commit.
#[derive(Default)]
struct Batch {
    held: Vec<crate::gate::Held>,
    lines: Vec<(Value, bool, Vec<u8>)>,
}

impl Batch {
    /// Commit every held record in one transaction, then forward the allowed lines in
    /// order and answer the refused ones. Returns false when the relay must stop.
    async fn commit(
        &mut self,
        gate: &Arc<Gate>,
        pending: &Pending,
        to_client: &mpsc::Sender<Out>,
        to_server: &mpsc::Sender<Out>,
    ) -> bool {
        if self.held.is_empty() {
            return true;
        }
        let held = std::mem::take(&mut self.held);
        let lines = std::mem::take(&mut self.lines);
        let n = held.len();
        // INVARIANT: a line is forwarded only after COMMIT returned for its record; a
        // commit that failed or panicked refuses every line of the batch.
        let verdicts =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gate.commit_here(held)))
                .ok()
                .filter(|v| v.len() == n);
        let Some(verdicts) = verdicts else {
            for (id, _, _) in lines {
                let _ = pending_take(pending, &id);
                let line = framing::error_line(
                    &id,
                    code::INTERNAL_ERROR,
                    "the gate failed while recording this request; it was not forwarded",
                    None,
                );
                if to_client.send(Out::Ready(line)).await.is_err() {
                    return false;
                }
            }
            return true;
        };
        for ((id, is_call, bytes), verdict) in lines.into_iter().zip(verdicts) {
            if verdict.forward {
                if to_server.send(Out::Ready(bytes)).await.is_err() {
                    return false;
                }
            } else {
                let _ = pending_take(pending, &id);
                let line = refusal_line(&id, is_call, &verdict.decision);
                if to_client.send(Out::Ready(line)).await.is_err() {
                    return false;
                }
            }
        }
        true
    }
}

/// The answer to a refused gated request: a tool error result for a call, a JSON-RPC
/// error for a resource request.
fn refusal_line(id: &Value, is_call: bool, decision: &conductor_core::Decision) -> Vec<u8> {
    if is_call {
        framing::result_line(id, refusal_result(decision))
    } else {
        framing::error_line(
            id,
            code::DENIED,
            &refusal_text(decision),
            Some(serde_json::json!({ crate::gate::META_KEY: decision })),
        )
    }
}

/// Methods that reach the server only after a decision: a tool call, and the requests
/// that make the server fetch a resource by URI (a subscription fetches it again on
/// every change, so it is decided like a read).
fn is_gated(method: &str) -> bool {
    matches!(
        method,
        "tools/call" | "resources/read" | "resources/subscribe"
    )
}

/// Handle one line from the server. Returns false when the relay must stop.
async fn relay_from_server(
    gate: &Arc<Gate>,
    pending: &Pending,
    to_client: &mpsc::Sender<Out>,
    line: Line,
) -> bool {
    let bytes = match line {
        Line::Eof => return false,
        Line::TooLong { len, head } => {
            crate::gate::warn(&format!(
                "dropped a message of {len} bytes from the mcp server: longer than the limit"
            ));
            // Answer the request it was meant for, when its id can be read, so that the
            // client does not wait for ever.
            if let Some(id) = framing::id_from_head(&head)
                && pending_take(pending, &id).is_some()
            {
                let line = framing::error_line(
                    &id,
                    code::INTERNAL_ERROR,
                    &format!(
                        "the mcp server's answer of {len} bytes is longer than the limit; it was dropped"
                    ),
                    None,
                );
                return to_client.send(Out::Ready(line)).await.is_ok();
            }
            return true;
        }
        Line::Complete(b) => b,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return true;
    }
    let message = match framing::classify(&bytes) {
        Ok(m) => m,
        Err(_) => {
            crate::gate::warn("dropped a line from the mcp server that is not a json-rpc message");
            // Answer the request it was meant for, when its id can be read, so that the
            // client does not wait until the server exits.
            if let Some(id) = framing::id_from_head(&bytes)
                && pending_take(pending, &id).is_some()
            {
                let line = framing::error_line(
                    &id,
                    code::INTERNAL_ERROR,
                    "the mcp server's answer is not a valid json-rpc message; it was dropped",
                    None,
                );
                return to_client.send(Out::Ready(line)).await.is_ok();
            }
            return true;
        }
    };
    let (kind, value) = match message {
        // A response we cannot match (an id the server rewrote, or never asked for) is
        // treated by its content: pinning, filtering and scanning are safe to over-apply.
        Message::Response { id, value } => match pending_take(pending, &id) {
            Some(k) => (k, value),
            None if value.pointer("/result/tools").is_some_and(Value::is_array) => {
                (Kind::ToolsList, value)
            }
            None => (Kind::Labelled, value),
        },
        // Server-initiated requests and notifications (logging, progress, sampling,
        // elicitation) carry text to the agent too: their labels count.
        Message::Request { value, .. } | Message::Notification { value, .. } => {
            (Kind::Labelled, value)
        }
    };
    let kind = Some(kind);
    match kind {
        Some(Kind::ToolsList) if value.get("result").is_some() => {
            let (tx, rx) = oneshot::channel();
            if to_client.send(Out::Later(rx)).await.is_err() {
                return false;
            }
            let gate = Arc::clone(gate);
            tokio::spawn(async move {
                let processed = tokio::task::spawn_blocking(move || {
                    let mut value = value;
                    let changed = value
                        .get_mut("result")
                        .is_some_and(|r| gate.process_tools_list(r));
                    if changed {
                        serde_json::to_vec(&value).ok()
                    } else {
                        Some(bytes)
                    }
                })
                .await;
                let _ = tx.send(processed.ok().flatten());
            });
            true
        }
        Some(Kind::Labelled) => {
            // The result reaches the client only after its labels are counted, so no
            // later call can be decided without them.
            if bytes.len() <= INLINE_SCAN_BYTES {
                // INVARIANT: bounded work, no I/O (scanning a few KiB takes microseconds).
                if let Some(r) = answer_body(&value) {
                    gate.label_result(r);
                }
                return to_client.send(Out::Ready(bytes)).await.is_ok();
            }
            let (tx, rx) = oneshot::channel();
            if to_client.send(Out::Later(rx)).await.is_err() {
                return false;
            }
            let gate = Arc::clone(gate);
            tokio::task::spawn_blocking(move || {
                if let Some(r) = answer_body(&value) {
                    gate.label_result(r);
                }
                let _ = tx.send(Some(bytes));
            });
            true
        }
        _ => to_client.send(Out::Ready(bytes)).await.is_ok(),
    }
}

/// What a message carries to the client: a response's `result` or `error` (an error's
/// message and data can carry the same data a result can), a request's or
/// notification's `params`.
fn answer_body(message: &Value) -> Option<&Value> {
    message
        .get("result")
        .or_else(|| message.get("error"))
        .or_else(|| message.get("params"))
}
