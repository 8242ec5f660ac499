"""Dead-letter records: what every stage emits for an input it could not process.

One record per failed input: the stage (``call``, ``write``…), the sink, the
error's type and message, its traceback (left out where one traceback would
only repeat another's), and the input itself as JSON, so a record can be read
by a person and replayed by a program.
"""
from __future__ import annotations

import base64
import json
import traceback
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Dict, Optional
from uuid import UUID

DEAD_LETTERS = "dead_letters"


def to_json(value: Any) -> str:
    """JSON for dead-letter records: dates as ISO-8601, tables (``to_pylist()``) as rows, bytes as base64."""
    return json.dumps(value, default=_json_default, ensure_ascii=False, sort_keys=True)


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


def dead_letter(stage: str, sink: Optional[str], error: BaseException, update: Any,
                reason: Optional[str] = None, with_traceback: bool = True) -> Dict[str, Any]:
    """One dead-letter record: where it failed, why (``reason``, else the error's message), and
    the input that failed; the traceback is None unless ``with_traceback``."""
    return {
        "stage": stage,
        "sink": sink,
        "error_type": type(error).__name__,
        "error": str(error) if reason is None else reason,
        "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__))
        if with_traceback else None,
        "input": to_json(update),
    }
