//! Connections out of Conductor's sandbox: what its egress proxy asks the gate.
//!
//! The proxy parses its wire (CONNECT, absolute-form HTTP, the TLS ClientHello); every
//! check of a connection is the gate's, the same as a call's: the destination check
//! (by name before DNS, then every address), the resolve (through the shared
//! [`crate::GateResolver`], so the proxy connects to the addresses checked here), the
//! data egress rules and the agent's clearance over what a plain-HTTP request carries,
//! the flow check over the agent's session labels, and the audit record — one per
//! connection, event `egress`, tool `<server>.egress`.
//!
//! INVARIANT: a connection is opened only on a [`Verdict`] that forwards — an `allow`
//! whose record is committed; its destination's `addresses` are the only addresses it
//! may go to (pinning).

use std::sync::Arc;
use std::time::Instant;

use conductor_audit::NewRecord;
use conductor_core::{Check, Decision, Effect, Reason, Request};
use conductor_policy::Policy;
use conductor_types::RuleId;
use serde_json::{Value, json};

use super::{Call, Service, Subject, Verdict, add_problems, effect_name, finish};
use crate::resolver::Answers;

/// One connection the sandbox's egress proxy was asked to open.
#[derive(Debug, Clone)]
pub struct Connection {
    /// What the server asked for: `connect` (a CONNECT tunnel), the lowercase method of
    /// a plain-HTTP request, or `redirect` (a `Location` the destination answered).
    pub action: String,
    /// Where the connection goes: a URL whose scheme, host and port are checked (its
    /// path is not looked at).
    pub destination: String,
    /// What the audit record shows as the target: an origin, never a path or query.
    pub shown: String,
    /// The TLS server name the client sent (CONNECT), once known.
    pub sni: Option<String>,
    /// What the connection carries to the destination (request target, headers, body),
    /// as a JSON object: scanned by the policy's detectors.
    pub content: Value,
}

/// A connection decided, not yet recorded ([`Service::check_connection`]): the
/// transport may add the problems it finds afterwards (a TLS server name) before
/// [`Service::record_connection`].
#[derive(Debug)]
pub struct CheckedConnection {
    connection: Connection,
    request: Request,
    decision: Decision,
    policy: Arc<Policy>,
    started: Instant,
}

impl CheckedConnection {
    /// The decision so far (its destination carries the checked addresses).
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// Whether the checks so far allow the connection.
    pub fn allowed(&self) -> bool {
        self.decision.decision == Effect::Allow
    }

    /// Record the TLS server name the client sent.
    pub fn set_sni(&mut self, sni: Option<String>) {
        self.connection.sni = sni;
    }
}

/// The tool name connections of `subject` are recorded under.
fn egress_tool(subject: &Subject) -> String {
    format!("{}.egress", subject.server.as_deref().unwrap_or("sandbox"))
}

impl Service {
    /// Decide a connection (every check, DNS last), without recording it yet.
    pub async fn check_connection(
        &self,
        subject: &Subject,
        connection: Connection,
    ) -> CheckedConnection {
        let started = Instant::now();
        let policy = self.policy();
        let call = Call::new("egress", &egress_tool(subject), connection.content.clone());
        let (request, problems) = self.request(subject, &call, &[]);
        let decision = {
            let prepared = conductor_core::prepare_connection(
                &policy,
                &request,
                std::slice::from_ref(&connection.destination),
                &self.key,
            );
            let hosts = prepared.hosts_to_resolve().to_vec();
            let answers = if hosts.is_empty() {
                Answers::default()
            } else {
                self.resolver.resolve_all(&hosts).await
            };
            let mut decision = prepared.finish(&answers);
            add_problems(&mut decision, problems);
            decision
        };
        CheckedConnection {
            connection,
            request,
            decision,
            policy,
            started,
        }
    }

    /// A connection refused before it could be checked (its request did not parse, or
    /// could be read two ways): a deny with `problems`, and no lookup.
    pub fn refused_connection(
        &self,
        subject: &Subject,
        connection: Connection,
        problems: Vec<Reason>,
    ) -> CheckedConnection {
        let policy = self.policy();
        let call = Call::new("egress", &egress_tool(subject), connection.content.clone());
        let (request, more) = self.request(subject, &call, &[]);
        let mut decision = Decision {
            decision: Effect::Deny,
            reasons: Vec::new(),
            destinations: Vec::new(),
            findings: Vec::new(),
            policy: policy.sha256().to_string(),
        };
        add_problems(&mut decision, problems);
        add_problems(&mut decision, more);
        CheckedConnection {
            connection,
            request,
            decision,
            policy,
            started: Instant::now(),
        }
    }

