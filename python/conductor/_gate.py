"""The Python face of the gate: `Gate`, the `guard` decorator and the refusals."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
from typing import Any, Callable, Mapping, Optional, Sequence, TypeVar, Union

from . import _conductor

F = TypeVar("F", bound=Callable[..., Any])

PathLike = Union[str, "os.PathLike[str]"]


class Denied(_conductor.Error):
    """The gate refused a call. ``decision`` is the `Decision`, ``reasons`` its reasons.

    ``str(error)`` is the text an agent (or a model) should read: every failing check
    with its rule and message.
    """

    def __init__(self, decision: _conductor.Decision) -> None:
        self.decision = decision
        self.reasons = list(decision.reasons)
        self.tool = decision.tool
        super().__init__(_refusal_text(decision))


class ApprovalRequired(Denied):
    """The policy says a person must approve this call first (decision ``approve``).

    A subclass of `Denied`: code that only knows refusals still refuses it.
    """


def _refusal_text(decision: _conductor.Decision) -> str:
    reasons = "; ".join(str(r) for r in decision.reasons) or "no reason given"
    if decision.effect == "approve":
        return f"conductor: `{decision.tool}` needs a person's approval: {reasons}"
    return f"conductor denied `{decision.tool}`: {reasons}"


def refusal(decision: _conductor.Decision) -> Denied:
    """The exception for a decision that does not allow its call."""
    if decision.effect == "approve":
        return ApprovalRequired(decision)
    return Denied(decision)


class Gate(_conductor.Gate):
    """The gate for one agent.

    ``Gate(policy="policy.yaml", agent="research-bot", audit="audit.db")`` loads and
    compiles the policy once and opens the audit store (which also keeps the agent's
    session labels, shared with every other process acting for the agent). Every
    `decide` goes through the same gate service as ``conductor wrap``/``serve``/``hook``
    and is committed to the audit store before it returns.

    - ``audit``: the SQLite audit file (default: ``conductor/audit.db`` in the user's
      data directory).
    - ``workflow``: the workflow calls belong to (a call may name another).
    - ``session``: the session id recorded with each decision (default: a random one).
    - ``resolve``: ``{"host": "ip" | ["ip", ...]}`` fixes what names resolve to (like
      ``--resolve``); ``no_dns=True`` makes every other name unresolvable.

    The fingerprint key is the installation's (``CONDUCTOR_FINGERPRINT_KEY_FILE`` or the
    data directory), as for the command line. Create the gate after ``fork()``, not
    before: the audit writer is a thread.

    ``decide``, ``label_result`` and ``labels`` are the extension's own methods (no
    Python frame between the caller and the gate: ``decide`` is called per tool call):

    - ``decide(tool, arguments=None, workflow=None, session=None, *, problem=None)``
      decides a call to ``tool`` (``<server>.<tool>``) with ``arguments`` (a dict) and
      returns a `Decision` (``.effect``, ``.allowed``, ``.reasons``, ``.audit_id``);
      it never raises for a refusal. Arguments that are not plain JSON data (exact
      ``dict``/``list``/``tuple``/``str``/``int``/``float``/``bool``/``None``) are a
      deny with check ``input``, and so is a call with a ``problem`` (a sentence saying
      what the caller could not read in it, e.g. unparseable JSON arguments). The GIL
      is released while deciding.
    - ``label_result(tool, result, workflow=None, session=None)`` scans what ``tool``
      returned and raises the agent's session labels (``flow`` then applies to its
      next calls); returns the labels found. Raises `StoreError` when the labels cannot
      be recorded: do not use the result.
    - ``labels(workflow=None)``: the agent's unexpired session labels.
    """

    __slots__ = ()

    def __new__(
        cls,
        policy: PathLike,
        agent: str,
        audit: Optional[PathLike] = None,
        *,
        workflow: Optional[str] = None,
        session: Optional[str] = None,
        resolve: Optional[Mapping[str, Union[str, Sequence[str]]]] = None,
        no_dns: bool = False,
    ) -> "Gate":
        return super().__new__(
            cls,
            os.fspath(policy),
            agent,
            None if audit is None else os.fspath(audit),
            workflow=workflow,
            session=session,
            resolve=None if resolve is None else dict(resolve),
            no_dns=no_dns,
        )

    # --- deciding -------------------------------------------------------------------

    def check(
        self,
        tool: str,
        arguments: Optional[Mapping[str, Any]] = None,
        workflow: Optional[str] = None,
        session: Optional[str] = None,
    ) -> _conductor.Decision:
        """`decide`, raising `Denied` (or `ApprovalRequired`) unless the call is allowed."""
        decision = self.decide(tool, arguments, workflow, session)
        if not decision.allowed:
            raise refusal(decision)
        return decision

    async def adecide(
        self,
        tool: str,
        arguments: Optional[Mapping[str, Any]] = None,
        workflow: Optional[str] = None,
        session: Optional[str] = None,
        *,
        problem: Optional[str] = None,
    ) -> _conductor.Decision:
        """`decide` on a worker thread, so a DNS lookup does not stall the event loop."""
        return await asyncio.to_thread(
            self.decide, tool, arguments, workflow, session, problem=problem
        )

    async def acheck(
        self,
        tool: str,
        arguments: Optional[Mapping[str, Any]] = None,
        workflow: Optional[str] = None,
        session: Optional[str] = None,
    ) -> _conductor.Decision:
        """`check` on a worker thread."""
        decision = await self.adecide(tool, arguments, workflow, session)
        if not decision.allowed:
            raise refusal(decision)
        return decision

    # --- wrapping functions ---------------------------------------------------------

    def guard(
        self,
        tool: str,
        *,
        workflow: Optional[str] = None,
        label: bool = True,
    ) -> Callable[[F], F]:
        """Decorate a function tool so that every call is decided first.

        The arguments the function receives (bound to its parameters, defaults
        included; ``**kwargs`` merged in) are what the gate decides. A call that is not
        allowed raises `Denied` (`ApprovalRequired` for ``approve``) and the function
        does not run. With ``label`` (the default) the function's result raises the
        session's labels before it is returned. Works on ``async def`` functions too.
        """

        def wrap(fn: F) -> F:
            signature = inspect.signature(fn)

            def arguments_of(args: tuple, kwargs: dict) -> dict:
                return bound_arguments(signature, args, kwargs)

            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def async_guarded(*args: Any, **kwargs: Any) -> Any:
                    await self.acheck(tool, arguments_of(args, kwargs), workflow)
                    result = await fn(*args, **kwargs)
                    if label:
                        await asyncio.to_thread(self.label_result, tool, result, workflow)
                    return result

                return async_guarded  # type: ignore[return-value]

            @functools.wraps(fn)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                self.check(tool, arguments_of(args, kwargs), workflow)
                result = fn(*args, **kwargs)
                if label:
                    self.label_result(tool, result, workflow)
                return result

            return guarded  # type: ignore[return-value]

        return wrap

    # --- what the gate is (the extension's getters; the audit file as a `str`) -------

    @property
    def audit_path(self) -> str:
        return os.fspath(_conductor.Gate.audit_path.__get__(self))


def bound_arguments(signature: inspect.Signature, args: tuple, kwargs: dict) -> dict:
    """The arguments a call binds, by parameter name, defaults included.

    ``*args`` stays a list under its name; ``**kwargs`` members are merged into the
    top level (they cannot collide with parameter names); a method's ``self``/``cls``
    is left out. A call that does not bind
    raises `TypeError` before anything is decided, as calling the function would.
    """
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    out: dict = {}
    params = list(signature.parameters)
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if name in ("self", "cls") and params and params[0] == name:
            # A method's receiver is not an argument of the tool call.
            continue
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            out[name] = list(value)
        else:
            out[name] = value
    return out
