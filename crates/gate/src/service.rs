//! [`Service`]: the sequence every way into Conductor runs around the core —
//! build the request, resolve, decide, record, and afterwards label what came back.
//!
//! INVARIANT: a [`Verdict`] forwards only an `allow` whose audit record is committed.
//! Every other path — a failed store, a failed session-state read, a problem the
//! transport found in the message — is a refusal with a reason.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use conductor_audit::approvals::DEFAULT_APPROVAL_TTL;
use conductor_audit::{
    ApprovalStore, AuditStore, Durability, GrantQuery, NewApproval, NewRecord, Outcome, Receipt,
    Ticket, call_digest,
};
use conductor_core::{Check, Decision, Effect, Reason, Request, World};
use conductor_net::{ResolveError, Resolver};
use conductor_policy::Policy;
use conductor_scan::FingerprintKey;
use conductor_types::{JsonPath, RuleId};
use serde_json::{Value, json};

use crate::resolver::{Answers, GateResolver};
use crate::sessions::{DEFAULT_LABEL_TTL, PinOutcome, SessionStore, StoreError, TaintKey};

mod ask;
mod egress;
pub use ask::{
    APPROVAL_INPUT_KEY, Answered, ClientAnswer, REQUEST_STATE_PREFIX, StateError, is_our_state,
};
pub use egress::{CheckedConnection, Connection, connection_problem};

/// How arguments are stored in audit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArgumentsMode {
    /// Every finding's span replaced by `[REDACTED:<label>]` (the default).
    #[default]
    Redacted,
    /// Not stored.
    None,
    /// Stored as received (secrets included: only for stores that are protected).
    Full,
}

/// How the service runs.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// How call arguments are kept in audit records.
    pub arguments: ArgumentsMode,
    /// How long a label received by an agent restricts its later calls.
    pub label_ttl: Duration,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            arguments: ArgumentsMode::Redacted,
            label_ttl: DEFAULT_LABEL_TTL,
        }
    }
}

/// Who a call is made for, and in which session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The (authenticated) agent.
    pub agent: String,
    /// The workflow the call belongs to, if any.
    pub workflow: Option<String>,
    /// The session id recorded with every decision.
    pub session: String,
    /// The upstream server id, when the call goes to one.
    pub server: Option<String>,
    /// How the agent proved who it is, recorded with every decision (never the
    /// credential); `None` where the transport did not authenticate it.
    pub auth: Option<serde_json::Value>,
}

impl Subject {
    /// Whose labels this subject's calls carry.
    pub fn taint_key(&self) -> TaintKey {
        TaintKey {
            agent: self.agent.clone(),
            workflow: self.workflow.clone(),
        }
    }
}

/// One call to decide, as a transport built it.
#[derive(Debug, Clone)]
pub struct Call {
    /// What is recorded as the audit event: the protocol method (`tools/call`,
    /// `prompts/get`, …) or the way in (`check`, `hook`).
    pub event: String,
    /// The qualified tool name `<server>.<tool>`.
    pub tool: String,
    /// The arguments (a JSON object).
    pub arguments: Value,
    /// Extra JSON pointers whose values are destinations (learned from schemas).
    pub pointers: Vec<JsonPath>,
    /// Problems the transport found in the message itself; each one denies.
    pub problems: Vec<Reason>,
    /// Everything else the server receives with the call (protocol metadata such as
    /// `_meta`, the tool name, extra members): checked for data and destinations.
    pub envelope: Option<Value>,
    /// The call names nothing the policy can address (a protocol method such as
    /// `logging/setLevel`, or a reply to a server's request): only the destination,
    /// data and flow checks apply.
    pub data_only: bool,
}

impl Call {
    /// A call to `tool` with `arguments`, recorded as `event`.
    pub fn new(event: &str, tool: &str, arguments: Value) -> Call {
        Call {
            event: event.to_string(),
            tool: tool.to_string(),
            arguments,
            pointers: Vec::new(),
            problems: Vec::new(),
            envelope: None,
            data_only: false,
        }
    }
}

/// The outcome of a decided call.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Forward the call: the decision is `allow` and its record is committed.
    pub forward: bool,
    /// The decision, with every reason.
    pub decision: Decision,
    /// The sequence number of the decision's audit record, once committed.
    pub record: Option<u64>,
    /// The call is held for a person's approval: the transport gives up its place in
    /// the queue, keeps relaying, and awaits [`Service::release`] for the final verdict.
    pub held: Option<Held>,
}

/// A decided call whose record is not committed yet (see [`Service::decide_now`]):
/// only [`Service::commit_now`] or [`Service::commit`] turn it into a [`Verdict`].
///
/// INVARIANT: nothing here says "forward"; a verdict that forwards exists only once
/// the record is committed.
#[derive(Debug)]
pub struct Uncommitted {
    decision: Decision,
    record: NewRecord,
    tool: String,
    held: Option<HeldParts>,
}

impl Uncommitted {
    /// The decision (not yet recorded).
    pub fn decision(&self) -> &Decision {
        &self.decision
    }
}

/// What a held call keeps until its verdict (see [`Held`]).
struct HeldParts {
    id: String,
    expires: i64,
    ticket: Ticket,
    subject: Subject,
    event: String,
    request: Request,
    policy: String,
}

