"""PostgreSQL ``COPY ... FROM STDIN`` text format: rows of Python values to one buffer.

Each column's values are bound by the column type's own bind processor (JSON
to text, Enum to its name…) then written in COPY's text format: ``\\N`` for
NULL, backslash escapes for backslash, tab, newline and carriage return,
``\\x``-hex for bytes, ISO-8601 for dates and times (with their offset), and
``{...}`` literals for arrays. Work is done a column at a time, because most
columns need no escaping at all and that is cheap to prove for a whole column.
"""
from __future__ import annotations

import enum
import json
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from itertools import repeat
from typing import Any, Callable, List, Optional, Sequence
from uuid import UUID

from sqlalchemy import Column, types
from sqlalchemy.engine import Dialect

from transforms.sql.table import Row

NULL = "\\N"
_SPECIAL = ("\\", "\t", "\n", "\r")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _array_element(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (list, tuple)):
        return _array(value)
    text = _text(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _array(values: Sequence[Any]) -> str:
    return "{" + ",".join(_array_element(v) for v in values) + "}"


def _text(value: Any) -> str:
    """A non-NULL value as PostgreSQL reads it, before COPY escaping."""
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "t" if value else "f"
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, timedelta):
        return f"{value.days} days {value.seconds} seconds {value.microseconds} microseconds"
    if isinstance(value, (list, tuple)):
        return _array(value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (Decimal, UUID, int, float, str)):
        return str(value)
    raise TypeError(f"cannot write a {kind.__name__} value to PostgreSQL")


def _field(value: Any) -> str:
    return NULL if value is None else _escape(_text(value))


class CopyFormatter:
    """Formats rows of some columns of a table as one COPY text buffer."""

    def __init__(self, columns: Sequence[Column], dialect: Dialect) -> None:
        self.keys = [c.key for c in columns]
        # Bytes are written by _text: the driver's bind processor would wrap them for psycopg2.
        self._binds: List[Optional[Callable[[Any], Any]]] = [
            None if isinstance(c.type, types._Binary) else c.type.dialect_impl(dialect).bind_processor(dialect)
            for c in columns]

    def format(self, rows: Sequence[Row]) -> str:
        if not rows:
            return ""
        fields = []
        for key, bind in zip(self.keys, self._binds):
            values = list(map(dict.get, rows, repeat(key)))
            if bind is not None:
                values = [None if v is None else bind(v) for v in values]
            fields.append(_column(values))
        return "\n".join(map("\t".join, zip(*fields))) + "\n"


def _column(values: List[Any]) -> List[str]:
    """One column's fields, taking a shortcut when every value has one plain type."""
    kinds = set(map(type, values))
    if len(kinds) == 1:
        first = kinds.pop()
        if first is str:
            joined = "".join(values)
            if any(special in joined for special in _SPECIAL):
                return [_escape(v) for v in values]
            return values
        if first is int or first is float:  # PostgreSQL reads repr(float) as is, inf and nan included
            return list(map(repr, values))
        if first is datetime:  # ISO-8601 holds no character that COPY escapes
            return list(map(datetime.isoformat, values))
    return [_field(v) for v in values]
