//! `conductor._conductor`: the gate service in-process for Python agent runtimes.
//!
//! A [`Gate`] is one `conductor_gate::Service` (the same service `wrap`, `serve` and
//! the Claude Code hook decide through) bound to one agent: `decide` builds the call,
//! and `Service::decide_blocking` decides it, resolves last, and commits the audit
//! record before the answer comes back. No check lives here: this module only turns
//! Python values into the JSON the gate decides on, and decisions back into Python.
//!
//! INVARIANT: what the gate decides is exactly what the tool function receives. The
//! arguments are converted from the exact built-in types only (`dict` with `str` keys,
//! `list`, `tuple`, `str`, `int`, `float`, `bool`, `None`); anything else — a subclass
//! whose methods could show the tool other data, a non-string key that JSON would
//! turn into a string (two keys that collide), an integer or float JSON cannot carry, a
//! string that is not valid Unicode — is a refusal (check `input`), decided and
//! recorded like any other call, never a call forwarded with what the gate guessed.

mod convert;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use conductor_audit::{AuditOptions, AuditStore};
use conductor_core::{Check, Effect, Reason as CoreReason};
use conductor_gate::{
    Call, ResolverConfig, Service, ServiceOptions, SqliteStore, Subject, Verdict,
};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use serde_json::Value;

create_exception!(
    _conductor,
    Error,
    PyException,
    "Base class of every error Conductor raises."
);
create_exception!(
    _conductor,
    ConfigError,
    Error,
    "The gate cannot be set up: an invalid policy, fingerprint key or `resolve` entry."
);
create_exception!(
    _conductor,
    StoreError,
    Error,
    "The audit or session store cannot be used; nothing may be forwarded or delivered."
);

/// The audit event recorded for a decision made through the library.
pub const EVENT: &str = "library";

/// One failing check of a decision (or, for `approve`, the rule that requires it).
#[pyclass(frozen, module = "conductor._conductor", eq)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The check: `identity`, `tool`, `role`, `workflow`, `destination`, `data`,
    /// `flow`, `pin`, `input`, `audit`.
    #[pyo3(get)]
    check: String,
    /// The rule that caused it: a path into the policy (`roles.operator.allow[0]`).
    #[pyo3(get)]
    rule: String,
    /// What failed, for people.
    #[pyo3(get)]
    message: String,
}

#[pymethods]
impl Reason {
    fn __repr__(&self) -> String {
        format!(
            "Reason(check={:?}, rule={:?}, message={:?})",
            self.check, self.rule, self.message
        )
    }

    fn __str__(&self) -> String {
        format!("{} ({}): {}", self.check, self.rule, self.message)
    }
}

impl From<&CoreReason> for Reason {
    fn from(r: &CoreReason) -> Self {
        Reason {
            check: r.check.name().to_string(),
            rule: r.rule.to_string(),
            message: r.message.clone(),
        }
    }
}

/// A decision of the gate, committed to the audit trail (unless `audit_id` is `None`,
/// in which case it is a deny with check `audit`).
#[pyclass(frozen, module = "conductor._conductor")]
#[derive(Debug)]
pub struct Decision {
    /// `allow`, `deny` or `approve`.
    #[pyo3(get)]
    effect: &'static str,
    /// Whether the call may go ahead: an `allow` whose audit record is committed.
    #[pyo3(get)]
    allowed: bool,
    /// The qualified tool name decided (the `str` the caller passed).
    #[pyo3(get)]
    tool: Py<PyString>,
    /// The sequence number of the audit record (`conductor audit query` shows it).
    #[pyo3(get)]
    audit_id: Option<u64>,
    /// The gate's decision itself: the reasons, the JSON form and the members are built
    /// from it when Python asks for them, not on every call (most callers read only
    /// `allowed`).
    core: conductor_core::Decision,
}

#[pymethods]
impl Decision {
    /// Every failing check.
    #[getter]
    fn reasons(&self) -> Vec<Reason> {
        self.core.reasons.iter().map(Reason::from).collect()
    }

