"""Values checked against a feature's declared type: filter literals, defaults and limits at
decoration, and struct, list and set values where updates are parsed.

Two strengths of check, one per use:

- :func:`literal_error` is strict: a literal written in a definitions file must already have the
  feature's type (``Transfer.amount > "10"`` is a mistake, found at decoration, not a crash in the
  job when pyarrow compares a float column with a string).
- :func:`coercer` builds the function that turns a JSON value into the declared type of a struct
  (``dataclass``), ``list[T]``, ``set[T]`` or ``tuple[T, ...]`` feature, checking every element
  as a scalar of type ``T`` is checked; it raises ``TypeError``/``ValueError`` saying why. The
  update parser calls it for the types it has no scalar coercion for.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import enum
import math
import types
import typing
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Dict, Optional, Tuple, Union

Coerce = Callable[[Any], Any]

_LIST_ORIGINS = (list, collections.abc.Sequence, collections.abc.MutableSequence)
_SET_ORIGINS = (set, frozenset, collections.abc.Set, collections.abc.MutableSet)


def literal_error(annotation: Any, value: Any) -> Optional[str]:
    """Why ``value`` cannot stand for a value of type ``annotation``; None when it can."""
    kind, optional = _strip_optional(annotation)
    if value is None:
        return None if optional else "is None, but the feature is not Optional (write == None to test for null)"
    accepted = _accepts(kind, value)
    if accepted:
        return None
    return f"{value!r} is {_article(type(value).__name__)}, not {type_name(kind)}"


def _accepts(kind: Any, value: Any) -> bool:
    if kind is Any or kind is None:
        return True
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, int)
    if kind is float:
        return isinstance(value, (int, float))
    if kind is Decimal:
        return isinstance(value, (int, float, Decimal))
    if kind is date:
        return isinstance(value, date) and not isinstance(value, datetime)
    if kind in (str, bytes, datetime, time, timedelta):
        return isinstance(value, kind)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return isinstance(value, kind) or value in {member.value for member in kind}
    coerce = coercer(kind)
    if coerce is None:
        return True   # a type with no check of its own is taken as declared
    try:
        coerce(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def coercer(annotation: Any) -> Optional[Coerce]:
    """The function that checks and converts a JSON value to ``annotation``, for struct, list,
    set and tuple types (elements checked recursively); None for scalar and unknown types.

    A struct's value stays a ``dict`` of its fields (the shape pyarrow and the state stage hold),
    with each field checked; lists stay lists, sets become sets. The functions are plain objects,
    so a parser holding them pickles with the standard pickler."""
    kind, _ = _strip_optional(annotation)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in _LIST_ORIGINS or kind is list:
        return SequenceOf(Element(args[0] if args else Any), as_set=False)
    if origin in _SET_ORIGINS or kind in (set, frozenset):
        return SequenceOf(Element(args[0] if args else Any), as_set=True)
    if origin is tuple or kind is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return SequenceOf(Element(args[0]), as_set=False)
        return TupleOf(tuple(Element(a) for a in args))
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return StructOf(kind)
    return None


class Element:
    """One value of a declared type inside a container: null only where the type is Optional."""

    def __init__(self, annotation: Any) -> None:
        self.kind, self.optional = _strip_optional(annotation)
        self.inner = coercer(self.kind) or scalar_coercer(self.kind)

    def __call__(self, value: Any) -> Any:
        if value is None:
            if self.optional or self.kind is Any:
                return None
            raise TypeError(f"null where {type_name(self.kind)} is required")
        return self.inner(value)


class SequenceOf:
    """A JSON array of elements, as a list (or a set)."""

    def __init__(self, element: Coerce, as_set: bool) -> None:
        self.element, self.as_set = element, as_set

    def __call__(self, value: Any) -> Any:
        out = _items(value, self.element)
        return set(out) if self.as_set else out


class TupleOf:
    """A JSON array of a fixed number of elements, each of its own type (as a list)."""

    def __init__(self, elements: Tuple[Coerce, ...]) -> None:
        self.elements = elements

    def __call__(self, value: Any) -> list:
        items = _items(value, _identity)
        if len(items) != len(self.elements):
            raise ValueError(f"expected {len(self.elements)} items, got {len(items)}")
        return [coerce(item) for coerce, item in zip(self.elements, items)]


def _items(value: Any, element: Coerce) -> list:
    if isinstance(value, (str, bytes, collections.abc.Mapping)) or not isinstance(value, collections.abc.Iterable):
        raise TypeError(f"expected a list, not {type(value).__name__}")
    out = []
    for position, item in enumerate(value):
        try:
            out.append(element(item))
        except (TypeError, ValueError, OverflowError) as error:
            raise type(error)(f"item {position}: {error}") from None
    return out


class StructOf:
    """A JSON object with the fields of a dataclass, each checked, as a dict."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self._fields: Optional[Dict[str, Tuple[Coerce, bool]]] = None

    def fields(self) -> Dict[str, Tuple[Coerce, bool]]:
        """Each field's check and whether it is required; read on first use, as a struct may
        name classes defined after it."""
        if self._fields is None:
            hints = typing.get_type_hints(self.cls)
            self._fields = {
                f.name: (Element(hints.get(f.name, Any)),
                         f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
                for f in dataclasses.fields(self.cls)}
        return self._fields

    def __call__(self, value: Any) -> Dict[str, Any]:
        fields, name = self.fields(), self.cls.__name__
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if not isinstance(value, collections.abc.Mapping):
            raise TypeError(f"expected an object with the fields of {name}, not {type(value).__name__}")
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ValueError(f"{name} has no field(s) {', '.join(map(str, unknown))}")
        missing = sorted(field for field, (_, required) in fields.items() if required and field not in value)
        if missing:
            raise ValueError(f"{name} needs field(s) {', '.join(missing)}")
        out = {}
        for field, item in value.items():
            try:
                out[field] = fields[field][0](item)
            except (TypeError, ValueError, OverflowError) as error:
                raise type(error)(f"field '{field}': {error}") from None
        return out


def scalar_coercer(kind: Any) -> Coerce:
    """A JSON value to a scalar of type ``kind`` (inside structs and lists): the same rules as
    the update parser's top-level scalars, with timestamps kept as aware ``datetime``."""
    return SCALAR_COERCIONS.get(kind) or (_EnumValue(kind) if isinstance(kind, type) and issubclass(kind, enum.Enum)
                                  else _identity)


def _identity(value: Any) -> Any:
    return value


def text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise TypeError("expected a string")


def integer(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("expected an integer, not a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise TypeError("expected an integer")


def number(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("expected a number, not a bool")
    if isinstance(value, (int, float, Decimal)) or isinstance(value, str):
        result = float(value)
        if not math.isfinite(result):
            raise ValueError("not a finite number")
        return result
    raise TypeError("expected a number")


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise TypeError("expected true or false")


def read_timestamp(value: Any) -> datetime:
    """An ISO-8601 string (``Z`` for UTC allowed) or a datetime, as a datetime in its own zone, if any."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    raise TypeError("expected an ISO-8601 timestamp")


def timestamp(value: Any) -> datetime:
    """An ISO-8601 string or a datetime as an aware UTC datetime (one without zone is taken as UTC)."""
    stamp = read_timestamp(value)
    return stamp.replace(tzinfo=timezone.utc) if stamp.tzinfo is None else stamp.astimezone(timezone.utc)


def day(value: Any) -> date:
    if isinstance(value, datetime):
        raise TypeError("expected a date, not a timestamp")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value)
    raise TypeError("expected an ISO-8601 date")


def decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise TypeError("expected a decimal number")
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("not a decimal number") from None
    if not result.is_finite():
        raise ValueError("not a finite number")
    return result


def binary(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise TypeError("expected bytes")


class _EnumValue:
    """A member of an enum, or one of their values, as the value."""

    def __init__(self, kind: Any) -> None:
        self.kind = kind

    def __call__(self, value: Any) -> Any:
        return (value if isinstance(value, self.kind) else self.kind(value)).value


# The update parser's scalar rules (it holds timestamps as µs, and checks ranges, around these).
SCALAR_COERCIONS: Dict[Any, Coerce] = {
    str: text, int: integer, float: number, bool: boolean, datetime: timestamp, date: day,
    Decimal: decimal, bytes: binary,
}


def _strip_optional(annotation: Any) -> Tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = typing.get_args(annotation)
        if type(None) in args:
            rest = [a for a in args if a is not type(None)]
            return (rest[0] if len(rest) == 1 else Union[tuple(rest)]), True
    if origin is typing.Annotated:
        return _strip_optional(typing.get_args(annotation)[0])
    return annotation, False


def type_name(kind: Any) -> str:
    """A type as a person writes it: ``float``, ``list[int]``."""
    return kind.__name__ if isinstance(kind, type) and typing.get_origin(kind) is None else repr(kind)


def _article(name: str) -> str:
    return f"an {name}" if name[:1] in "aeiou" else f"a {name}"
