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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, oneshot, watch};

use crate::framing::{self, Line, code};
use crate::gate::Gate;
use crate::session::{
    Ask, ClientStep, Decided, Kind, Mode, Pending, ServerStep, Session, answer_body,
};
use conductor_gate::Verdict;

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
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            shutdown_grace: Duration::from_secs(2),
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
}

type Shared = Arc<Mutex<Session>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Session> {
    match s.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
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
    let session: Shared = Arc::new(Mutex::new(Session::new()));
    let (to_client, client_rx) = mpsc::channel::<Out>(QUEUE);
    let (to_server, server_rx) = mpsc::channel::<Out>(QUEUE);

    let client_writer = tokio::spawn(write_queue(client_out, client_rx, "client"));
    let server_writer = tokio::spawn(write_queue(server_in, server_rx, "server"));

    // Server → client.
    let server_reader = {
        let gate = Arc::clone(&gate);
        let session = Arc::clone(&session);
        let to_client = to_client.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::with_capacity(64 * 1024, server_out);
            loop {
                let line = match framing::read_line(&mut reader, max).await {
                    Ok(Line::Eof) | Err(_) => break,
                    Ok(l) => l,
                };
                if !relay_from_server(&gate, &session, &to_client, line).await {
                    break;
                }
            }
            // INVARIANT: every request still waiting for the server gets an answer.
            let waiting: Vec<Value> = lock(&session).drain_pending();
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
        let session = Arc::clone(&session);
        let to_client = to_client.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::with_capacity(64 * 1024, client_in);
            let mut batch = Batch::default();
            loop {
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
                let io = Io {
                    gate: &gate,
                    session: &session,
                    to_client: &to_client,
                    to_server: &to_server,
                };
                if !relay_from_client(&io, &mut batch, line, max).await {
                    break;
                }
                // Calls decided at once wait for their commit only while the client has
                // already sent more: the next complete line is in the buffer. Then the
                // batch is committed in one transaction and forwarded, in order.
                let more = reader.buffer().contains(&b'\n');
                if (!more || batch.full()) && !commit_batch(&io, &mut batch).await {
                    break;
                }
            }
            // INVARIANT: nothing decided is left uncommitted: a batch still open (the
            // client went away) is committed (its record kept) and forwarded.
            let io = Io {
                gate: &gate,
                session: &session,
                to_client: &to_client,
                to_server: &to_server,
            };
            let _ = commit_batch(&io, &mut batch).await;
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

/// What a client-side step writes to.
struct Io<'a> {
    gate: &'a Arc<Gate>,
    session: &'a Shared,
    to_client: &'a mpsc::Sender<Out>,
    to_server: &'a mpsc::Sender<Out>,
}

/// Most calls decided at once that wait for one commit.
const MAX_BATCH: usize = 256;

/// Calls decided at once whose records are not committed yet, in arrival order.
///
/// INVARIANT: nothing from the client that arrived after a call of the batch reaches
/// the server before it: any other step commits the batch first.
#[derive(Default)]
struct Batch {
    items: Vec<(Pending, conductor_gate::Uncommitted)>,
}

impl Batch {
    fn full(&self) -> bool {
        self.items.len() >= MAX_BATCH
    }
}

/// Commit the batch's records in ONE transaction, then send each call on (or its
/// refusal back), in order. A failed commit refuses every call of the batch.
async fn commit_batch(io: &Io<'_>, batch: &mut Batch) -> bool {
    if batch.items.is_empty() {
        return true;
    }
    let items = std::mem::take(&mut batch.items);
    let (pendings, decided): (Vec<Pending>, Vec<_>) = items.into_iter().unzip();
    let service = io.gate.service();
    // On this thread when that costs no wait; a commit that would wait (for the disk,
    // or for another process's write lock) goes through the store's writer thread, so
    // that no runtime thread waits for it.
    let verdicts = service.commit_fast(decided).await;
    for (pending, verdict) in pendings.into_iter().zip(verdicts) {
        if !on_verdict(io, pending, verdict).await {
            return false;
        }
    }
    true
}

/// Act on the verdict of a call that holds no place in the queue to the server: send
/// it on (or its refusal back), or, held for a person, wait for its release aside.
async fn on_verdict(io: &Io<'_>, pending: Pending, verdict: Verdict) -> bool {
    if let Some(held) = verdict.held.clone() {
        tokio::spawn(on_held(
            Arc::clone(io.gate),
            Arc::clone(io.session),
            pending,
            held,
            io.to_client.clone(),
            io.to_server.clone(),
        ));
        return true;
    }
    let d = lock(io.session).decided(pending, Some(&verdict));
    send_decided(d, io.to_client, io.to_server).await
}

/// A call held for a person: the relay keeps going, the person at the client is asked
/// where the policy lets it, and the call goes (or is refused) when it is released.
async fn on_held(
    gate: Arc<Gate>,
    session: Shared,
    pending: Pending,
    held: conductor_gate::Held,
    to_client: mpsc::Sender<Out>,
    to_server: mpsc::Sender<Out>,
) {
    // Where the policy lets it, the person at the client is asked.
    let allowed = gate.service().asks_in_client();
    let ask = lock(&session).ask_mode(&pending, allowed);
    if ask == Ask::InputRequired {
        match gate.service().input_required(&held) {
            Ok(result) => {
                let d = lock(&session).answer_with(pending, result);
                if let Some(line) = d.to_client {
                    let _ = to_client.send(Out::Ready(line)).await;
                }
                return;
            }
            Err(e) => crate::warn(&format!(
                "cannot sign a requestState; the call waits for another approver: {e}"
            )),
        }
    }
    if ask == Ask::Elicit {
        let form = gate.service().approval_form(&held);
        let line = lock(&session).ask(&held, form);
        if let Some(line) = line {
            let _ = to_client.send(Out::Ready(line)).await;
        }
    }
    let released = {
        let gate = Arc::clone(&gate);
        let held = held.clone();
        tokio::spawn(async move { gate.service().release(&held).await })
    };
    let decided = match released.await {
        Ok(v) => lock(&session).decided(pending, Some(&v)),
        Err(_) => lock(&session).failed(pending),
    };
    let cancel = lock(&session).forget_ask(&held);
    if let Some(line) = cancel {
        let _ = to_client.send(Out::Ready(line)).await;
    }
    if let Some(line) = decided.to_server {
        let _ = to_server.send(Out::Ready(line)).await;
    }
    if let Some(line) = decided.to_client {
        let _ = to_client.send(Out::Ready(line)).await;
    }
}

/// Handle one line from the client. Returns false when the relay must stop.
async fn relay_from_client(io: &Io<'_>, batch: &mut Batch, line: Line, max: usize) -> bool {
    let (gate, session, to_client, to_server) = (io.gate, io.session, io.to_client, io.to_server);
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
    let step = lock(session).on_client(bytes);
    // INVARIANT (order): only a call decided at once joins the open batch; every other
    // step commits and sends the batch first.
    if !matches!(step, ClientStep::Decide(_) | ClientStep::Nothing)
        && !commit_batch(io, batch).await
    {
        return false;
    }
    match step {
        ClientStep::Nothing => true,
        ClientStep::Forward(b) => to_server.send(Out::Ready(b)).await.is_ok(),
        ClientStep::Answer(b) => to_client.send(Out::Ready(b)).await.is_ok(),
        ClientStep::RefuseNotification { method, params } => {
            let gate = Arc::clone(gate);
            tokio::task::spawn_blocking(move || gate.refuse_notification(&method, params.as_ref()))
                .await
                .is_ok()
        }
        ClientStep::Answered { held, result } => {
            // The person's answer at the client decides the held call through the
            // approvals store; the held call's waiter wakes as for any approver.
            let gate = Arc::clone(gate);
            tokio::task::spawn_blocking(move || match result {
                Some(r) => {
                    let answer = conductor_gate::ClientAnswer::from_elicit_result(&r);
                    if let Err(e) = gate.service().answer_in_client(&held, &answer) {
                        crate::warn(&format!(
                            "cannot record the answer given in the client: {e}"
                        ));
                    }
                }
                None => crate::warn(
                    "the client could not ask its user; the call stays held for another approver",
                ),
            });
            true
        }
        ClientStep::Decide(mut pending) => {
            // A method the gate does not know passes only when the policy says so —
            // and, like protocol metadata, only with nothing found in it.
            if pending.mode == Mode::Always && gate.passes(&pending.method) {
                pending.mode = Mode::IfFindings;
            }
            // Protocol metadata with nothing in it passes at once, in order.
            if pending.mode == Mode::IfFindings && !gate.service().has_findings(&pending.params) {
                if !commit_batch(io, batch).await {
                    return false;
                }
                let d = lock(session).decided(pending, None);
                return send_decided(d, to_client, to_server).await;
            }
            let call = match &pending.mode {
                Mode::Reply { method } => gate.reply_call(method, &pending.params),
                _ => gate.call_for(&pending.method, Some(&pending.params)),
            };
            let answered = pending.answered.take();
            // Decided at once when nothing has to be waited for (no name to look up, no
            // answer to verify); it joins the batch that commits together.
            let call = match answered {
                Some(a) => Err((call, Some(a))),
                None => {
                    let service = gate.service();
                    let subject = gate.subject();
                    // INVARIANT: a decision that failed (panicked) is a refusal.
                    let now = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        service.decide_now(subject, call)
                    }));
                    match now {
                        Ok(Ok(decided)) => {
                            batch.items.push((pending, decided));
                            return true;
                        }
                        Ok(Err(call)) => Err((*call, None)),
                        Err(_) => Ok(()),
                    }
                }
            };
            if !commit_batch(io, batch).await {
                return false;
            }
            let (call, answered) = match call {
                Err(c) => c,
                Ok(()) => {
                    let d = lock(session).failed(pending);
                    return send_decided(d, to_client, to_server).await;
                }
            };
            // INVARIANT: the message holds its place in the queue to the server until it
            // is decided and its record committed; a refusal leaves the place empty.
            let (tx, rx) = oneshot::channel();
            if to_server.send(Out::Later(rx)).await.is_err() {
                return false;
            }
            let gate = Arc::clone(gate);
            let session = Arc::clone(session);
            let to_client = to_client.clone();
            let to_server = to_server.clone();
            tokio::spawn(async move {
                let work = {
                    let gate = Arc::clone(&gate);
                    tokio::spawn(async move {
                        let subject = gate.subject().clone();
                        match answered {
                            Some(a) => gate.service().decide_answered(&subject, call, a).await,
                            None => gate.service().decide(&subject, call).await,
                        }
                    })
                };
                // INVARIANT: a decision that failed (panicked) is a refusal.
                let decided = match work.await {
                    Ok(v) => match v.held.clone() {
                        // Held for a person: the place in the queue is given up (the
                        // relay keeps going), and the call goes when it is released.
                        Some(held) => {
                            let _ = tx.send(None);
                            on_held(gate, session, pending, held, to_client, to_server).await;
                            return;
                        }
                        None => lock(&session).decided(pending, Some(&v)),
                    },
                    Err(_) => lock(&session).failed(pending),
                };
                let _ = tx.send(decided.to_server);
                if let Some(line) = decided.to_client {
                    let _ = to_client.send(Out::Ready(line)).await;
                }
            });
            true
        }
    }
}

