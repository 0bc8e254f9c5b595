//! The webhook on new pending approvals (`approvals.webhook` in the gateway file): a
//! signed JSON POST for every call the gate holds, so teams can route them to chat.
//!
//! Body: `{"type": "approval.pending", "approval": {…as the approvals api shows it…}}`.
//! Headers: `Conductor-Webhook-Id` (the approval id: the same on every retry),
//! `Conductor-Webhook-Timestamp` (unix seconds of this attempt) and
//! `Conductor-Webhook-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//! A receiver recomputes the HMAC over the timestamp, a `.` and the raw body, compares in
//! constant time, and refuses a timestamp more than 5 minutes from its clock (replay).
//!
//! INVARIANT: a delivery never holds up a call: it runs on its own task, after the
//! approval is stored; the held call waits for a person, not for the webhook.
//!
//! INVARIANT: attempts are bounded (1 + `retries`, each within `timeout_seconds`, with
//! backoff) and so are deliveries in flight ([`MAX_IN_FLIGHT`]; beyond it a delivery is
//! dropped and logged). Failures are logged with the approval id, the attempt, the
//! receiver's host and an error class — never the URL's path or query (chat webhooks
//! carry their token there), the secret, the body or the receiver's answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::config::Webhook;
use crate::session::App;

/// Deliveries (with their retries) in flight at once.
pub const MAX_IN_FLIGHT: usize = 256;
/// The longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The header names.
pub const ID_HEADER: &str = "conductor-webhook-id";
/// Unix seconds of the attempt.
pub const TIMESTAMP_HEADER: &str = "conductor-webhook-timestamp";
/// `v1=<hex>`.
pub const SIGNATURE_HEADER: &str = "conductor-webhook-signature";

/// The HMAC of `"<timestamp>.<body>"` under `secret`, ready to finish or verify.
fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> Option<Hmac<Sha256>> {
    // HMAC takes a key of any length: `new_from_slice` does not fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    mac(secret, timestamp, body).map_or_else(String::new, |m| {
        format!("v1={}", hex::encode(m.finalize().into_bytes()))
    })
}

/// The body announcing `approval`.
pub fn body(approval: &conductor_audit::Approval) -> Vec<u8> {
    serde_json::to_vec(&json!({"type": "approval.pending", "approval": approval.to_json()}))
        .unwrap_or_default()
}

/// Sends the deliveries of one gateway (the webhook in force is read at each new
/// approval, so a reloaded gateway file takes effect for the next one).
pub(crate) struct Notifier {
    app: Weak<App>,
    /// `None` when no client could be built: every delivery is logged as not sent.
    client: Option<reqwest::Client>,
    in_flight: Arc<AtomicUsize>,
}