impl std::fmt::Debug for HeldParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldParts")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

type Unrecorded = (Decision, String, Option<HeldParts>);

/// `tool` with what the policy's detectors find in it redacted.
fn redacted_name(policy: &Policy, key: &FingerprintKey, tool: &str) -> String {
    let v = Value::String(tool.to_string());
    let found = policy.data().scanner.scan(&v, key);
    if found.is_empty() {
        return tool.to_string();
    }
    match conductor_scan::redact(&v, &found) {
        Value::String(s) => s,
        _ => "[REDACTED]".to_string(),
    }
}

fn split(batch: Vec<Uncommitted>) -> (Vec<NewRecord>, Vec<Unrecorded>) {
    let mut records = Vec::with_capacity(batch.len());
    let mut rest = Vec::with_capacity(batch.len());
    for u in batch {
        records.push(u.record);
        rest.push((u.decision, u.tool, u.held));
    }
    (records, rest)
}

/// INVARIANT: each call gets the receipt of its own record, or the commit's error.
fn verdicts(
    rest: Vec<Unrecorded>,
    committed: Result<Vec<Receipt>, conductor_audit::AuditError>,
) -> Vec<Verdict> {
    let n = rest.len();
    let seqs: Result<Vec<u64>, String> = match committed {
        Ok(r) if r.len() == n => Ok(r.iter().map(|r| r.seq).collect()),
        Ok(r) => Err(format!(
            "the audit store returned {} receipts for {n} records",
            r.len()
        )),
        Err(e) => Err(e.to_string()),
    };
    rest.into_iter()
        .enumerate()
        .map(|(i, u)| {
            let seq = match &seqs {
                Ok(s) => s.get(i).copied().ok_or_else(|| "no receipt".to_string()),
                Err(e) => Err(e.clone()),
            };
            verdict_of(u, seq)
        })
        .collect()
}

/// INVARIANT: forward only an `allow` whose record is committed; a held call keeps
/// what [`Service::release`] needs.
fn verdict_of((decision, tool, held): Unrecorded, committed: Result<u64, String>) -> Verdict {
    let mut verdict = finish(decision, committed, &tool);
    if let Some(h) = held
        && verdict.decision.decision == Effect::Approve
    {
        verdict.held = Some(Held {
            inner: Arc::new(HeldInner {
                id: h.id,
                ticket: Mutex::new(Some(h.ticket)),
                subject: h.subject,
                event: h.event,
                request: h.request,
                decision: verdict.decision.clone(),
                policy: h.policy,
                expires: h.expires,
            }),
        });
    }
    verdict
}

/// A call held for approval (see [`Service::release`]).
#[derive(Clone)]
pub struct Held {
    inner: Arc<HeldInner>,
}

struct HeldInner {
    id: String,
    ticket: Mutex<Option<Ticket>>,
    subject: Subject,
    event: String,
    request: Request,
    decision: Decision,
    policy: String,
    /// When the pending approval expires (micros).
    expires: i64,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl Held {
    /// The pending approval's id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }
}

/// The gate service: shared by every session and transport of a process.
pub struct Service {
    policy: RwLock<Arc<Policy>>,
    resolver: GateResolver,
    key: Arc<FingerprintKey>,
    audit: Arc<AuditStore>,
    sessions: Arc<dyn SessionStore>,
    options: ServiceOptions,
    /// The tail of the text each session received last (see [`Service::label`]).
    windows: Mutex<std::collections::HashMap<String, String>>,
    /// Where calls marked `approve` are held; without it they are refused.
    approvals: RwLock<Option<Arc<dyn ApprovalStore>>>,
    /// `requestState` nonces already answered (nonce → expiry, micros).
    spent: Mutex<std::collections::HashMap<String, i64>>,
    /// Told about every new pending approval (after it is stored), e.g. a webhook.
    on_pending: RwLock<Option<PendingHook>>,
}

/// What [`Service::on_pending`] calls with each new pending approval. It runs on the
/// deciding task: it must hand the work off (spawn), never wait.
pub type PendingHook = Arc<dyn Fn(&conductor_audit::Approval) + Send + Sync>;

/// How much of a session's received text is kept to be scanned with the next result.
pub const LABEL_WINDOW_BYTES: usize = 4096;
/// How much of one message's text is scanned joined (its strings concatenated).
pub const JOINED_SCAN_BYTES: usize = 64 * 1024;
/// Sessions whose window is kept at once (beyond it, windows start over).
const MAX_WINDOWS: usize = 10_000;

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("policy", &self.policy().sha256())
            .field("resolver", &self.resolver)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// A service deciding under `policy`.
    pub fn new(
        policy: Policy,
        resolver: GateResolver,
        key: Arc<FingerprintKey>,
        audit: Arc<AuditStore>,
        sessions: Arc<dyn SessionStore>,
        options: ServiceOptions,
    ) -> Service {
        Service {
            policy: RwLock::new(Arc::new(policy)),
            resolver,
            key,
            audit,
            sessions,
            options,
            windows: Mutex::new(std::collections::HashMap::new()),
            approvals: RwLock::new(None),
            spent: Mutex::new(std::collections::HashMap::new()),
            on_pending: RwLock::new(None),
        }
    }