async fn send_decided(
    d: Decided,
    to_client: &mpsc::Sender<Out>,
    to_server: &mpsc::Sender<Out>,
) -> bool {
    if let Some(b) = d.to_server
        && to_server.send(Out::Ready(b)).await.is_err()
    {
        return false;
    }
    if let Some(b) = d.to_client {
        return to_client.send(Out::Ready(b)).await.is_ok();
    }
    true
}

/// Handle one line from the server. Returns false when the relay must stop.
async fn relay_from_server(
    gate: &Arc<Gate>,
    session: &Shared,
    to_client: &mpsc::Sender<Out>,
    line: Line,
) -> bool {
    let step = match line {
        Line::Eof => return false,
        Line::TooLong { len, head } => lock(session).on_server_too_long(len, &head),
        Line::Complete(b) => lock(session).on_server(b),
    };
    match step {
        ServerStep::Nothing => true,
        ServerStep::Answer(b) => to_client.send(Out::Ready(b)).await.is_ok(),
        ServerStep::Inspect {
            kind,
            value,
            bytes,
            answers,
        } => {
            // The message reaches the client only after its labels are recorded, so no
            // later call can be decided without them.
            // (A prompt's embedded resources are decided on a blocking thread.)
            if kind == Kind::Labelled && bytes.len() <= INLINE_SCAN_BYTES {
                // INVARIANT: bounded work (scanning a few KiB takes microseconds; the
                // store is written only when something was found).
                let out = inspect(gate, session, kind, value, bytes, answers.as_ref());
                return match out {
                    Some(b) => to_client.send(Out::Ready(b)).await.is_ok(),
                    None => true,
                };
            }
            let (tx, rx) = oneshot::channel();
            if to_client.send(Out::Later(rx)).await.is_err() {
                return false;
            }
            let gate = Arc::clone(gate);
            let session = Arc::clone(session);
            tokio::task::spawn_blocking(move || {
                let out = inspect(&gate, &session, kind, value, bytes, answers.as_ref());
                let _ = tx.send(out);
            });
            true
        }
    }
}

