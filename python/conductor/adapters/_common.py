"""What the adapters share: strict JSON for arguments that arrive as text."""

from __future__ import annotations

import json
from typing import Any, Optional, Tuple


class _Unreadable(ValueError):
    pass


def _pairs(pairs: list) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            # INVARIANT: a reader that keeps the first member and one that keeps the last
            # would see different calls; the member's name is not shown (it may be data).
            raise _Unreadable("a member name appears twice in the arguments")
        out[k] = v
    return out


def _constant(name: str) -> Any:
    raise _Unreadable(f"the arguments hold `{name}`, which is not JSON")


def strict_json(text: str) -> Tuple[Optional[Any], Optional[str]]:
    """Parse tool arguments sent as JSON text the way the framework will (``json.loads``)
    but refusing what other readers would read differently: duplicate member names,
    ``NaN``/``Infinity``. Returns ``(value, None)`` or ``(None, problem)``; the problem
    names no part of the text (it may hold secrets).
    """
    if not text:
        return {}, None
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant), None
    except _Unreadable as e:
        return None, str(e)
    except json.JSONDecodeError as e:
        return None, f"the arguments are not valid JSON (line {e.lineno} column {e.colno})"
    except (ValueError, RecursionError):
        return None, "the arguments are not valid JSON"