impl Notifier {
    pub(crate) fn new(app: &Arc<App>) -> Notifier {
        let client = crate::upstream_tls::client_builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| tracing::warn!(error = %e, "webhooks cannot be sent: no http client"))
            .ok();
        Notifier {
            app: Arc::downgrade(app),
            client,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Announce `approval` (returns at once; the delivery runs on its own task).
    pub(crate) fn pending(&self, approval: &conductor_audit::Approval) {
        let Some(app) = self.app.upgrade() else {
            return;
        };
        let Some(hook) = app.config().approvals.webhook.clone() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(approval = %approval.id, "webhook not sent: no runtime");
            return;
        };
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(approval = %approval.id, host = host(&hook), "webhook not sent: too many deliveries in flight");
            return;
        }
        let Some(default) = self.client.as_ref() else {
            tracing::warn!(approval = %approval.id, "webhook not sent: no http client");
            return;
        };
        // An https receiver with `tls:` gets a client of its own (its CA read now, so a
        // rotated one takes effect); one whose settings cannot be used gets nothing.
        let client = match crate::upstream_tls::client_for(hook.tls.as_ref(), default) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(approval = %approval.id, host = host(&hook), error = %e, "webhook not sent: its tls settings cannot be used");
                return;
            }
        };
        let body = body(approval);
        let id = approval.id.clone();
        let in_flight = Arc::clone(&self.in_flight);
        rt.spawn(async move {
            deliver(&client, &hook, &id, body).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn host(hook: &Webhook) -> String {
    match (hook.url.host_str(), hook.url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => "?".into(),
    }
}

/// Send one delivery, retrying with backoff (1 s, 2 s, 4 s… at most 30 s).
async fn deliver(client: &reqwest::Client, hook: &Webhook, id: &str, body: Vec<u8>) {
    let attempts = hook.retries.saturating_add(1);
    let mut pause = Duration::from_secs(1);
    for attempt in 1..=attempts {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let sig = sign(hook.secret.expose().as_bytes(), ts, &body);
        let sent = client
            .post(hook.url.clone())
            .timeout(hook.timeout)
            .header("content-type", "application/json")
            .header("user-agent", "conductor")
            .header(ID_HEADER, id)
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, sig)
            .body(body.clone())
            .send()
            .await;
        let failure = match sent {
            Ok(r) if r.status().is_success() => {
                tracing::info!(approval = %id, attempt, host = host(hook), "webhook delivered");
                return;
            }
            Ok(r) => format!("http {}", r.status().as_u16()),
            // INVARIANT: the error's text names the URL: only its class is logged.
            Err(e) if crate::upstream_tls::tls_reason(&e).is_some() => format!(
                "tls: {}",
                crate::upstream_tls::tls_reason(&e).unwrap_or_default()
            ),
            Err(e) if e.is_timeout() => "timeout".into(),
            Err(e) if e.is_connect() => "cannot connect".into(),
            Err(_) => "request failed".into(),
        };
        tracing::warn!(approval = %id, attempt, of = attempts, host = host(hook), error = %failure, "webhook delivery failed");
        if attempt < attempts {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_BACKOFF);
        }
    }
}

/// Check a delivery as a receiver would: the signature over the timestamp and the
/// body, and the timestamp within `tolerance` of `now` (unix seconds). For receivers
/// written in Rust and for the tests; the recipe is in `docs/approvals.md`.
pub fn verify(
    secret: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: u64,
    tolerance: Duration,
) -> bool {
    let Ok(ts) = timestamp.parse::<u64>() else {
        return false;
    };
    if now.abs_diff(ts) > tolerance.as_secs() {
        return false;
    }
    let Some(hex_sig) = signature.strip_prefix("v1=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_sig) else {
        return false;
    };
    // Constant-time comparison.
    mac(secret, ts, body).is_some_and(|m| m.verify_slice(&given).is_ok())
}

/// The approval JSON of a delivery body (for receivers and tests).
pub fn approval_of(body: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(body).ok()?;
    (v.get("type")?.as_str()? == "approval.pending").then(|| v.get("approval").cloned())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_binds_the_timestamp_and_the_body() {
        let s: &[u8] = b"0123456789abcdef0123";
        let sig = sign(s, 1_700_000_000, b"{\"a\":1}");
        let tol = Duration::from_secs(300);
        let body: &[u8] = b"{\"a\":1}";
        assert!(verify(s, "1700000000", &sig, body, 1_700_000_010, tol));
        let other_secret: &[u8] = b"another secret!!";
        for (secret, ts, sig, body, now) in [
            (s, "1700000001", sig.as_str(), body, 1_700_000_010),
            (
                s,
                "1700000000",
                sig.as_str(),
                b"{\"a\":2}".as_slice(),
                1_700_000_010,
            ),
            (
                other_secret,
                "1700000000",
                sig.as_str(),
                body,
                1_700_000_010,
            ),
            (s, "1700000000", sig.as_str(), body, 1_700_001_000),
            (s, "1700000000", "v2=00", body, 1_700_000_010),
        ] {
            assert!(!verify(secret, ts, sig, body, now, tol), "{ts} {sig} {now}");
        }
    }
}