    /// `sha256:<hex>` of the policy that decided.
    #[getter]
    fn policy(&self) -> &str {
        &self.core.policy
    }

    /// The destinations found, and how they resolved (a list of dicts).
    #[getter]
    fn destinations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.member(py, "destinations")
    }

    /// What the detectors found (detector, label, pointer, fingerprint; never the value).
    #[getter]
    fn findings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.member(py, "findings")
    }

    /// The decision as `conductor check` prints it, as a JSON string.
    fn to_json(&self) -> String {
        self.json()
    }

    /// The decision as `conductor check` prints it, as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = self.value()?;
        convert::to_python(py, &v)
    }

    fn __bool__(&self) -> bool {
        self.allowed
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Decision(effect={:?}, tool={:?}, reasons={}, audit_id={})",
            self.effect,
            self.tool.bind(py).to_string_lossy(),
            self.core.reasons.len(),
            self.audit_id
                .map_or_else(|| "None".to_string(), |s| s.to_string())
        )
    }
}

impl Decision {
    /// The Python face of a verdict: allowed only if the decision is `allow` and its
    /// record is committed (`forward`).
    fn of(tool: Py<PyString>, verdict: Verdict) -> Decision {
        Decision {
            effect: conductor_gate::effect_name(verdict.decision.decision),
            allowed: verdict.forward && verdict.decision.decision == Effect::Allow,
            tool,
            audit_id: verdict.record,
            core: verdict.decision,
        }
    }

    /// The decision as `conductor check` prints it.
    fn json(&self) -> String {
        serde_json::to_string(&self.core).unwrap_or_else(|_| {
            // A decision always serializes; should it not, say deny.
            r#"{"decision":"deny","reasons":[],"destinations":[],"findings":[],"policy":""}"#
                .to_string()
        })
    }

    fn value(&self) -> PyResult<Value> {
        serde_json::to_value(&self.core)
            .map_err(|e| Error::new_err(format!("cannot read the decision: {e}")))
    }

    fn member<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        let v = self.value()?;
        match v.get(key) {
            Some(m) => convert::to_python(py, m),
            None => Ok(PyList::empty(py).into_any()),
        }
    }
}

/// The gate, bound to one agent: `Gate(policy, agent, audit=None, *, workflow=None,
/// session=None, resolve=None, no_dns=False)`.
#[pyclass(frozen, subclass, module = "conductor._conductor")]
pub struct Gate {
    service: Arc<Service>,
    agent: String,
    workflow: Option<String>,
    session: String,
    audit_path: PathBuf,
    /// The subject of the last call made with the gate's own workflow and session,
    /// kept for the next call to the same server (an agent calls few servers, many
    /// times): its strings are not copied again on every call.
    last_subject: Mutex<Option<Arc<Subject>>>,
}

