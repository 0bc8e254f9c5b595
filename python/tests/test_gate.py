"""`Gate.decide`, `label_result` and the decision object, against the example policy."""

from __future__ import annotations

import threading

import pytest

import conductor
from conftest import POLICY, records


def test_allowed_call_is_allowed_and_recorded(make_gate, audit):
    gate = make_gate("research-bot")
    d = gate.decide("fetch.fetch", {"url": "https://en.wikipedia.org/wiki/Model_Context_Protocol"})
    assert d.effect == "allow"
    assert d.allowed and bool(d)
    assert d.reasons == []
    assert d.audit_id is not None
    [r] = records(audit)
    assert r["seq"] == d.audit_id
    assert r["decision"] == "allow"
    assert r["event"] == "library"
    assert r["agent"] == "research-bot"
    assert r["tool"] == "fetch.fetch"
    assert r["server"] == "fetch"
    assert r["session"] == gate.session
    assert r["policy"] == d.policy == gate.policy_sha256


def test_metadata_decimal_ip_is_denied_with_every_reason(make_gate):
    # The README's motivating attack: 2852039166 is 169.254.169.254.
    gate = make_gate("research-bot")
    d = gate.decide("fetch.fetch", {"url": "http://2852039166/latest/meta-data/"})
    assert d.effect == "deny" and not d.allowed
    rules = [(r.check, r.rule) for r in d.reasons]
    assert ("destination", "destinations.blocked.cloud-metadata") in rules
    assert ("destination", "destinations.allow") in rules
    assert d.destinations[0]["host"] == "169.254.169.254"
    assert "cloud-metadata" in d.destinations[0]["classes"]


def test_unknown_agent_is_denied_by_identity(make_gate):
    d = make_gate("mallory-bot").decide("search.web", {"q": "x"})
    assert d.effect == "deny"
    assert [r.check for r in d.reasons] == ["identity"]


def test_approve_is_not_allowed(make_gate):
    d = make_gate("deploy-bot").decide(
        "github.merge_pull_request", {"repo": "acme/widgets", "pull_number": 42}
    )
    assert d.effect == "approve"
    assert not d.allowed
    assert d.reasons[0].rule.startswith("roles.operator.approve")


def test_secret_is_denied_and_never_recorded(make_gate, audit):
    secret = "Tq8v0hR3mW1nZ5pK7xJ2cL9bF4dG6sY0eU3iO8aQ"
    args = {"title": "creds", "body": f"aws_access_key_id=AKIA2OGYBAH6TQKRXEVN aws_secret_access_key={secret}"}
    d = make_gate("research-bot").decide("notes.create", args)
    assert d.effect == "deny"
    assert any(r.check == "data" for r in d.reasons)
    assert d.findings and all("fingerprint" in f for f in d.findings)
    assert secret not in d.to_json()
    [r] = records(audit)
    import json

    assert secret not in json.dumps(r)
    assert "AKIA2OGYBAH6TQKRXEVN" not in json.dumps(r)


def test_workflow_default_and_override(make_gate):
    gate = make_gate("research-bot", workflow="market-research")
    url = {"url": "https://en.wikipedia.org/wiki/Model_Context_Protocol"}
    assert gate.decide("fetch.fetch", url).effect == "allow"
    d = gate.decide("fetch.fetch", url, workflow="release")
    assert d.effect == "deny" and {r.check for r in d.reasons} == {"workflow"}


@pytest.mark.parametrize(
    "arguments, what",
    [
        # Two keys JSON would write as one member `1`: the tool sees both, a reader
        # of the JSON only one (first-wins or last-wins).
        ({1: "a", "1": "b"}, "dict key of type `int`"),
        ({"n": 2**70}, "64-bit"),
        ({"x": float("nan")}, "not finite"),
        ({"x": float("inf")}, "not finite"),
        ({"s": "\ud800"}, "not valid Unicode"),
        ({"\udc00": "v"}, "not valid Unicode"),
        ({"o": object()}, "`object`"),
        ({"b": b"bytes"}, "`bytes`"),
        ({"set": {1, 2}}, "`set`"),
    ],
)
def test_arguments_the_tool_would_read_differently_are_refused(make_gate, audit, arguments, what):
    d = make_gate("research-bot").decide("search.web", arguments)
    assert d.effect == "deny"
    [reason] = [r for r in d.reasons if r.check == "input"]
    assert reason.rule == "request.arguments"
    assert what in reason.message
    # Refused calls are recorded too.
    assert records(audit)[-1]["decision"] == "deny"


def test_subclasses_of_builtins_are_refused(make_gate):
    # A str subclass can show the tool other text than the gate read (__str__,
    # __format__, __eq__); only the exact built-in types are decided.
    class Sneaky(str):
        def __str__(self):
            return "http://169.254.169.254/"

    class MyDict(dict):
        pass

    g = make_gate("research-bot")
    assert g.decide("search.web", {"q": Sneaky("harmless")}).effect == "deny"
    assert g.decide("search.web", MyDict(q="x")).effect == "deny"
    assert g.decide("search.web", [("q", "x")]).effect == "deny"


def test_deep_nesting_is_refused_not_crashed(make_gate):
    v: object = "x"
    for _ in range(200):
        v = [v]
    d = make_gate("research-bot").decide("search.web", {"q": v})
    assert d.effect == "deny"
    assert any("nested deeper" in r.message for r in d.reasons)