    /// Add the transport's `problems` (each denies) and commit the connection's record.
    pub async fn record_connection(
        &self,
        subject: &Subject,
        checked: CheckedConnection,
        problems: Vec<Reason>,
    ) -> Verdict {
        let (decision, record) = self.connection_record(subject, checked, problems);
        // A connection waits for its record alone: on a multi-threaded runtime it is
        // committed on this thread (`append_many_here`: the same transaction and chain
        // as the writer's, without the two thread wake-ups of the hand-off, which were
        // most of a connection's fixed cost); elsewhere through the writer.
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let tool = record.tool.clone();
        let committed = if multi {
            tokio::task::block_in_place(|| self.commit_here(&record))
        } else {
            self.audit
                .submit(record)
                .await
                .map(|r| r.seq)
                .map_err(|e| e.to_string())
        };
        finish(decision, committed, &tool)
    }

    /// [`Service::record_connection`] for a caller whose thread may wait for the
    /// commit — a transport on a thread of its own, such as the sandbox's egress proxy
    /// (its own single-threaded runtime): the record is committed on this thread
    /// whatever the runtime, without a hand-off to the writer thread and back.
    pub fn record_connection_here(
        &self,
        subject: &Subject,
        checked: CheckedConnection,
        problems: Vec<Reason>,
    ) -> Verdict {
        let (decision, record) = self.connection_record(subject, checked, problems);
        let committed = self.commit_here(&record);
        finish(decision, committed, &record.tool)
    }

    /// Commit one record on this thread; its sequence number.
    fn commit_here(&self, record: &NewRecord) -> Result<u64, String> {
        self.audit
            .append_many_here(std::slice::from_ref(record))
            .map(|r| r.first().map_or(0, |r| r.seq))
            .map_err(|e| e.to_string())
    }

    /// The decision with the transport's `problems` added, and the connection's record.
    fn connection_record(
        &self,
        subject: &Subject,
        checked: CheckedConnection,
        problems: Vec<Reason>,
    ) -> (Decision, NewRecord) {
        let CheckedConnection {
            connection,
            request,
            mut decision,
            policy,
            started,
        } = checked;
        add_problems(&mut decision, problems);
        // What the record shows: the action, the origin and the server name — scanned
        // and redacted like a call's arguments (a name may carry data).
        let shown = json!({
            "action": connection.action,
            "target": connection.shown,
            "sni": connection.sni,
        });
        let found = policy.data().scanner.scan(&shown, &self.key);
        let arguments = conductor_scan::redact(&shown, &found);
        let digest = serde_json::to_value(&request)
            .map(|v| conductor_audit::request_digest(&json!({"request": v, "connection": shown})))
            .unwrap_or_default();
        let record = NewRecord {
            event: "egress".into(),
            agent: request.agent.clone(),
            session: request.session.clone(),
            workflow: request.workflow.clone(),
            server: subject.server.clone(),
            tool: request.tool.clone(),
            action: connection.action.clone(),
            decision: effect_name(decision.decision).to_string(),
            reasons: serde_json::to_value(&decision.reasons).unwrap_or(Value::Null),
            destinations: serde_json::to_value(&decision.destinations).unwrap_or(Value::Null),
            findings: serde_json::to_value(&decision.findings).unwrap_or(Value::Null),
            policy: decision.policy.clone(),
            request_digest: digest,
            arguments: Some(arguments),
            latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            auth: None,
        };
        (decision, record)
    }

    /// [`Service::check_connection`] and [`Service::record_connection`] in one.
    pub async fn decide_connection(
        &self,
        subject: &Subject,
        connection: Connection,
        problems: Vec<Reason>,
    ) -> Verdict {
        let checked = self.check_connection(subject, connection).await;
        self.record_connection(subject, checked, problems).await
    }
}

/// A reason the transport found in a connection (`check` is usually `destination` or
/// `input`).
pub fn connection_problem(check: Check, rule: RuleId, message: String) -> Reason {
    Reason {
        check,
        rule,
        message,
    }
}