#[pymethods]
impl Gate {
    #[new]
    #[pyo3(signature = (policy, agent, audit=None, *, workflow=None, session=None, resolve=None, no_dns=false))]
    #[expect(
        clippy::too_many_arguments,
        reason = "the Python constructor's keyword arguments"
    )]
    fn new(
        py: Python<'_>,
        policy: PathBuf,
        agent: String,
        audit: Option<PathBuf>,
        workflow: Option<String>,
        session: Option<String>,
        resolve: Option<Bound<'_, PyDict>>,
        no_dns: bool,
    ) -> PyResult<Self> {
        let fixed = match resolve {
            Some(d) => resolve_entries(&d)?,
            None => Vec::new(),
        };
        let session = match session {
            Some(s) => s,
            None => conductor_gate::new_session_id()
                .map_err(|e| Error::new_err(format!("cannot make a session id: {e}")))?,
        };
        // Loading the policy and opening the stores do I/O: other Python threads run.
        let built = py.detach(move || build(&policy, audit, &fixed, no_dns))?;
        let (service, audit_path) = built;
        Ok(Gate {
            service: Arc::new(service),
            agent,
            workflow,
            session,
            audit_path,
            last_subject: Mutex::new(None),
        })
    }

    /// Decide a call to `tool` (`<server>.<tool>`) with `arguments` (a dict), record it
    /// and return the `Decision` (`.effect`, `.allowed`, `.reasons`, `.audit_id`); never
    /// raises for a refusal. Arguments that are not plain JSON data (exact `dict`,
    /// `list`, `tuple`, `str`, `int`, `float`, `bool`, `None`) are a deny with check
    /// `input`, and so is a call with a `problem` (a sentence saying what the caller
    /// could not read in it, e.g. unparseable JSON arguments). The GIL is released
    /// while deciding.
    ///
    /// `conductor.Gate.decide` is this method itself (the Python class subclasses
    /// this one): no Python frame runs per call.
    #[pyo3(signature = (tool, arguments=None, workflow=None, session=None, *, problem=None))]
    fn decide(
        &self,
        py: Python<'_>,
        tool: Bound<'_, PyString>,
        arguments: Option<&Bound<'_, PyAny>>,
        workflow: Option<String>,
        session: Option<String>,
        problem: Option<String>,
    ) -> PyResult<Decision> {
        let value = arguments.map(convert::arguments);
        let (subject, call) = self.call(tool.to_str()?, value, workflow, session, problem);
        let verdict = self.run(py, &subject, call);
        Ok(Decision::of(tool.unbind(), verdict))
    }

    /// The baseline of `decide` for its benchmark (python/bench/bench_decide.py): the
    /// same call decided `n` times by the same service from Rust — the arguments
    /// converted once and every `Call` built before its timer starts, so each sample is
    /// `Service::decide_blocking` alone (labels read, decide, audit record committed).
    /// Returns nanoseconds per call. What `decide` costs above these samples, in the
    /// same process on the same store, is the library's overhead.
    #[pyo3(signature = (tool, arguments, n))]
    fn _bench_service_decide(
        &self,
        py: Python<'_>,
        tool: String,
        arguments: &Bound<'_, PyAny>,
        n: usize,
    ) -> PyResult<Vec<u64>> {
        let value = convert::arguments(arguments).map_err(Error::new_err)?;
        let subject = self.subject(&tool, None, None);
        let subject = &*subject;
        Ok(py.detach(|| {
            (0..n)
                .map(|_| {
                    let call = Call::new(EVENT, &tool, value.clone());
                    let start = Instant::now();
                    std::hint::black_box(self.service.decide_blocking(subject, call));
                    nanos(start)
                })
                .collect()
        }))
    }

    /// `decide`'s own steps timed, for its benchmark: `n` calls made with the code
    /// `decide` runs (the same functions, in the same order), each step timed on its
    /// own. Returns `{step: [nanoseconds, …]}` for `convert` (the arguments to JSON),
    /// `call` (subject and `Call`), `release_gil` (releasing and re-taking the GIL
    /// around the decision, its time less the decision's), `decide_blocking` (the
    /// service: labels, decide, audit commit) and `decision` (the Python `Decision`
    /// object made and freed).
    #[pyo3(signature = (tool, arguments, n))]
    fn _bench_phases<'py>(
        &self,
        py: Python<'py>,
        tool: Bound<'py, PyString>,
        arguments: &Bound<'py, PyAny>,
        n: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut steps: [(&str, Vec<u64>); 5] = [
            ("convert", Vec::with_capacity(n)),
            ("call", Vec::with_capacity(n)),
            ("release_gil", Vec::with_capacity(n)),
            ("decide_blocking", Vec::with_capacity(n)),
            ("decision", Vec::with_capacity(n)),
        ];
        for _ in 0..n {
            let t0 = Instant::now();
            let value = Some(convert::arguments(arguments));
            let t1 = Instant::now();
            let (subject, call) = self.call(tool.to_str()?, value, None, None, None);
            let t2 = Instant::now();
            let (verdict, inner) = py.detach(|| {
                let start = Instant::now();
                let v = self.service.decide_blocking(&subject, call);
                (v, nanos(start))
            });
            let t3 = Instant::now();
            let decision = Bound::new(py, Decision::of(tool.clone().unbind(), verdict))?;
            drop(decision);
            let t4 = Instant::now();
            let whole = [t1 - t0, t2 - t1, t3 - t2, t4 - t3]
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
            let [convert, call, detach, decision] = whole;
            let samples = [convert, call, detach.saturating_sub(inner), inner, decision];
            for ((_, v), s) in steps.iter_mut().zip(samples) {
                v.push(s);
            }
        }
        let out = PyDict::new(py);
        for (k, v) in steps {
            out.set_item(k, v)?;
        }
        Ok(out)
    }

    /// Scan what `tool` returned and raise the session's labels with what was found
    /// (so `flow` applies to the agent's next calls). Returns the labels found. Raises
    /// `StoreError` when they cannot be recorded: the result must then not be used.
    #[pyo3(signature = (tool, result, workflow=None, session=None))]
    fn label_result(
        &self,
        py: Python<'_>,
        tool: String,
        result: &Bound<'_, PyAny>,
        workflow: Option<String>,
        session: Option<String>,
    ) -> PyResult<Vec<String>> {
        let value = convert::result(result)?;
        let subject = self.subject(&tool, workflow, session);
        let service = Arc::clone(&self.service);
        py.detach(move || service.label(&subject, &value))
            .map_err(|e| StoreError::new_err(format!("the labels cannot be recorded: {e}")))
    }

    /// The agent's unexpired session labels (for `workflow`, default the gate's).
    #[pyo3(signature = (workflow=None))]
    fn labels(&self, py: Python<'_>, workflow: Option<String>) -> PyResult<Vec<String>> {
        let subject = self.subject("", workflow, None);
        let service = Arc::clone(&self.service);
        py.detach(move || service.labels(&subject))
            .map(|l| l.into_iter().collect())
            .map_err(|e| StoreError::new_err(format!("the labels cannot be read: {e}")))
    }

    /// The agent this gate decides for.
    #[getter]
    fn agent(&self) -> String {
        self.agent.clone()
    }

    /// The default workflow of calls.
    #[getter]
    fn workflow(&self) -> Option<String> {
        self.workflow.clone()
    }

    /// The session id recorded with every decision (unless a call names another).
    #[getter]
    fn session(&self) -> String {
        self.session.clone()
    }

    /// `sha256:<hex>` of the policy in force.
    #[getter]
    fn policy_sha256(&self) -> String {
        self.service.policy().sha256().to_string()
    }

    /// The audit store's file.
    #[getter]
    fn audit_path(&self) -> PathBuf {
        self.audit_path.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "Gate(agent={:?}, policy={:?}, audit={:?})",
            self.agent,
            self.service.policy().sha256(),
            self.audit_path.display().to_string()
        )
    }
}