def test_problem_from_the_caller_denies(make_gate):
    d = make_gate("research-bot").decide("search.web", {"q": "x"}, problem="the arguments are not valid JSON")
    assert d.effect == "deny"
    assert any(r.check == "input" and "not valid JSON" in r.message for r in d.reasons)


def test_flow_after_label_result(make_gate):
    gate = make_gate("research-bot")
    page = {"url": "https://en.wikipedia.org/wiki/Acme_Corporation"}
    assert gate.decide("fetch.fetch", page).allowed
    assert gate.labels() == []
    found = gate.label_result("notes.read", "Customer contact: jane.doe@example.com")
    assert found == ["personal"]
    assert gate.labels() == ["personal"]
    d = gate.decide("fetch.fetch", page)
    assert d.effect == "deny"
    assert [r.check for r in d.reasons] == ["flow"]
    # Our own notes service may still receive confidential data.
    assert gate.decide("notes.create", {"title": "t", "body": "summary"}).allowed


def test_labels_belong_to_the_agent_across_gates(make_gate, audit):
    # Taint belongs to the agent: a second gate (another process, in real life) on
    # the same store sees the labels the first one raised.
    first = make_gate("research-bot")
    first.label_result("notes.read", {"content": [{"type": "text", "text": "Reply to jane.doe@example.com"}]})
    second = make_gate("research-bot")
    assert second.labels() == ["personal"]
    d = second.decide("fetch.fetch", {"url": "https://en.wikipedia.org/wiki/X"})
    assert [r.check for r in d.reasons] == ["flow"]


def test_label_result_reads_objects_it_cannot_convert(make_gate):
    class Message:
        def __str__(self):
            return "reply from jane.doe@example.com"

    gate = make_gate("research-bot")
    assert gate.label_result("notes.read", [Message()]) == ["personal"]


def test_invalid_policy_raises_config_error(tmp_path):
    bad = tmp_path / "policy.yaml"
    bad.write_text("version: 1\nagents:\n  a: {roles: [nope], colour: red}\n")
    with pytest.raises(conductor.ConfigError) as e:
        conductor.Gate(policy=bad, agent="a", audit=tmp_path / "a.db")
    assert "policy.yaml" in str(e.value)


def test_missing_policy_raises_config_error(tmp_path):
    with pytest.raises(conductor.ConfigError):
        conductor.Gate(policy=tmp_path / "nope.yaml", agent="a", audit=tmp_path / "a.db")


def test_unusable_audit_store_raises_store_error(tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    with pytest.raises(conductor.StoreError):
        conductor.Gate(policy=POLICY, agent="research-bot", audit=d)


def test_bad_resolve_entry_raises_config_error(tmp_path):
    with pytest.raises(conductor.ConfigError):
        conductor.Gate(policy=POLICY, agent="research-bot", audit=tmp_path / "a.db",
                       resolve={"en.wikipedia.org": "not-an-ip"})


def test_audit_write_failure_denies(make_gate, audit, tmp_path):
    # A decision that cannot be recorded is a deny (check `audit`), never an allow.
    gate = make_gate("research-bot")
    assert gate.decide("search.web", {"q": "x"}).allowed
    audit.rename(tmp_path / "moved.db")
    d = gate.decide("search.web", {"q": "x"})
    assert not d.allowed
    assert any(r.check == "audit" for r in d.reasons)
    assert d.audit_id is None


def test_decide_from_many_threads(make_gate, audit):
    gate = make_gate("research-bot")
    ids: list[int] = []
    lock = threading.Lock()

    def work():
        for _ in range(50):
            d = gate.decide("search.web", {"q": "rust"})
            assert d.allowed
            with lock:
                ids.append(d.audit_id)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 200 and len(set(ids)) == 200
    assert len(records(audit)) == 200


def test_each_record_names_its_own_server_session_and_workflow(make_gate, audit):
    # The gate reuses the subject of its last call to the same server (when the call
    # names no other workflow or session): a call to another server, or one that names
    # its own session or workflow, must still be recorded as itself, and the next
    # default call as the gate's again.
    gate = make_gate("research-bot", workflow="market-research")
    calls = [
        ("search.web", {}),
        ("fetch.fetch", {}),
        ("search.web", {"session": "other-session"}),
        ("search.web", {"workflow": "release"}),
        ("search.web", {}),
        ("nosuchserver", {}),
        ("search.web", {}),
    ]
    for tool, kw in calls:
        gate.decide(tool, {"q": "x"}, **kw)
    got = [(r["tool"], r.get("server"), r["session"], r.get("workflow")) for r in records(audit)]
    mine, wf = gate.session, "market-research"
    assert got == [
        ("search.web", "search", mine, wf),
        ("fetch.fetch", "fetch", mine, wf),
        ("search.web", "search", "other-session", wf),
        ("search.web", "search", mine, "release"),
        ("search.web", "search", mine, wf),
        ("nosuchserver", None, mine, wf),
        ("search.web", "search", mine, wf),
    ]


def test_decide_is_the_extension_method_with_problem_keyword_only(make_gate):
    # `Gate.decide` runs per tool call: it is the extension's method itself, with no
    # Python frame around it (crates/python/BENCHMARKS.md), and `problem` can only
    # be named, never passed by position by mistake.
    gate = make_gate("research-bot")
    assert type(gate).decide is conductor._conductor.Gate.decide
    with pytest.raises(TypeError):
        gate.decide("search.web", {"q": "x"}, None, None, "a problem")
    tool = "search.web"
    assert gate.decide(tool, {"q": "x"}).tool is tool
