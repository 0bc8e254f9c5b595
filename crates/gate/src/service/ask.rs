//! Approving in the MCP client: a held call put to the person at the client, as a
//! 2025-11-25 `elicitation/create` form or a 2026-07-28 `input_required` result whose
//! `requestState` the gate signs.
//!
//! Both end in the approvals store, like `conductor approvals approve|deny`: the
//! approver recorded is `elicitation:<agent>` (the user of that agent's client).
//!
//! INVARIANT: nothing the model reads can answer. The form goes to the client under
//! a request id of the gate's own (128 random bits, never in a tool result); a
//! `requestState` is signed (HMAC-SHA256 under a key derived from the installation
//! key), bound to the approval, the agent, the call's digest, the policy and an
//! expiry, and is good for one answer. The trust assumption (the client shows the
//! form to a person, and does not hand `input_required` results to the model) is in
//! docs/approvals.md.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use conductor_audit::{ApprovalError, Scope, Status, call_digest};
use conductor_core::{Check, Decision, Effect, Reason, Request};
use conductor_policy::Policy;
use conductor_types::RuleId;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Held, Service, Subject, backticked, deny, warn};

/// The key of the gate's question in an `input_required` result's `inputRequests`
/// (and of the answer in the retry's `inputResponses`).
pub const APPROVAL_INPUT_KEY: &str = "dev.conductor/approval";

/// How every `requestState` the gate signs begins (so that a transport can tell it
/// from an upstream server's own).
pub const REQUEST_STATE_PREFIX: &str = "conductor.v1.";

/// Nonces of answered `requestState`s kept at most (older ones are dropped once
/// expired; past this, the oldest are dropped — the store's status still refuses a
/// second answer to the same approval).
const MAX_SPENT: usize = 100_000;

type HmacSha256 = Hmac<Sha256>;

/// The person's answer at the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAnswer {
    /// Accepted the form with `approve`.
    Approve,
    /// Anything else: why, in the person's words or ours.
    Deny(String),
}

impl ClientAnswer {
    /// Read an `ElicitResult` (`{action, content}`).
    ///
    /// INVARIANT: only `action: accept` with `decision: approve` approves; every other
    /// answer, or one that cannot be read, denies.
    pub fn from_elicit_result(result: &Value) -> ClientAnswer {
        let action = result.get("action").and_then(Value::as_str);
        let content = result.get("content");
        let decision = content
            .and_then(|c| c.get("decision"))
            .and_then(Value::as_str);
        let reason = content
            .and_then(|c| c.get("reason"))
            .and_then(Value::as_str)
            .filter(|r| !r.trim().is_empty());
        match (action, decision) {
            (Some("accept"), Some("approve")) => ClientAnswer::Approve,
            (Some("accept"), Some("deny")) => {
                ClientAnswer::Deny(reason.unwrap_or("denied in the client").to_string())
            }
            (Some("decline"), _) => ClientAnswer::Deny("declined in the client".into()),
            (Some("cancel"), _) => ClientAnswer::Deny("cancelled in the client".into()),
            _ => ClientAnswer::Deny("the client's answer could not be read".into()),
        }
    }
}

/// Why a `requestState` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    /// Not one the gate signed, or altered since.
    #[error("the requestState is not one the gate issued (altered or forged)")]
    Forged,
    /// Signed for another agent.
    #[error("the requestState was issued to another agent")]
    Agent,
    /// Past its expiry.
    #[error("the requestState has expired; ask again")]
    Expired,
    /// Answered already.
    #[error("the requestState was answered already; it is good for one answer")]
    Replayed,
    /// The retried call is not the one that was held.
    #[error(
        "the retried call is not the call that was held (other arguments need another approval)"
    )]
    Call,
    /// The policy changed since it was issued.
    #[error("the policy changed since the question was asked; ask again")]
    Stale,
    /// The approval is no longer pending.
    #[error("the approval was decided already or expired")]
    Decided,
    /// The approvals store failed.
    #[error("the approvals store failed")]
    Store,
}

/// A `requestState` the client sent back with the person's answer (not yet verified).
#[derive(Debug, Clone)]
pub struct Answered {
    /// The `requestState` as received.
    pub state: String,
    /// The answer under [`APPROVAL_INPUT_KEY`] in `inputResponses` (`Null` when missing).
    pub response: Value,
}

/// Whether `state` is a `requestState` of the gate's (by its prefix; not verified).
pub fn is_our_state(state: &str) -> bool {
    state.starts_with(REQUEST_STATE_PREFIX)
}