impl Gate {
    /// The subject and the call `decide` hands the service; `arguments` already
    /// converted (`None`: no arguments; `Err`: a refusal of check `input`).
    fn call(
        &self,
        tool: &str,
        arguments: Option<Result<Value, String>>,
        workflow: Option<String>,
        session: Option<String>,
        problem: Option<String>,
    ) -> (Arc<Subject>, Call) {
        let (value, converted) = match arguments {
            None => (Value::Object(serde_json::Map::new()), None),
            Some(Ok(v)) => (v, None),
            Some(Err(problem)) => (Value::Object(serde_json::Map::new()), Some(problem)),
        };
        let subject = self.subject(tool, workflow, session);
        let mut call = Call::new(EVENT, tool, value);
        let problem = problem.map(|p| conductor_types::display::shown(&p, 300));
        for message in problem.into_iter().chain(converted) {
            // INVARIANT: arguments the gate cannot read as the tool will see them are
            // a refusal, decided and recorded (check `input`).
            call.problems.push(CoreReason {
                check: Check::Input,
                rule: conductor_types::RuleId::request("arguments"),
                message,
            });
        }
        (subject, call)
    }

    /// `Service::decide_blocking` with the GIL released: it blocks on the audit commit
    /// (and on DNS), and other Python threads run meanwhile.
    fn run(&self, py: Python<'_>, subject: &Subject, call: Call) -> Verdict {
        py.detach(|| self.service.decide_blocking(subject, call))
    }

