"""Dead-letter records: what every stage emits for an input it could not process.

One record per failed input: the stage (``call``, ``write``…), the sink, the
error's type and a short message, a traceback where it tells something new, and
the input itself as JSON, so a record can be read by a person and replayed by a
program. Records stay small: a stage gives a traceback to the first record of a
failure only (one per failing call or batch, and not again in the same bundle for
a failure raised at the same place), messages are cut at ``MAX_ERROR_CHARS`` and
tracebacks at ``MAX_TRACEBACK_CHARS`` (their end, where the error was raised, kept).
"""
from __future__ import annotations

import base64
import json
import traceback
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Dict, Optional, Set, Tuple
from uuid import UUID

DEAD_LETTERS = "dead_letters"

MAX_ERROR_CHARS = 1000
MAX_TRACEBACK_CHARS = 4000
# Failure places a bundle remembers having given a traceback (bounded: a sink failing in
# ever new places still gets one per call, never an unbounded set).
_MAX_REMEMBERED = 256

_NO_KEY = object()


def to_json(value: Any) -> str:
    """JSON for dead-letter records: dates as ISO-8601, tables (``to_pylist()``) as rows, bytes as base64."""
    text = json.dumps(value, default=_json_default, ensure_ascii=False, sort_keys=True)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (half a UTF-16 pair, from a JSON "\\ud800") cannot be written as UTF-8:
        # kept as JSON's own escape, it reads back as the same string.
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if callable(getattr(value, "to_pylist", None)):  # the sinks' DataFrame, a pyarrow Table
        return value.to_pylist()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (Decimal, timedelta, UUID)):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)


def shortened(text: str, limit: int, keep_end: bool = False) -> str:
    """``text`` cut to about ``limit`` characters (its start, or its end), saying how many were left out."""
    if len(text) <= limit:
        return text
    left_out = f" … ({len(text) - limit:,} characters left out) … "
    return left_out + text[-limit:] if keep_end else text[:limit] + left_out


def traceback_text(error: BaseException) -> str:
    """The error's traceback (with its causes), its end kept when it is long."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    if len(text) <= MAX_TRACEBACK_CHARS:
        return text
    first, rest = text.split("\n", 1)
    return first + "\n" + shortened(rest, MAX_TRACEBACK_CHARS - len(first), keep_end=True)


def dead_letter(stage: str, sink: Optional[str], error: BaseException, update: Any,
                reason: Optional[str] = None, with_traceback: bool = False, key: Any = _NO_KEY) -> Dict[str, Any]:
    """One dead-letter record: where it failed, why (``reason``, else the error's message, cut
    at ``MAX_ERROR_CHARS``), and the input that failed (and its entity's ``key`` when given);
    the traceback is None unless ``with_traceback``."""
    record = {
        "stage": stage,
        "sink": sink,
        "error_type": type(error).__name__,
        "error": shortened(str(error) if reason is None else reason, MAX_ERROR_CHARS),
        "traceback": traceback_text(error) if with_traceback else None,
        "input": to_json(update),
    }
    if key is not _NO_KEY:
        record["key"] = to_json(key)
    return record


class FirstTracebacks:
    """Which failures of a bundle have had their traceback: one raised at the same place
    (error type, file, line) as an earlier one would only repeat it."""

    def __init__(self) -> None:
        self._seen: Set[Tuple[Any, ...]] = set()

    def is_new(self, error: BaseException) -> bool:
        frames = traceback.extract_tb(error.__traceback__)
        place: Tuple[Any, ...] = (type(error).__qualname__,) + (
            (frames[-1].filename, frames[-1].lineno) if frames else ())
        if place in self._seen:
            return False
        if len(self._seen) < _MAX_REMEMBERED:
            self._seen.add(place)
        return True