/// What a signed `requestState` says.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Claims {
    /// The approval id.
    a: String,
    /// The agent.
    g: String,
    /// The call digest.
    d: String,
    /// The policy's sha256.
    p: String,
    /// Expiry (micros).
    e: i64,
    /// One-time nonce.
    n: String,
}

impl Service {
    /// Whether held calls may be put to the person at the client (the policy's
    /// `sessions.approve_in_client`, default false) — and calls are held at all.
    pub fn asks_in_client(&self) -> bool {
        self.policy().approve_in_client() && self.approvals().is_some()
    }

    /// The `elicitation/create` params (form mode) asking the person to approve or deny
    /// `held`: the tool, the arguments redacted, the reasons and the expiry.
    pub fn approval_form(&self, held: &Held) -> Value {
        let h = &held.inner;
        let arguments = conductor_scan::redact(&h.request.arguments, &h.decision.findings);
        let args = serde_json::to_string(&arguments).unwrap_or_default();
        let reasons: Vec<String> = h
            .decision
            .reasons
            .iter()
            .filter(|r| r.rule != RuleId::approval("pending"))
            .map(|r| format!("- {} ({}): {}", r.check, r.rule, r.message))
            .collect();
        let message = format!(
            "Conductor holds a call of agent {} to {} for your approval (until {}).\n\nArguments (redacted):\n{}\n\nWhy it needs approval:\n{}",
            backticked(&h.request.agent),
            backticked(&h.request.tool),
            conductor_audit::time::format_micros(h.expires),
            conductor_types::display::shown(&args, 4000),
            reasons.join("\n"),
        );
        json!({
            "mode": "form",
            "message": message,
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "decision": {
                        "type": "string",
                        "title": "Decision",
                        "description": "approve runs this call once; deny refuses it",
                        "enum": ["approve", "deny"],
                    },
                    "reason": {
                        "type": "string",
                        "title": "Reason (for a denial)",
                    },
                },
                "required": ["decision"],
            },
        })
    }

    /// Decide `held` with the person's answer at the client, through the approvals
    /// store (its waiter wakes as for any other approver). The approver recorded is
    /// `elicitation:<agent>`; an approval releases only this call (scope `call`).
    pub fn answer_in_client(
        &self,
        held: &Held,
        answer: &ClientAnswer,
    ) -> Result<(), ApprovalError> {
        let store = self.approvals().ok_or_else(|| ApprovalError::Invalid {
            message: "calls are not held in this process".into(),
        })?;
        let approver = approver_of(&held.inner.request.agent);
        match answer {
            ClientAnswer::Approve => store
                .approve(held.id(), &approver, &Scope::Call)
                .map(|_| ()),
            ClientAnswer::Deny(reason) => store.deny(held.id(), &approver, reason).map(|_| ()),
        }
    }

    /// A signed `requestState` for `held` (see the module docs).
    pub fn request_state(&self, held: &Held) -> Result<String, std::io::Error> {
        let h = &held.inner;
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(std::io::Error::other)?;
        let claims = Claims {
            a: h.id.clone(),
            g: h.request.agent.clone(),
            d: digest_of(&h.request),
            p: h.policy.clone(),
            e: h.expires,
            n: hex::encode(nonce),
        };
        let payload = serde_json::to_vec(&claims).map_err(std::io::Error::other)?;
        let body = URL_SAFE_NO_PAD.encode(payload);
        let mac = self.state_mac(&body)?.finalize().into_bytes();
        Ok(format!(
            "{REQUEST_STATE_PREFIX}{body}.{}",
            URL_SAFE_NO_PAD.encode(mac)
        ))
    }

    /// The `input_required` result that puts `held` to the person at the client.
    pub fn input_required(&self, held: &Held) -> Result<Value, std::io::Error> {
        Ok(json!({
            "resultType": "input_required",
            "inputRequests": {
                APPROVAL_INPUT_KEY: {
                    "method": "elicitation/create",
                    "params": self.approval_form(held),
                }
            },
            "requestState": self.request_state(held)?,
        }))
    }

    fn state_mac(&self, body: &str) -> Result<HmacSha256, std::io::Error> {
        // A key of its own, derived from the installation key (domain separated from
        // the fingerprints the same key makes).
        let mut kdf = HmacSha256::new_from_slice(&self.key.0).map_err(std::io::Error::other)?;
        kdf.update(b"conductor requestState v1");
        let key = kdf.finalize().into_bytes();
        let mut mac = HmacSha256::new_from_slice(&key).map_err(std::io::Error::other)?;
        mac.update(body.as_bytes());
        Ok(mac)
    }

    /// Verify a `requestState` for `subject`'s retried `request` (everything but
    /// whether its approval is still pending) and spend its nonce.
    fn verify_state(
        &self,
        subject: &Subject,
        policy: &Policy,
        request: &Request,
        state: &str,
        now: i64,
    ) -> Result<Claims, StateError> {
        let rest = state
            .strip_prefix(REQUEST_STATE_PREFIX)
            .ok_or(StateError::Forged)?;
        let (body, tag) = rest.split_once('.').ok_or(StateError::Forged)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| StateError::Forged)?;
        // INVARIANT: nothing of the state is read before its MAC is checked (in
        // constant time).
        self.state_mac(body)
            .map_err(|_| StateError::Forged)?
            .verify_slice(&tag)
            .map_err(|_| StateError::Forged)?;
        let payload = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| StateError::Forged)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| StateError::Forged)?;
        if claims.g != subject.agent {
            return Err(StateError::Agent);
        }
        if claims.e <= now {
            return Err(StateError::Expired);
        }
        if claims.p != policy.sha256() {
            return Err(StateError::Stale);
        }
        if claims.d != digest_of(request) {
            return Err(StateError::Call);
        }
        let mut spent = match self.spent.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if spent.contains_key(&claims.n) {
            return Err(StateError::Replayed);
        }
        if spent.len() >= MAX_SPENT {
            spent.retain(|_, e| *e > now);
            if spent.len() >= MAX_SPENT {
                spent.clear();
            }
        }
        spent.insert(claims.n.clone(), claims.e);
        Ok(claims)
    }

    /// A retried call's answer decides its `approve` decision (see
    /// [`Service::decide_answered`]); a decision that is not `approve` any more is
    /// left as it is (a deny stays a deny; the answer cannot raise anything).
    pub(super) fn apply_answer(
        &self,
        subject: &Subject,
        policy: &Policy,
        request: &Request,
        decision: &mut Decision,
        answered: &Answered,
    ) {
        if decision.decision != Effect::Approve {
            return;
        }
        let now = conductor_audit::time::now_micros();
        let refuse = |decision: &mut Decision, e: StateError| {
            let what = match e {
                StateError::Expired | StateError::Decided => "expired",
                StateError::Stale => "stale",
                StateError::Store => "store",
                _ => "state",
            };
            deny(
                decision,
                Check::Approval,
                &RuleId::approval(what),
                e.to_string(),
            );
        };
        let claims = match self.verify_state(subject, policy, request, &answered.state, now) {
            Ok(c) => c,
            Err(e) => return refuse(decision, e),
        };
        let Some(store) = self.approvals() else {
            return refuse(decision, StateError::Store);
        };
        // INVARIANT: one answer per approval, across processes: the store's status is
        // the last word (a state replayed into another process finds it decided).
        match store.show(&claims.a) {
            Ok(a) if a.status_at(now) == Status::Pending && a.call.agent == subject.agent => {}
            Ok(_) => return refuse(decision, StateError::Decided),
            Err(e) => {
                warn(&format!(
                    "cannot read the approval a requestState names: {e}"
                ));
                return refuse(decision, StateError::Store);
            }
        }
        let approver = approver_of(&subject.agent);
        match ClientAnswer::from_elicit_result(&answered.response) {
            ClientAnswer::Approve => match store.approve(&claims.a, &approver, &Scope::Call) {
                Ok(_) => {
                    decision.decision = Effect::Allow;
                    decision.reasons.push(Reason {
                        check: Check::Approval,
                        rule: RuleId::approval("granted"),
                        message: format!(
                            "approved in the client by {} (scope call), approval `{}`",
                            backticked(&approver),
                            claims.a
                        ),
                    });
                }
                Err(ApprovalError::NotPending { .. }) => refuse(decision, StateError::Decided),
                Err(e) => {
                    warn(&format!(
                        "cannot record an approval given in the client: {e}"
                    ));
                    refuse(decision, StateError::Store);
                }
            },
            ClientAnswer::Deny(reason) => {
                if let Err(e) = store.deny(&claims.a, &approver, &reason) {
                    warn(&format!("cannot record a denial given in the client: {e}"));
                }
                deny(
                    decision,
                    Check::Approval,
                    &RuleId::approval("denied"),
                    format!(
                        "denied by {}: {}",
                        backticked(&approver),
                        conductor_types::display::shown(&reason, 200)
                    ),
                );
            }
        }
    }
}

/// The approver recorded for an answer given at `agent`'s client.
fn approver_of(agent: &str) -> String {
    format!(
        "elicitation:{}",
        conductor_types::display::shown(agent, 120)
    )
}

fn digest_of(request: &Request) -> String {
    call_digest(
        &request.agent,
        &request.tool,
        request.workflow.as_deref(),
        &request.arguments,
    )
}
