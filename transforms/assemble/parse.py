"""Feature updates, checked and coerced: ``{"user.uuid": "u1", "user.full_name": "Ann"}``.

An update names features of one namespace by fully qualified name. It is
accepted when the namespace and every feature are known, the primary key is
present and every value can be coerced to its feature's declared type; it then
becomes a :class:`ParsedUpdate`. Anything else raises :class:`BadUpdate`, whose
message says which feature and why, for the dead-letter output.

Timestamps (``datetime`` features) become integer microseconds since the epoch:
the state stage pickles an entity's rows at every group of its updates, and a
``datetime`` costs about three times an ``int`` to pickle. They become ``datetime`` again where a sink
receives them (``EntityStateFn``, ``RelatedRows.frame``).
"""
from __future__ import annotations

import math
from collections import abc
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Dict, Iterable, Mapping, NamedTuple, Optional, Tuple

from sinks.features import info
from transforms.assemble.plan import ClassSchema, schema_of

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
_EARLIEST_MICROS = (_EARLIEST - EPOCH) // timedelta(microseconds=1)


class BadUpdate(ValueError):
    """A feature update that cannot be used; the message says why."""


class ParsedUpdate(NamedTuple):
    namespace: str
    key: Any
    time: int                       # event time, microseconds since the epoch
    values: Dict[str, Any]          # attribute name → coerced value (timestamps in µs)


def to_micros(stamp: datetime) -> int:
    delta = stamp - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def moment(time: int) -> datetime:
    """Microseconds since the epoch as an aware datetime; the earliest one for anything earlier."""
    return _EARLIEST + timedelta(microseconds=max(time, _EARLIEST_MICROS) - _EARLIEST_MICROS)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise TypeError("expected a string")


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("expected an integer, not a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise TypeError("expected an integer")


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("expected a number, not a bool")
    if isinstance(value, (int, float, Decimal)) or isinstance(value, str):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError("not a finite number")
        return number
    raise TypeError("expected a number")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise TypeError("expected true or false")


def _micros(value: Any) -> int:
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, str):
        stamp = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    else:
        raise TypeError("expected an ISO-8601 timestamp")
    # A timestamp without zone is taken as UTC, like Beam's own timestamps.
    return to_micros(stamp.replace(tzinfo=timezone.utc) if stamp.tzinfo is None else stamp)


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        raise TypeError("expected a date, not a timestamp")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value)
    raise TypeError("expected an ISO-8601 date")


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise TypeError("expected a decimal number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("not a decimal number") from None
    if not number.is_finite():
        raise ValueError("not a finite number")
    return number


def _bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise TypeError("expected bytes")


# Types whose values pass as they are when they already have exactly that type.
_EXACT = (str, int, bool)

_COERCIONS: Dict[Any, Callable[[Any], Any]] = {
    str: _text, int: _integer, float: _number, bool: _boolean,
    datetime: _micros, date: _day, Decimal: _decimal, bytes: _bytes,
}


class UpdateParser:
    """Checks and coerces updates for a set of feature classes (picklable: plain schemas)."""

    def __init__(self, schemas: Mapping[str, ClassSchema]) -> None:
        self.schemas = dict(schemas)
        # Fully qualified name → (namespace, attribute, exact type, coercion, optional): a value
        # whose type is exactly the declared one (str, int, bool) passes without coercion.
        self._fields: Dict[str, Tuple[str, str, Any, Optional[Callable[[Any], Any]], bool]] = {
            f"{namespace}.{attr}": (namespace, attr, kind if kind in _EXACT else None,
                                    _COERCIONS.get(kind), optional)
            for namespace, schema in self.schemas.items() for attr, kind, optional in schema.types}

    def parse(self, update: Any, element_time: int) -> ParsedUpdate:
        """The checked update; ``element_time`` (µs) is its time when its class has no FeatureTime value."""
        if not isinstance(update, abc.Mapping):   # a third of the cost of typing.Mapping
            raise BadUpdate(f"a feature update is a mapping of feature names to values, not {type(update).__name__}")
        if not update:
            raise BadUpdate("empty update: it names no feature")
        fields = self._fields
        namespace = None
        values = {}
        for name, value in update.items():
            field = fields.get(name)
            if field is None or (namespace is not None and field[0] != namespace):
                raise self._misnamed(update, name)
            namespace, attr, exact, coerce, optional = field
            values[attr] = value if type(value) is exact else self._coerce(name, value, coerce, optional)
        assert namespace is not None   # the update names at least one feature
        schema = self.schemas[namespace]
        key = values.get(schema.primary)
        if key is None:
            raise BadUpdate(f"missing primary key '{namespace}.{schema.primary}'")
        time = values.get(schema.time) if schema.time else None
        return ParsedUpdate(namespace, key, time if time is not None else element_time, values)

    def _misnamed(self, update: Mapping, name: Any) -> BadUpdate:
        """Why ``name`` cannot be read: a bad name, a second namespace, an unknown namespace or feature."""
        namespaces = set()
        for each in update:
            if not isinstance(each, str) or "." not in each:
                return BadUpdate(f"feature name {each!r} is not 'namespace.feature'")
            namespaces.add(each.split(".", 1)[0])
        if len(namespaces) > 1:
            return BadUpdate(f"an update names one namespace; this one names {', '.join(sorted(namespaces))}")
        (namespace,) = namespaces
        schema = self.schemas.get(namespace)
        if schema is None:
            return BadUpdate(f"unknown namespace '{namespace}' (known: {', '.join(sorted(self.schemas))})")
        if name[len(namespace) + 1:] in schema.relations:
            return BadUpdate(f"'{name}' is a relation; send its rows as updates of their own class")
        return BadUpdate(f"unknown feature '{name}': {schema.name} has "
                         f"{', '.join(namespace + '.' + attr for attr, _, _ in schema.types)}")

    @staticmethod
    def _coerce(name: str, value: Any, coerce: Optional[Callable[[Any], Any]], optional: bool) -> Any:
        if value is None:
            if optional:
                return None
            raise BadUpdate(f"'{name}' is null but not Optional")
        if coerce is None:
            return value
        try:
            return coerce(value)
        except (TypeError, ValueError, OverflowError) as error:
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise BadUpdate(f"'{name}' = {shown}: {error}") from None


def schemas_of(roots: Iterable[type]) -> Dict[str, ClassSchema]:
    """Every feature class defined beside the given root classes, by namespace: updates of
    classes no sink reads are valid, merely unused."""
    return {namespace: schema_of(cls) for root in roots
            for namespace, cls in info(root).registry.feature_classes.items()}
