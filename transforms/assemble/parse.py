"""Feature updates, checked and coerced: ``{"user.uuid": "u1", "user.full_name": "Ann"}``.

An update names features of one namespace by fully qualified name. It is
accepted when the namespace and every feature are known, the primary key is
present and every value can be coerced to its feature's declared type; it then
becomes a :class:`ParsedUpdate`. Anything else raises :class:`BadUpdate`, whose
message says which feature and why, for the dead-letter output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

from sinks.features import info
from transforms.assemble.plan import ClassSchema, schema_of

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class BadUpdate(ValueError):
    """A feature update that cannot be used; the message says why."""


@dataclass(frozen=True)
class ParsedUpdate:
    namespace: str
    key: Any
    time: int                       # event time, microseconds since the epoch
    values: Dict[str, Any]          # attribute name → coerced value


def to_micros(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


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


def _moment(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    else:
        raise TypeError("expected an ISO-8601 timestamp")
    # A timestamp without zone is taken as UTC, like Beam's own timestamps.
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


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


_COERCIONS: Dict[Any, Callable[[Any], Any]] = {
    str: _text, int: _integer, float: _number, bool: _boolean,
    datetime: _moment, date: _day, Decimal: _decimal, bytes: _bytes,
}


class UpdateParser:
    """Checks and coerces updates for a set of feature classes (picklable: plain schemas)."""

    def __init__(self, schemas: Mapping[str, ClassSchema]) -> None:
        self.schemas = dict(schemas)
        self._fields = {
            namespace: {attr: (_COERCIONS.get(kind), optional) for attr, kind, optional in schema.types}
            for namespace, schema in self.schemas.items()}

    def parse(self, update: Any, element_time: int) -> ParsedUpdate:
        """The checked update; ``element_time`` (µs) is its time when its class has no FeatureTime value."""
        if not isinstance(update, Mapping):
            raise BadUpdate(f"a feature update is a mapping of feature names to values, not {type(update).__name__}")
        if not update:
            raise BadUpdate("empty update: it names no feature")
        namespace = self._namespace(update)
        schema, fields = self.schemas[namespace], self._fields[namespace]
        values = {}
        for name, value in update.items():
            attr = name[len(namespace) + 1:]
            if attr not in fields:
                if attr in schema.relations:
                    raise BadUpdate(f"'{name}' is a relation; send its rows as updates of their own class")
                raise BadUpdate(f"unknown feature '{name}': {schema.name} has "
                                f"{', '.join(namespace + '.' + a for a in fields)}")
            values[attr] = self._coerce(name, value, *fields[attr])
        key = values.get(schema.primary)
        if key is None:
            raise BadUpdate(f"missing primary key '{namespace}.{schema.primary}'")
        moment = values.get(schema.time) if schema.time else None
        time = to_micros(moment) if moment is not None else element_time
        return ParsedUpdate(namespace, key, time, values)

    def _namespace(self, update: Mapping) -> str:
        namespaces = set()
        for name in update:
            if not isinstance(name, str) or "." not in name:
                raise BadUpdate(f"feature name {name!r} is not 'namespace.feature'")
            namespaces.add(name.split(".", 1)[0])
        if len(namespaces) > 1:
            raise BadUpdate(f"an update names one namespace; this one names {', '.join(sorted(namespaces))}")
        (namespace,) = namespaces
        if namespace not in self.schemas:
            raise BadUpdate(f"unknown namespace '{namespace}' (known: {', '.join(sorted(self.schemas))})")
        return namespace

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
