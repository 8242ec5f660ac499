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

from collections import abc
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Dict, Iterable, Mapping, NamedTuple, Optional, Tuple

from sinks.features import info
from sinks.options import Constraints
from sinks.values import binary, boolean, coercer, day, decimal, integer, number, read_timestamp, text
from transforms.assemble.plan import ClassSchema, schema_of

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
_EARLIEST_MICROS = (_EARLIEST - EPOCH) // timedelta(microseconds=1)


class BadUpdate(ValueError):
    """A feature update that cannot be used; the message says why."""


class ParsedUpdate(NamedTuple):
    namespace: str
    key: Any
    # Event time, µs since the epoch: the class's FeatureTime value; None when the update carries
    # none (it then applies in arrival order and moves no clock).
    time: Optional[int]
    values: Dict[str, Any]          # attribute name → coerced value (timestamps in µs)


# What every coder, pyarrow column and database type downstream can hold: 64-bit integers,
# decimals of at most 38 digits (pyarrow's decimal128), text that encodes as UTF-8, nesting
# the dead-letter writer's JSON encoder can recurse through.
INT_MIN, INT_MAX = -(2 ** 63), 2 ** 63 - 1
MAX_DECIMAL_DIGITS = 38
MAX_DEPTH = 64


def to_micros(stamp: datetime) -> int:
    delta = stamp - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def moment(time: int) -> datetime:
    """Microseconds since the epoch as an aware datetime; the earliest one for anything earlier."""
    return _EARLIEST + timedelta(microseconds=max(time, _EARLIEST_MICROS) - _EARLIEST_MICROS)


def _micros(value: Any) -> int:
    stamp = read_timestamp(value)
    # A timestamp without zone is taken as UTC, like Beam's own timestamps. One that is valid in
    # its own zone may still lie outside datetime's range in UTC (9999-12-31T23:59:59-01:00):
    # converting raises OverflowError here rather than where a sink receives it.
    if stamp.tzinfo is None:
        return to_micros(stamp.replace(tzinfo=timezone.utc))
    if stamp.year in (1, 9999):     # converting costs ~1 µs: only where the offset can overflow
        stamp = stamp.astimezone(timezone.utc)
    return to_micros(stamp)


def _decimal(value: Any) -> Decimal:
    number = decimal(value)
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)   # finite
    if max(len(digits) + max(exponent, 0), -exponent) > MAX_DECIMAL_DIGITS:
        raise OverflowError(f"out of range: decimals have at most {MAX_DECIMAL_DIGITS} digits")
    return number


def check_plain(value: Any, depth: int = 0) -> None:
    """Raises ValueError/OverflowError if ``value`` (a str, an int, or a list or mapping of values
    from JSON) holds something no coder, pyarrow column or database downstream can: an integer
    beyond 64 bits, a string with a lone surrogate, nesting deeper than ``MAX_DEPTH``."""
    kind = type(value)
    if kind is str:
        if not value.isascii() and not _encodes(value):
            raise ValueError("not valid text: it holds a lone surrogate")
    elif kind is int:
        if not INT_MIN <= value <= INT_MAX:
            raise OverflowError("out of range: integers are 64-bit")
    elif kind in (list, tuple, dict) or isinstance(value, (abc.Mapping, list, tuple, set, frozenset)):
        if depth >= MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, abc.Mapping):
            for item in value:
                check_plain(item, depth + 1)
            value = value.values()
        for item in value:
            check_plain(item, depth + 1)


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _InRange:
    """A coercion of :mod:`sinks.values` whose result is then checked to be in range (see
    :func:`check_plain`): a plain object, so the parser pickles."""

    def __init__(self, coerce: Callable[[Any], Any]) -> None:
        self.coerce = coerce

    def __call__(self, value: Any) -> Any:
        result = self.coerce(value)
        check_plain(result)
        return result


def _identity(value: Any) -> Any:
    return value


def coercion(kind: Any) -> Callable[[Any], Any]:
    """How the parser checks and converts a value of a feature of type ``kind``: the scalar rules
    of :mod:`sinks.values` (timestamps as µs), structs, lists and sets checked against their
    declared types (:func:`sinks.values.coercer`), any other type as it came; each in range."""
    scalar = _COERCIONS.get(kind)
    if scalar is not None:
        return scalar
    return _InRange(coercer(kind) or _identity)


# Types whose values pass as they are when they already have exactly that type (and, for str
# and int, are ASCII and within 64 bits: checked inline in ``parse``).
_EXACT = (str, int, bool)