    /// Call `hook` with every new pending approval, once it is stored (and before the
    /// call waits). The hook must not block: the held call and the others wait for it.
    pub fn on_pending(&self, hook: PendingHook) {
        match self.on_pending.write() {
            Ok(mut h) => *h = Some(hook),
            Err(poisoned) => *poisoned.into_inner() = Some(hook),
        }
    }

    /// Hold calls the policy marks `approve` in `store` until a person decides
    /// (without a store they are refused with `requires approval`).
    pub fn set_approvals(&self, store: Arc<dyn ApprovalStore>) {
        match self.approvals.write() {
            Ok(mut a) => *a = Some(store),
            Err(poisoned) => *poisoned.into_inner() = Some(store),
        }
    }

    /// The approvals store, if calls are held.
    pub fn approvals(&self) -> Option<Arc<dyn ApprovalStore>> {
        match self.approvals.read() {
            Ok(a) => a.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Put a new policy in force; decisions already running finish under the old one.
    pub fn swap_policy(&self, policy: Policy) {
        let new = Arc::new(policy);
        match self.policy.write() {
            Ok(mut p) => *p = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    /// The audit store.
    pub fn audit(&self) -> &Arc<AuditStore> {
        &self.audit
    }

    /// The resolver.
    pub fn resolver(&self) -> &GateResolver {
        &self.resolver
    }

    /// The fingerprint key.
    pub fn fingerprint_key(&self) -> &Arc<FingerprintKey> {
        &self.key
    }

    /// How the service runs.
    pub fn options(&self) -> &ServiceOptions {
        &self.options
    }

    /// The subject's unexpired labels.
    pub fn labels(&self, subject: &Subject) -> Result<BTreeSet<String>, StoreError> {
        self.sessions
            .labels(&subject.taint_key(), conductor_audit::time::now_micros())
    }

    /// Decide a call and commit its record, without blocking the runtime on DNS.
    pub async fn decide(&self, subject: &Subject, call: Call) -> Verdict {
        self.decide_with_labels(subject, call, &[]).await
    }

    /// [`Service::decide`], with labels the caller says the session already holds
    /// (the AuthZEN `context.session_labels`): they are added to the agent's labels
    /// from the store, never in place of them.
    ///
    /// INVARIANT: a caller can only raise the labels a call is decided with.
    pub async fn decide_with_labels(
        &self,
        subject: &Subject,
        call: Call,
        labels: &[String],
    ) -> Verdict {
        self.decide_inner(subject, call, labels, None).await
    }

    /// [`Service::decide`] of a call retried with the person's answer to an
    /// `input_required` result (2026-07-28): the `requestState` is verified (see
    /// [`Answered`]) and, when the call still requires approval, the answer decides it.
    pub async fn decide_answered(
        &self,
        subject: &Subject,
        call: Call,
        answered: Answered,
    ) -> Verdict {
        self.decide_inner(subject, call, &[], Some(answered)).await
    }

    async fn decide_inner(
        &self,
        subject: &Subject,
        call: Call,
        labels: &[String],
        answered: Option<Answered>,
    ) -> Verdict {
        let (started, policy, request, problems) = self.begin(subject, &call, labels);
        // Resolve last: every check but DNS first; the names are looked up (all at
        // once, without blocking the runtime) only if nothing else denies.
        let staged = self.stage(&policy, &request, &call);
        let hosts = staged.hosts();
        let answers = if hosts.is_empty() {
            Answers::default()
        } else {
            self.resolver.resolve_all(&hosts).await
        };
        let decided = self.conclude(
            subject, &call, &policy, request, staged, &answers, problems, answered, started,
        );
        // Committed here when the store is idle (a sequential client: no hand-off to
        // the writer thread and back); otherwise the record goes to the store's writer,
        // which commits everything queued in one transaction while this task waits
        // without holding a thread.
        let Uncommitted {
            decision,
            record,
            tool,
            held,
        } = decided;
        let committed = match self.audit.try_append_here(&record) {
            Some(r) => r,
            None => self.audit.submit(record).await,
        }
        .map(|r| r.seq)
        .map_err(|e| e.to_string());
        verdict_of((decision, tool, held), committed)
    }

    /// Decide a call now, without waiting for anything: `Err` (the call handed back)
    /// when a name it names must be looked up first (not fixed, not cached); then
    /// [`Service::decide`] it. The decision is not recorded yet: commit it with
    /// [`Service::commit_now`] or [`Service::commit`] — several at once, in one
    /// transaction — before acting on it.
    ///
    /// A call held for approval is stored as pending here (the approvals store is
    /// written on the calling thread).
    pub fn decide_now(&self, subject: &Subject, call: Call) -> Result<Uncommitted, Box<Call>> {
        let (started, policy, request, problems) = self.begin(subject, &call, &[]);
        let staged = self.stage(&policy, &request, &call);
        let mut answers = Answers::default();
        for h in staged.hosts() {
            match self.resolver.known(&h) {
                Some(a) => answers.insert(h, a),
                None => {
                    drop(staged);
                    return Err(Box::new(call));
                }
            }
        }
        Ok(self.conclude(
            subject, &call, &policy, request, staged, &answers, problems, None, started,
        ))
    }

    /// The decision of a staged call once its names are answered, its approval
    /// asked for (or its answer applied), and its record built.
    #[allow(clippy::too_many_arguments)]
    fn conclude(
        &self,
        subject: &Subject,
        call: &Call,
        policy: &Arc<Policy>,
        request: Request,
        staged: Staged<'_>,
        answers: &Answers,
        problems: Vec<Reason>,
        answered: Option<Answered>,
        started: Instant,
    ) -> Uncommitted {
        let mut decision = staged.finish(answers);
        add_problems(&mut decision, problems);
        let held = match answered {
            // INVARIANT: a call that carries an answer is never held again: the answer
            // (verified) decides it, or it is refused.
            Some(a) => {
                self.apply_answer(subject, policy, &request, &mut decision, &a);
                None
            }
            None => self.hold_or_grant(subject, &call.event, policy, &request, &mut decision),
        };
        let record = self.record_of(subject, &call.event, policy, &request, &decision, started);
        let tool = request.tool.clone();
        let held = held.map(|(id, expires, ticket)| HeldParts {
            id,
            expires,
            ticket,
            subject: subject.clone(),
            event: call.event.clone(),
            request,
            policy: policy.sha256().to_string(),
        });
        Uncommitted {
            decision,
            record,
            tool,
            held,
        }
    }

    /// Commit the records of decided calls in ONE transaction, on the calling thread,
    /// and return their verdicts in the same order: every call forwards only if the
    /// transaction committed; a failed commit refuses them all (check `audit`).
    ///
    /// It blocks for the commit: microseconds with [`Durability::Normal`], a disk
    /// flush with `Fsync` (see [`Service::commits_fast`]).
    pub fn commit_now(&self, batch: Vec<Uncommitted>) -> Vec<Verdict> {
        let (records, rest) = split(batch);
        let committed = self.audit.append_many_here(&records);
        verdicts(rest, committed)
    }

    /// [`Service::commit_now`] through the store's writer thread, which commits
    /// everything queued (from every session) in one transaction; the task waits
    /// without holding a thread.
    pub async fn commit(&self, batch: Vec<Uncommitted>) -> Vec<Verdict> {
        let (records, rest) = split(batch);
        let committed = self.audit.submit_many(records).await;
        verdicts(rest, committed)
    }

    /// [`Service::commit_now`] when that costs no wait (the store does not wait for the
    /// disk and no other thread or process holds its lock), else [`Service::commit`]:
    /// for a transport on an async worker, which must not wait for another process's
    /// write (an approval from the command line) with every other task.
    pub async fn commit_fast(&self, batch: Vec<Uncommitted>) -> Vec<Verdict> {
        let (records, rest) = split(batch);
        let committed = match self.audit.try_append_many_here(&records) {
            Some(c) => c,
            None => self.audit.submit_many(records).await,
        };
        verdicts(rest, committed)
    }

    /// Whether a commit takes microseconds (the store does not wait for the disk), so
    /// that [`Service::commit_now`] may run on an async worker thread.
    pub fn commits_fast(&self) -> bool {
        self.audit.durability() == Durability::Normal
    }

    /// An `approve` decision: released at once by a standing grant (the decision
    /// becomes `allow`, naming the grant), or stored as a pending approval (the ticket
    /// to wait on is returned). A store that fails denies (check `approval`).
    ///
    /// INVARIANT: a grant releases only what it covers (digest, session, pattern);
    /// nothing is released without the store's word.
    fn hold_or_grant(
        &self,
        subject: &Subject,
        event: &str,
        policy: &Policy,
        request: &Request,
        decision: &mut Decision,
    ) -> Option<(String, i64, Ticket)> {
        if decision.decision != Effect::Approve {
            return None;
        }
        let store = self.approvals()?;
        let digest = call_digest(
            &request.agent,
            &request.tool,
            request.workflow.as_deref(),
            &request.arguments,
        );
        let query = GrantQuery {
            agent: &request.agent,
            tool: &request.tool,
            digest: &digest,
            session: request.session.as_deref(),
            arguments: &request.arguments,
        };
        match store.find_grant(&query) {
            Err(e) => {
                warn(&format!(
                    "cannot read the approval grants; the call is refused: {e}"
                ));
                deny(
                    decision,
                    Check::Approval,
                    &RuleId::approval("store"),
                    "the approvals store could not be read; the call was not held".into(),
                );
                return None;
            }
            Ok(Some(g)) => {
                decision.decision = Effect::Allow;
                decision.reasons.push(Reason {
                    check: Check::Approval,
                    rule: RuleId::approval("granted"),
                    message: format!(
                        "released by grant `{}` (scope {}) given by {}",
                        g.id,
                        g.scope,
                        backticked(&g.approver)
                    ),
                });
                return None;
            }
            Ok(None) => {}
        }
        // The `expires` of the approve rules that asked (the shortest wins), else
        // `sessions.approval_ttl`, else the default.
        let ttl = policy
            .approval_ttl_of(decision.reasons.iter().map(|r| &r.rule))
            .unwrap_or(DEFAULT_APPROVAL_TTL);
        let new = NewApproval {
            agent: request.agent.clone(),
            tool: request.tool.clone(),
            event: event.to_string(),
            action: conductor_core::action_of(policy, &request.tool).to_string(),
            session: request.session.clone(),
            workflow: request.workflow.clone(),
            server: subject.server.clone(),
            digest,
            policy: decision.policy.clone(),
            // INVARIANT: approvers see the arguments redacted, whatever the audit mode.
            arguments: conductor_scan::redact(&request.arguments, &decision.findings),
            reasons: serde_json::to_value(&decision.reasons).unwrap_or(Value::Null),
            ttl,
        };
        match store.create(new) {
            Err(e) => {
                warn(&format!(
                    "cannot hold the call for approval; it is refused: {e}"
                ));
                deny(
                    decision,
                    Check::Approval,
                    &RuleId::approval("store"),
                    "the call could not be held for approval (the approvals store failed)".into(),
                );
                None
            }
            Ok(a) => {
                let hook = match self.on_pending.read() {
                    Ok(h) => h.clone(),
                    Err(poisoned) => poisoned.into_inner().clone(),
                };
                if let Some(hook) = hook {
                    hook(&a);
                }
                decision.reasons.push(Reason {
                    check: Check::Approval,
                    rule: RuleId::approval("pending"),
                    message: format!(
                        "held for a person's approval as `{}` until {}",
                        a.id,
                        conductor_audit::time::format_micros(a.expires)
                    ),
                });
                let ticket = store.wait(&a.id);
                Some((a.id, a.expires, ticket))
            }
        }
    }

    /// Wait (without a thread or a loop of its own) for a person's decision on a held
    /// call, record it, and return the final verdict: forward only when a person
    /// approved, the policy is still the one that asked, and the record is committed.
    pub async fn release(&self, held: &Held) -> Verdict {
        let started = Instant::now();
        let h = &held.inner;
        let ticket = match h.ticket.lock() {
            Ok(mut t) => t.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let outcome = match ticket {
            Some(t) => t.await,
            None => Outcome::Failed("the held call was released already".into()),
        };
        let mut decision = h.decision.clone();
        decision
            .reasons
            .retain(|r| r.rule != RuleId::approval("pending"));
        let policy = self.policy();
        match outcome {
            Outcome::Approved {
                approver, scope, ..
            } => {
                if policy.sha256() == h.policy {
                    decision.decision = Effect::Allow;
                    decision.reasons.push(Reason {
                        check: Check::Approval,
                        rule: RuleId::approval("granted"),
                        message: format!(
                            "approved by {} (scope {scope}), approval `{}`",
                            backticked(&approver),
                            h.id
                        ),
                    });
                } else {
                    // INVARIANT: an approval given under one policy does not release a
                    // call under another (it could deny it now).
                    deny(
                        &mut decision,
                        Check::Approval,
                        &RuleId::approval("stale"),
                        "the approval was given after the policy changed; the call is refused, ask again"
                            .into(),
                    );
                }
            }
            Outcome::Denied { approver, reason } => deny(
                &mut decision,
                Check::Approval,
                &RuleId::approval("denied"),
                format!(
                    "denied by {}: {}",
                    backticked(&approver),
                    conductor_types::display::shown(&reason, 200)
                ),
            ),
            Outcome::Expired => deny(
                &mut decision,
                Check::Approval,
                &RuleId::approval("expired"),
                "nobody approved the call in time (the approval expired); it was refused".into(),
            ),
            Outcome::Failed(e) => {
                warn(&format!(
                    "the approvals store failed while a call was held: {e}"
                ));
                deny(
                    &mut decision,
                    Check::Approval,
                    &RuleId::approval("store"),
                    "the approvals store failed while the call was held; it was refused".into(),
                );
            }
        }
        let record = self.record_of(
            &h.subject, &h.event, &policy, &h.request, &decision, started,
        );
        let committed = self
            .audit
            .submit(record)
            .await
            .map(|r| r.seq)
            .map_err(|e| e.to_string());
        finish(decision, committed, &h.request.tool)
    }

    /// [`Service::decide`] for callers outside an async runtime (`check`, hooks, the
    /// library): blocks on DNS and on the audit commit.
    pub fn decide_blocking(&self, subject: &Subject, call: Call) -> Verdict {
        let (started, policy, request, problems) = self.begin(subject, &call, &[]);
        let staged = self.stage(&policy, &request, &call);
        let mut answers = Answers::default();
        for h in staged.hosts() {
            let a = self.resolver.resolve(&h);
            answers.insert(h, a);
        }
        let mut decision = staged.finish(&answers);
        add_problems(&mut decision, problems);
        let record = self.record_of(subject, &call.event, &policy, &request, &decision, started);
        // Committed on the calling thread (the caller waits for the commit anyway): the
        // hand-off to the writer thread and back is two thread wake-ups per call, most of
        // a short-lived hook process's commit time on a loaded machine.
        let committed = self
            .audit
            .append_many_here(std::slice::from_ref(&record))
            .map_err(|e| e.to_string())
            .and_then(|r| {
                r.first()
                    .map(|r| r.seq)
                    .ok_or_else(|| "the audit store returned no receipt".to_string())
            });
        finish(decision, committed, &request.tool)
    }

    /// What every decision starts from: its clock, the policy in force, the core's
    /// request, and the problems found so far (the transport's and the session state's).
    fn begin(
        &self,
        subject: &Subject,
        call: &Call,
        labels: &[String],
    ) -> (Instant, Arc<Policy>, Request, Vec<Reason>) {
        let started = Instant::now();
        let policy = self.policy();
        let (request, mut problems) = self.request(subject, call, labels);
        problems.extend(call.problems.iter().cloned());
        (started, policy, request, problems)
    }

    /// Decide without recording (for `conductor check` and `policy test`, which
    /// print decisions instead of acting on them).
    pub fn evaluate(&self, request: &Request, resolver: &dyn Resolver) -> Decision {
        let policy = self.policy();
        self.decide_with(&policy, request, &[], resolver)
    }

    /// Every check of a call but DNS: its arguments, and its envelope (checked for
    /// data and destinations).
    fn stage<'p>(&self, policy: &'p Policy, request: &Request, call: &Call) -> Staged<'p> {
        let main = if call.data_only {
            conductor_core::prepare_data_only(policy, request, &call.pointers, &self.key)
        } else {
            conductor_core::prepare(policy, request, &call.pointers, &self.key)
        };
        let envelope = call.envelope.as_ref().map(|e| {
            let mut outer = request.clone();
            outer.arguments = e.clone();
            conductor_core::prepare_data_only(policy, &outer, &[], &self.key)
        });
        Staged {
            main,
            envelope,
            envelope_args: call.envelope.clone(),
        }
    }

    /// Whether any detector of the policy finds something in `value` (a cheap
    /// pre-check: protocol metadata with nothing in it needs no decision).
    pub fn has_findings(&self, value: &Value) -> bool {
        !self
            .policy()
            .data()
            .scanner
            .scan(value, &self.key)
            .is_empty()
    }

    fn decide_with(
        &self,
        policy: &Policy,
        request: &Request,
        pointers: &[JsonPath],
        resolver: &dyn Resolver,
    ) -> Decision {
        let world = World {
            resolver,
            fingerprint_key: &self.key,
        };
        conductor_core::decide_with_pointers(policy, request, pointers, &world)
    }

    /// The core's request for a call; a session state that cannot be read is a
    /// problem (deny), never "no labels".
    fn request(&self, subject: &Subject, call: &Call, extra: &[String]) -> (Request, Vec<Reason>) {
        let mut problems = Vec::new();
        let labels = match self.labels(subject) {
            Ok(mut l) => {
                l.extend(extra.iter().cloned());
                l.into_iter().collect()
            }
            Err(e) => {
                warn(&format!(
                    "cannot read the session labels; the call is refused: {e}"
                ));
                problems.push(Reason {
                    check: Check::Flow,
                    rule: RuleId::sessions(),
                    message: "the labels of data this agent has received could not be read".into(),
                });
                Vec::new()
            }
        };
        let request = Request {
            agent: subject.agent.clone(),
            tool: call.tool.clone(),
            arguments: call.arguments.clone(),
            workflow: subject.workflow.clone(),
            session: Some(subject.session.clone()),
            session_labels: labels,
        };
        (request, problems)
    }

    fn record_of(
        &self,
        subject: &Subject,
        event: &str,
        policy: &Policy,
        request: &Request,
        decision: &Decision,
        started: Instant,
    ) -> NewRecord {
        let arguments = match self.options.arguments {
            ArgumentsMode::None => None,
            ArgumentsMode::Full => Some(request.arguments.clone()),
            ArgumentsMode::Redacted => Some(conductor_scan::redact(
                &request.arguments,
                &decision.findings,
            )),
        };
        let digest = serde_json::to_value(request)
            .map(|v| conductor_audit::request_digest(&v))
            .unwrap_or_default();
        NewRecord {
            event: event.to_string(),
            agent: request.agent.clone(),
            session: request.session.clone(),
            workflow: request.workflow.clone(),
            server: subject.server.clone(),
            tool: self.recorded_tool(policy, &request.tool, decision),
            action: conductor_core::action_of(policy, &request.tool).to_string(),
            decision: effect_name(decision.decision).to_string(),
            reasons: serde_json::to_value(&decision.reasons).unwrap_or(Value::Null),
            destinations: serde_json::to_value(&decision.destinations).unwrap_or(Value::Null),
            findings: serde_json::to_value(&decision.findings).unwrap_or(Value::Null),
            policy: decision.policy.clone(),
            request_digest: digest,
            arguments,
            latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            auth: subject.auth.clone(),
        }
    }

    /// The tool name as recorded: redacted where a detector finds something in it
    /// (the name is the client's text; a secret placed there must not reach the
    /// audit trail). Only scanned when the decision found something at all.
    fn recorded_tool(&self, policy: &Policy, tool: &str, decision: &Decision) -> String {
        if decision.findings.is_empty() {
            return tool.to_string();
        }
        redacted_name(policy, &self.key, tool)
    }

    /// A client's tool name as it may be shown outside the decision (a metric's label,
    /// a log line): redacted where a detector finds something in it. Scans the name.
    pub fn shown_tool_name(&self, tool: &str) -> String {
        redacted_name(&self.policy(), &self.key, tool)
    }

    /// Scan what a server sent and raise the subject's labels with what was found.
    /// Returns the labels found. A store that cannot record them is an error: the
    /// transport must not deliver the message (the taint would be lost).
    pub fn label(&self, subject: &Subject, value: &Value) -> Result<Vec<String>, StoreError> {
        let labels = self.scan_labels(subject, value);
        if !labels.is_empty() {
            self.raise_labels(subject, &labels)?;
        }
        Ok(labels)
    }

    /// The scanning half of [`Service::label`]: the labels what a server sent carries
    /// (its strings, and joined with the tail of what the session received before),
    /// nothing recorded yet. CPU only — no store, no DNS: a transport may run it on
    /// its async task for a small message and go to a blocking thread only for
    /// [`Service::raise_labels`], when something was found.
    pub fn scan_labels(&self, subject: &Subject, value: &Value) -> Vec<String> {
        let policy = self.policy();
        let world = World {
            resolver: &NoLookup,
            fingerprint_key: &self.key,
        };
        let mut labels = conductor_core::label_result(&policy, value, &world);
        // A credential split across two content blocks, or read in chunks across
        // results (`max_length`/`start_index`), is found in the joined text: the
        // message's strings concatenated, after the tail of what the session received
        // before.
        let mut joined = String::new();
        join_strings(value, &mut joined, JOINED_SCAN_BYTES);
        if !joined.is_empty() {
            let prev = self
                .windows
                .lock()
                .ok()
                .and_then(|w| w.get(&subject.session).cloned())
                .unwrap_or_default();
            let mut across = prev;
            across.push_str(&joined);
            let across = Value::String(across);
            for l in conductor_core::label_result(&policy, &across, &world) {
                if !labels.contains(&l) {
                    labels.push(l);
                }
            }
            // The window keeps the joined text's tail, cut in place (no copy).
            let Value::String(mut tail) = across else {
                return labels;
            };
            let cut = tail.len() - tail_of(&tail, LABEL_WINDOW_BYTES).len();
            tail.drain(..cut);
            if let Ok(mut w) = self.windows.lock() {
                if w.len() >= MAX_WINDOWS && !w.contains_key(&subject.session) {
                    w.clear();
                }
                w.insert(subject.session.clone(), tail);
            }
        }
        labels
    }

    /// The recording half of [`Service::label`]: raise the subject's labels (the
    /// session store; may block). An error means the message must not be delivered.
    pub fn raise_labels(&self, subject: &Subject, labels: &[String]) -> Result<(), StoreError> {
        // The policy's `sessions.label_ttl`, else the service's default.
        let ttl = self.policy().label_ttl().unwrap_or(self.options.label_ttl);
        let ttl = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
        let expires = conductor_audit::time::now_micros().saturating_add(ttl);
        // INVARIANT: labels are only ever raised.
        self.sessions.raise(&subject.taint_key(), labels, expires)
    }

    /// Pin a tool descriptor digest in the subject's session; a changed descriptor is
    /// recorded (event `pin-change`). A store failure reads as a change (refusal).
    pub fn pin(&self, subject: &Subject, name: &str, tool: &str, digest: &str) -> PinOutcome {
        let scope = format!(
            "{}:{}",
            subject.session,
            subject.server.as_deref().unwrap_or("")
        );
        let outcome = match self.sessions.pin(&scope, name, digest) {
            Ok(o) => o,
            Err(e) => {
                warn(&format!("cannot pin the descriptor of `{tool}`: {e}"));
                PinOutcome::Changed {
                    first: "(unknown: the session store failed)".into(),
                }
            }
        };
        if let PinOutcome::Changed { first } = &outcome {
            self.record_pin_change(subject, name, tool, first, digest);
        }
        outcome
    }

    fn record_pin_change(&self, subject: &Subject, name: &str, tool: &str, old: &str, new: &str) {
        let policy = self.policy();
        let message = format!(
            "the descriptor of `{name}` changed during the session (first seen {old}, now {new}); calls to it are refused"
        );
        warn(&message);
        let record = NewRecord {
            event: "pin-change".into(),
            agent: subject.agent.clone(),
            session: Some(subject.session.clone()),
            workflow: subject.workflow.clone(),
            server: subject.server.clone(),
            tool: tool.to_string(),
            action: conductor_core::action_of(&policy, tool).to_string(),
            decision: "deny".into(),
            reasons: json!([{"check": "pin", "rule": RuleId::pin(tool), "message": message}]),
            destinations: json!([]),
            findings: json!([]),
            policy: policy.sha256().to_string(),
            request_digest: new.to_string(),
            arguments: None,
            latency_us: 0,
            auth: subject.auth.clone(),
        };
        if let Err(e) = self.audit.append(record) {
            // The refusal stands in memory either way.
            warn(&format!("cannot record the pin change of `{tool}`: {e}"));
        }
    }

    /// Record a call that was refused before it could be decided (e.g. a gated method
    /// sent as a notification): decided as usual, with `problem` added, and recorded.
    pub fn refuse_blocking(&self, subject: &Subject, mut call: Call, problem: Reason) -> Verdict {
        call.problems.push(problem);
        self.decide_blocking(subject, call)
    }
}

/// A call decided up to DNS: its arguments and its envelope.
struct Staged<'p> {
    main: conductor_core::Prepared<'p>,
    envelope: Option<conductor_core::Prepared<'p>>,
    /// What the envelope part was decided on (its matched values are scrubbed from
    /// the merged decision).
    envelope_args: Option<Value>,
}

impl Staged<'_> {
    /// The names to resolve: none when either part is denied already.
    ///
    /// INVARIANT (resolve last): a call that is denied before DNS resolves nothing,
    /// not even the names of its other part.
    fn hosts(&self) -> Vec<String> {
        let denied = |p: &conductor_core::Prepared<'_>| {
            p.decision().is_some_and(|d| d.decision == Effect::Deny)
        };
        if denied(&self.main) || self.envelope.as_ref().is_some_and(denied) {
            return Vec::new();
        }
        let mut hosts: Vec<String> = self.main.hosts_to_resolve().to_vec();
        if let Some(e) = &self.envelope {
            for h in e.hosts_to_resolve() {
                if !hosts.contains(h) {
                    hosts.push(h.clone());
                }
            }
        }
        hosts
    }