    /// Who makes a call to `tool`: the gate's agent, with `workflow` and `session`
    /// unless the call names others.
    fn subject(
        &self,
        tool: &str,
        workflow: Option<String>,
        session: Option<String>,
    ) -> Arc<Subject> {
        let server = tool.split_once('.').map(|(s, _)| s);
        let default = workflow.is_none() && session.is_none();
        if default {
            let last = match self.last_subject.lock() {
                Ok(l) => l.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            if let Some(s) = last.filter(|s| s.server.as_deref() == server) {
                return s;
            }
        }
        let subject = Arc::new(Subject {
            agent: self.agent.clone(),
            workflow: workflow.or_else(|| self.workflow.clone()),
            session: session.unwrap_or_else(|| self.session.clone()),
            server: server.map(str::to_string),
            // In-process: the runtime that loaded the library is the agent.
            auth: None,
        });
        if default {
            match self.last_subject.lock() {
                Ok(mut l) => *l = Some(Arc::clone(&subject)),
                Err(poisoned) => *poisoned.into_inner() = Some(Arc::clone(&subject)),
            }
        }
        subject
    }
}

/// Nanoseconds since `start`.
fn nanos(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// `{"host": "ip" | ["ip", …]}` as `--resolve` values (`host=ip,ip`).
fn resolve_entries(d: &Bound<'_, PyDict>) -> PyResult<Vec<String>> {
    let mut out = Vec::new();
    for (k, v) in d.iter() {
        let host: String = k
            .extract()
            .map_err(|_| ConfigError::new_err("`resolve` keys must be host names (str)"))?;
        let addrs: Vec<String> = if let Ok(one) = v.extract::<String>() {
            vec![one]
        } else {
            v.extract().map_err(|_| {
                ConfigError::new_err(format!(
                    "`resolve[{}]` must be an address or a list of addresses",
                    conductor_types::display::shown(&host, 120)
                ))
            })?
        };
        out.push(format!("{host}={}", addrs.join(",")));
    }
    Ok(out)
}

/// The service for a policy file and an audit store, as the hook builds it.
fn build(
    policy: &std::path::Path,
    audit: Option<PathBuf>,
    fixed: &[String],
    no_dns: bool,
) -> PyResult<(Service, PathBuf)> {
    let config = ResolverConfig::from_args(fixed, no_dns)
        .map_err(|e| ConfigError::new_err(format!("invalid `resolve`: {e}")))?;
    let resolver = conductor_gate::GateResolver::new(config);
    let policy = conductor_policy::load_file(policy).map_err(|e| {
        ConfigError::new_err(format!(
            "invalid policy `{}`: {e}",
            conductor_types::display::shown(&policy.display().to_string(), 200)
        ))
    })?;
    let key =
        conductor_gate::load_fingerprint_key().map_err(|e| ConfigError::new_err(e.to_string()))?;
    let audit_path = audit
        .or_else(conductor_audit::default_path)
        .ok_or_else(|| {
            ConfigError::new_err(
                "no audit store: name one with `audit=` (or set `XDG_DATA_HOME` or `HOME`)",
            )
        })?;
    let store = AuditStore::open(&audit_path, AuditOptions::default())
        .map_err(|e| StoreError::new_err(format!("the audit store cannot be opened: {e}")))?;
    let sessions = SqliteStore::open(&audit_path)
        .map_err(|e| StoreError::new_err(format!("the session labels cannot be kept: {e}")))?;
    let service = Service::new(
        policy,
        resolver,
        Arc::new(key),
        Arc::new(store),
        Arc::new(sessions),
        ServiceOptions::default(),
    );
    Ok((service, audit_path))
}

/// The module `conductor._conductor`.
#[pymodule]
fn _conductor(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Gate>()?;
    m.add_class::<Decision>()?;
    m.add_class::<Reason>()?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("StoreError", py.get_type::<StoreError>())?;
    m.add("EVENT", EVENT)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