_COERCIONS: Dict[Any, Callable[[Any], Any]] = {
    str: _InRange(text), int: _InRange(integer), float: number, bool: boolean,
    datetime: _micros, date: day, Decimal: _decimal, bytes: binary,
}


class UpdateParser:
    """Checks and coerces updates for a set of feature classes (picklable: plain schemas)."""

    def __init__(self, schemas: Mapping[str, ClassSchema]) -> None:
        self.schemas = dict(schemas)
        # Fully qualified name → (namespace, attribute, exact type, coercion, optional): a value
        # whose type is exactly the declared one (str, int, bool) passes without coercion.
        self._fields: Dict[str, Tuple[str, str, Any, Callable[[Any], Any], bool]] = {
            f"{namespace}.{attr}": (namespace, attr, kind if kind in _EXACT else None,
                                    coercion(kind), optional)
            for namespace, schema in self.schemas.items() for attr, kind, optional in schema.types}
        # Per namespace, the features with limits: (attr, Constraints, whether a timestamp).
        timestamps = {(namespace, attr) for namespace, schema in self.schemas.items()
                      for attr, kind, _ in schema.types if kind is datetime}
        self._limits: Dict[str, Tuple[Tuple[str, Constraints, bool], ...]] = {
            namespace: tuple((attr, limits, (namespace, attr) in timestamps) for attr, limits in schema.constraints)
            for namespace, schema in self.schemas.items() if schema.constraints}
        # Feature values accepted though they break their (not strict) limits, since the caller last read it.
        self.violations = 0

    def parse(self, update: Any, latest: Optional[int] = None) -> ParsedUpdate:
        """The checked update. ``latest`` (µs): the last FeatureTime accepted, the wall clock plus
        the allowed clock skew; a later one would move the stream's clock past every real row."""
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
            kind = type(value)
            if kind is exact and (kind is bool or (value.isascii() if kind is str else INT_MIN <= value <= INT_MAX)):
                values[attr] = value
            else:
                values[attr] = self._coerce(name, value, coerce, optional)
        assert namespace is not None   # the update names at least one feature
        schema = self.schemas[namespace]
        key = values.get(schema.primary)
        if key is None:
            raise BadUpdate(f"missing primary key '{namespace}.{schema.primary}'")
        if namespace in self._limits:
            self._check_limits(namespace, values)
        time = values.get(schema.time) if schema.time else None
        if time is not None and latest is not None and time > latest:
            raise BadUpdate(f"'{namespace}.{schema.time}' = {moment(time).isoformat()} is more than the allowed "
                            f"clock skew after the wall clock (accepted up to {moment(latest).isoformat()})")
        return ParsedUpdate(namespace, key, time, values)

    def _check_limits(self, namespace: str, values: Dict[str, Any]) -> None:
        """Refuses an update breaking a strict feature's limits (``feature(min=, strict=True)``);
        counts, in :attr:`violations`, the limits broken by the rest."""
        for attr, limits, is_moment in self._limits[namespace]:
            value = values.get(attr)
            if value is None:
                continue
            broken = limits.violations(moment(value) if is_moment else value)
            if not broken:
                continue
            if limits.strict:
                shown = ascii(value)
                shown = shown if len(shown) <= 80 else shown[:77] + "..."
                raise BadUpdate(f"'{namespace}.{attr}' = {shown}: {'; '.join(broken)} (strict)")
            self.violations += 1

    def _misnamed(self, update: Mapping, name: Any) -> BadUpdate:
        """Why ``name`` cannot be read: a bad name, a second namespace, an unknown namespace or feature."""
        namespaces = set()
        for each in update:
            if not isinstance(each, str) or "." not in each:
                return BadUpdate(f"feature name {ascii(each)} is not 'namespace.feature'")
            if not each.isascii() and not _encodes(each):
                return BadUpdate(f"feature name {ascii(each)} is not valid text: it holds a lone surrogate")
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
    def _coerce(name: str, value: Any, coerce: Callable[[Any], Any], optional: bool) -> Any:
        if value is None:
            if optional:
                return None
            raise BadUpdate(f"'{name}' is null but not Optional")
        try:
            return coerce(value)
        except (TypeError, ValueError, OverflowError) as error:
            shown = ascii(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise BadUpdate(f"'{name}' = {shown}: {error}") from None


def schemas_of(roots: Iterable[type]) -> Dict[str, ClassSchema]:
    """Every feature class defined beside the given root classes, by namespace: updates of
    classes no sink reads are valid, merely unused."""
    return {namespace: schema_of(cls) for root in roots
            for namespace, cls in info(root).registry.feature_classes.items()}