    fn finish(self, answers: &Answers) -> Decision {
        // When the call was denied before DNS nothing was resolved (resolve last): the
        // envelope's names are then unanswered, not unresolvable.
        let unresolved = self
            .main
            .decision()
            .is_some_and(|d| d.decision == Effect::Deny);
        let mut decision = self.main.finish(answers);
        if let Some(e) = self.envelope {
            let e = e.finish(answers);
            // INVARIANT: a value found in the envelope (a secret in the tool name, in
            // `_meta`) is scrubbed from the arguments part's messages too, which quote
            // the tool name (issue 10, class 6).
            if let Some(args) = &self.envelope_args
                && !e.findings.is_empty()
            {
                conductor_core::scrub_decision(&mut decision, args, &e.findings);
            }
            for r in e.reasons {
                if unresolved && r.rule == "destinations.unresolvable" {
                    continue;
                }
                if matches!(r.check, Check::Data | Check::Destination | Check::Input)
                    && !decision.reasons.contains(&r)
                {
                    decision.reasons.push(r);
                    decision.decision = Effect::Deny;
                }
            }
            // The tool's declared destinations are the envelope's too: listed once.
            for d in e.destinations {
                if !decision.destinations.contains(&d) {
                    decision.destinations.push(d);
                }
            }
            for f in e.findings {
                if !decision.findings.contains(&f) {
                    decision.findings.push(f);
                }
            }
        }
        decision
    }
}

