//! Export to OCSF: API Activity (class 6003, category 6) with the `security_control`
//! profile. The mapping is documented field by field in `crates/audit/OCSF.md`.

use serde_json::{Map, Value, json};

use crate::Record;

/// The OCSF schema version the events claim.
pub const OCSF_VERSION: &str = "1.5.0";

/// The API Activity `activity_id` for a Conductor action.
fn activity(action: &str) -> (u64, &'static str) {
    match action {
        "read" => (2, "Read"),
        "write" => (3, "Update"),
        "delete" => (4, "Delete"),
        // execute, admin, and anything unknown.
        _ => (99, "Other"),
    }
}

/// (`action_id`, `action`, `disposition_id`, `disposition`, `severity_id`, `severity`).
fn outcome(decision: &str) -> (u64, &'static str, u64, &'static str, u64, &'static str) {
    match decision {
        "allow" => (1, "Allowed", 1, "Allowed", 1, "Informational"),
        // Held for a human: not forwarded when the record was written.
        "approve" => (2, "Denied", 99, "Approval Required", 2, "Low"),
        // deny, and anything unknown (fail closed).
        _ => (2, "Denied", 2, "Blocked", 3, "Medium"),
    }
}

fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.to_string(), v);
    }
}

/// The first destination as an OCSF network endpoint.
fn endpoint(destinations: &Value) -> Option<Value> {
    let d = destinations.as_array()?.first()?;
    let mut ep = Map::new();
    put(&mut ep, "hostname", d.get("host").cloned());
    put(
        &mut ep,
        "ip",
        d.get("addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .cloned(),
    );
    put(&mut ep, "port", d.get("port").cloned());
    put(&mut ep, "name", d.get("input").cloned());
    (!ep.is_empty()).then_some(Value::Object(ep))
}

/// One record as an OCSF API Activity event.
pub fn event(rec: &Record) -> Value {
    let (activity_id, activity_name) = activity(&rec.action);
    let (action_id, action, disposition_id, disposition, severity_id, severity) =
        outcome(&rec.decision);
    let time_ms = crate::time::parse_rfc3339(&rec.time).map_or(0, |us| us.div_euclid(1000));
    let first_reason = rec
        .reasons
        .as_array()
        .and_then(|r| r.first())
        .and_then(|r| r.get("message"))
        .and_then(Value::as_str);
    let message = match first_reason {
        Some(m) => format!("{} {} by {}: {m}", rec.decision, rec.tool, rec.agent),
        None => format!("{} {} by {}", rec.decision, rec.tool, rec.agent),
    };

    let mut actor = Map::new();
    actor.insert("user".into(), json!({"uid": rec.agent, "name": rec.agent}));
    put(
        &mut actor,
        "session",
        rec.session.as_ref().map(|s| json!({"uid": s})),
    );
    actor.insert("app_name".into(), json!("conductor"));

    let mut api = Map::new();
    api.insert("operation".into(), json!(rec.tool));
    put(
        &mut api,
        "service",
        rec.server.as_ref().map(|s| json!({"name": s})),
    );
    api.insert("request".into(), json!({"uid": rec.request_digest}));

    let mut conductor = Map::new();
    conductor.insert("seq".into(), json!(rec.seq));
    conductor.insert("hash".into(), json!(rec.hash));
    conductor.insert("prev".into(), json!(rec.prev));
    conductor.insert("event".into(), json!(rec.event));
    conductor.insert("action".into(), json!(rec.action));
    conductor.insert("decision".into(), json!(rec.decision));
    put(
        &mut conductor,
        "workflow",
        rec.workflow.clone().map(Value::from),
    );
    conductor.insert("reasons".into(), rec.reasons.clone());
    conductor.insert("destinations".into(), rec.destinations.clone());
    conductor.insert("findings".into(), rec.findings.clone());
    conductor.insert("latency_us".into(), json!(rec.latency_us));
    put(&mut conductor, "arguments", rec.arguments.clone());

    let mut ev = Map::new();
    ev.insert("class_uid".into(), json!(6003));
    ev.insert("class_name".into(), json!("API Activity"));
    ev.insert("category_uid".into(), json!(6));
    ev.insert("category_name".into(), json!("Application Activity"));
    ev.insert("activity_id".into(), json!(activity_id));
    ev.insert("activity_name".into(), json!(activity_name));
    ev.insert("type_uid".into(), json!(6003 * 100 + activity_id));
    ev.insert(
        "type_name".into(),
        json!(format!("API Activity: {activity_name}")),
    );
    ev.insert("time".into(), json!(time_ms));
    ev.insert("severity_id".into(), json!(severity_id));
    ev.insert("severity".into(), json!(severity));
    ev.insert("message".into(), json!(message));
    ev.insert(
        "metadata".into(),
        json!({
            "version": OCSF_VERSION,
            "profiles": ["security_control"],
            "product": {"name": "Conductor", "vendor_name": "Conductor",
                        "version": env!("CARGO_PKG_VERSION")},
            "uid": rec.hash,
            "sequence": rec.seq,
            "original_time": rec.time,
            "log_name": "conductor-audit",
        }),
    );
    ev.insert("actor".into(), Value::Object(actor));
    ev.insert("api".into(), Value::Object(api));
    ev.insert("src_endpoint".into(), json!({"name": rec.agent}));
    put(&mut ev, "dst_endpoint", endpoint(&rec.destinations));
    ev.insert("action_id".into(), json!(action_id));
    ev.insert("action".into(), json!(action));
    ev.insert("disposition_id".into(), json!(disposition_id));
    ev.insert("disposition".into(), json!(disposition));
    ev.insert("is_alert".into(), json!(rec.decision != "allow"));
    let mut policy = Map::new();
    policy.insert("uid".into(), json!(rec.policy));
    policy.insert("name".into(), json!("conductor policy"));
    put(
        &mut policy,
        "desc",
        rec.reasons
            .as_array()
            .and_then(|r| r.first())
            .and_then(|r| r.get("rule"))
            .cloned(),
    );
    ev.insert("policy".into(), Value::Object(policy));
    ev.insert("unmapped".into(), json!({"conductor": conductor}));
    Value::Object(ev)
}