/// Pin, filter and label one server message; the line to deliver (the original bytes
/// unless the value was changed), or the error that replaces a withheld answer.
fn inspect(
    gate: &Gate,
    session: &Shared,
    kind: Kind,
    mut value: Value,
    bytes: Vec<u8>,
    answers: Option<&Value>,
) -> Option<Vec<u8>> {
    let changed = kind == Kind::ToolsList
        && value
            .get_mut("result")
            .is_some_and(|r| gate.process_tools_list(r));
    if kind == Kind::Prompt {
        // INVARIANT: a resource a prompt embeds is decided like a `resources/read` of
        // its URI; one refusal withholds the whole answer.
        for uri in crate::gate::embedded_resource_uris(&value) {
            let params = serde_json::json!({ "uri": uri });
            let v = gate.decide_resource("resources/read", Some(&params));
            if !v.forward {
                return lock(session).refused_answer(answers, &v);
            }
        }
    }
    let labelled = match answer_body(&value) {
        Some(body) => gate.label(body).map(|_| ()),
        None => Ok(()),
    };
    if let Err(e) = labelled {
        crate::warn(&format!(
            "cannot record the labels of a message from the mcp server; it was withheld: {e}"
        ));
        return lock(session).withheld(answers);
    }
    if changed {
        serde_json::to_vec(&value).ok()
    } else {
        Some(bytes)
    }
}