/// The text strings of `value` (see below), concatenated, up to `max` bytes.
fn join_strings(value: &Value, out: &mut String, max: usize) {
    if out.len() >= max {
        return;
    }
    match value {
        Value::String(s) => {
            let room = max - out.len();
            out.push_str(head_of(s, room));
        }
        Value::Array(items) => items.iter().for_each(|v| join_strings(v, out, max)),
        Value::Object(m) => {
            // The text a content block carries, without the protocol's own members
            // between blocks (they would split what they sit between).
            for (k, v) in m {
                if !matches!(
                    k.as_str(),
                    "type" | "mimeType" | "uri" | "name" | "role" | "annotations" | "_meta"
                ) {
                    join_strings(v, out, max);
                }
            }
        }
        _ => {}
    }
}

/// At most `n` bytes from the start of `s`, on a character boundary.
fn head_of(s: &str, n: usize) -> &str {
    let mut end = n.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// At most `n` bytes from the end of `s`, on a character boundary.
fn tail_of(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s.get(start..).unwrap_or("")
}

fn add_problems(decision: &mut Decision, problems: Vec<Reason>) {
    if !problems.is_empty() {
        decision.decision = Effect::Deny;
        decision.reasons.extend(problems);
    }
}

/// INVARIANT: forward only an `allow` whose record is committed.
fn finish(mut decision: Decision, committed: Result<u64, String>, tool: &str) -> Verdict {
    match committed {
        Ok(seq) => Verdict {
            forward: decision.decision == Effect::Allow,
            decision,
            record: Some(seq),
            held: None,
        },
        Err(e) => {
            warn(&format!(
                "cannot record the decision on `{}`; the call is refused: {e}",
                conductor_types::display::shown(tool, 120)
            ));
            deny(
                &mut decision,
                Check::Audit,
                &RuleId::audit(),
                "the decision could not be recorded in the audit store".into(),
            );
            Verdict {
                forward: false,
                decision,
                record: None,
                held: None,
            }
        }
    }
}

/// A name people read: in backticks, sanitized and cut.
fn backticked(s: &str) -> String {
    format!("`{}`", conductor_types::display::shown(s, 120))
}

/// `allow`, `approve` or `deny`.
pub fn effect_name(e: Effect) -> &'static str {
    match e {
        Effect::Allow => "allow",
        Effect::Approve => "approve",
        Effect::Deny => "deny",
    }
}

/// Add a denying reason to a decision.
pub fn deny(decision: &mut Decision, check: Check, rule: &RuleId, message: String) {
    decision.decision = Effect::Deny;
    decision.reasons.push(Reason {
        check,
        rule: rule.clone(),
        message,
    });
}

/// Labelling scans data; it never resolves anything.
struct NoLookup;

impl Resolver for NoLookup {
    fn resolve(&self, host: &str) -> Result<Vec<std::net::IpAddr>, ResolveError> {
        Err(ResolveError::NotFound {
            host: host.to_string(),
        })
    }
}

/// Write a line to standard error (`conductor: <message>`).
pub fn warn(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "conductor: {message}");
}
