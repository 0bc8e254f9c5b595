//! Prometheus metrics (`GET /metrics`). Labels carry server ids, tool names, decisions
//! and check names only — never arguments or anything an agent sent.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub server: String,
    pub tool: String,
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub server: String,
    pub check: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0, 30.0,
    ])
}

/// Every metric of the gateway.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    refusals: Family<CheckLabels, Counter>,
    call_seconds: Family<ServerLabels, Histogram, fn() -> Histogram>,
    up: Family<ServerLabels, Gauge>,
    listen_streams: Family<ServerLabels, Gauge>,
    pub sessions: Gauge,
    pub http: Family<StatusLabels, Counter>,
    pub reloads: Family<StatusLabels, Counter>,
    auth_failures: Family<ReasonLabels, Counter>,
    /// The `tool` label values in use (bounded: see [`MAX_TOOL_LABELS`]).
    tool_labels: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Distinct `tool` label values of `conductor_calls_total`; a name beyond them is
/// counted as `(other)`. The name is the client's text: without a bound, every call
/// with a new name would make a new series in the gateway and in Prometheus.
pub const MAX_TOOL_LABELS: usize = 1000;
/// The `tool` label of a name beyond [`MAX_TOOL_LABELS`].
pub const OTHER_TOOL: &str = "(other)";

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("conductor");
        let calls = Family::<CallLabels, Counter>::default();
        let refusals = Family::<CheckLabels, Counter>::default();
        let call_seconds: Family<ServerLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let up = Family::<ServerLabels, Gauge>::default();
        let listen_streams = Family::<ServerLabels, Gauge>::default();
        let sessions = Gauge::default();
        let http = Family::<StatusLabels, Counter>::default();
        let reloads = Family::<StatusLabels, Counter>::default();
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "requests refused before any decision because the caller is not authenticated (or lacks scopes), by reason",
            auth_failures.clone(),
        );
        registry.register(
            "calls",
            "tools/call requests by server, tool and decision (pass: not gated)",
            calls.clone(),
        );
        registry.register(
            "refusals",
            "refused requests by server and failing check",
            refusals.clone(),
        );
        registry.register(
            "call_duration_seconds",
            "time from a tools/call reaching the gateway to its answer, decision and audit commit included",
            call_seconds.clone(),
        );
        registry.register(
            "upstream_up",
            "1 when the last connection to the upstream worked",
            up.clone(),
        );
        registry.register(
            "listen_streams",
            "open subscriptions/listen streams to the upstream",
            listen_streams.clone(),
        );
        registry.register("sessions", "open client sessions", sessions.clone());
        registry.register("http_responses", "http responses by status", http.clone());
        registry.register(
            "reloads",
            "configuration reloads by outcome",
            reloads.clone(),
        );
        Metrics {
            registry,
            calls,
            refusals,
            call_seconds,
            up,
            listen_streams,
            sessions,
            http,
            reloads,
            auth_failures,
            tool_labels: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Count a `tools/call`. `tool` must already be as it may be shown (redacted where a
    /// detector finds something: `Service::shown_tool_name`); it is cut to 64 characters
    /// and bounded in number (beyond [`MAX_TOOL_LABELS`] names: [`OTHER_TOOL`]).
    pub fn call(&self, server: &str, tool: &str, decision: &str, took: Duration) {
        let tool: String = tool.chars().take(64).collect();
        let tool = match self.tool_labels.lock() {
            Ok(seen) if seen.contains(&tool) => tool,
            Ok(mut seen) if seen.len() < MAX_TOOL_LABELS => {
                seen.insert(tool.clone());
                tool
            }
            _ => OTHER_TOOL.to_string(),
        };
        self.calls
            .get_or_create(&CallLabels {
                server: server.into(),
                tool,
                decision: decision.into(),
            })
            .inc();
        self.call_seconds
            .get_or_create(&ServerLabels {
                server: server.into(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn refusal(&self, server: &str, check: &str) {
        self.refusals
            .get_or_create(&CheckLabels {
                server: server.into(),
                check: check.into(),
            })
            .inc();
    }

    pub fn upstream_up(&self, server: &str, up: bool) {
        self.up
            .get_or_create(&ServerLabels {
                server: server.into(),
            })
            .set(i64::from(up));
    }

    /// A `subscriptions/listen` stream to `server` opens; counted until the guard is dropped.
    pub fn listen_stream(&self, server: &str) -> OpenStream {
        let gauge = self
            .listen_streams
            .get_or_create(&ServerLabels {
                server: server.into(),
            })
            .clone();
        gauge.inc();
        OpenStream(gauge)
    }

    /// A request refused for its credentials (`reason`: a fixed word, never input).
    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn status(&self, status: u16) {
        self.http
            .get_or_create(&StatusLabels {
                status: status.to_string(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

/// An open upstream stream, counted in `conductor_listen_streams` while it is kept.
#[derive(Debug)]
pub struct OpenStream(Gauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_labels_are_bounded() {
        let m = Metrics::new();
        for i in 0..(MAX_TOOL_LABELS + 50) {
            m.call("up", &format!("t{i}"), "allow", Duration::from_millis(1));
        }
        m.call("up", "t0", "allow", Duration::from_millis(1));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry).unwrap();
        let series = text.matches("conductor_calls_total{").count();
        assert_eq!(
            series,
            MAX_TOOL_LABELS + 1,
            "names beyond the bound share one series"
        );
        assert!(
            text.contains(r#"tool="(other)",decision="allow"} 50"#),
            "{}",
            &text[..400.min(text.len())]
        );
        assert!(text.contains(r#"tool="t0",decision="allow"} 2"#));
    }
}
