"""Filter expressions over related rows: ``Transfer.status == "ok"``, ``after(days_ago=60)``."""
from __future__ import annotations

import operator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

import pyarrow.compute as pc

from sinks.errors import DefinitionError

if TYPE_CHECKING:
    from sinks.features import Ref

# Resolves a feature reference to the column that holds it in a DataFrame;
# ``None`` stands for the frame's FeatureTime column (time windows without ``index=``).
ColumnOf = Callable[[Optional["Ref"]], str]

_OPERATORS = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
_WINDOW_UNITS = {
    "weeks_ago": "weeks", "days_ago": "days", "hours_ago": "hours", "minutes_ago": "minutes",
    "seconds_ago": "seconds", "milliseconds_ago": "milliseconds", "microseconds_ago": "microseconds",
}


class Filter:
    """A boolean expression over the rows of a related feature class.

    Combine with ``&`` (and), ``|`` (or) and ``~`` (not); a comma inside a
    subscript means "and".
    """

    def __and__(self, other: "Filter") -> "Filter":
        return And(self, _as_filter(other))

    def __or__(self, other: "Filter") -> "Filter":
        return Or(self, _as_filter(other))

    def __invert__(self) -> "Filter":
        return Not(self)

    def refs(self) -> Iterable["Ref"]:
        """Every feature reference the expression reads."""
        raise NotImplementedError

    def expression(self, column_of: ColumnOf, now: datetime) -> pc.Expression:
        """The expression as a pyarrow compute expression, with time windows ending at ``now``."""
        raise NotImplementedError


class Comparison(Filter):
    """``ref <op> value``, where value is a literal or another feature reference."""

    def __init__(self, ref: "Ref", op: str, value: Any) -> None:
        self.ref, self.op, self.value = ref, op, value

    def refs(self) -> Iterable["Ref"]:
        from sinks.features import Ref
        yield self.ref
        if isinstance(self.value, Ref):
            yield self.value

    def expression(self, column_of: ColumnOf, now: datetime) -> pc.Expression:
        from sinks.features import Ref
        right = pc.field(column_of(self.value)) if isinstance(self.value, Ref) else pc.scalar(self.value)
        return _OPERATORS[self.op](pc.field(column_of(self.ref)), right)

    def __repr__(self) -> str:
        return f"{self.ref!r} {self.op} {self.value!r}"


class IsIn(Filter):
    """``ref.is_in([...])``."""

    def __init__(self, ref: "Ref", values: Iterable[Any]) -> None:
        self.ref, self.values = ref, tuple(values)

    def refs(self) -> Iterable["Ref"]:
        yield self.ref

    def expression(self, column_of: ColumnOf, now: datetime) -> pc.Expression:
        return pc.field(column_of(self.ref)).isin(list(self.values))

    def __repr__(self) -> str:
        return f"{self.ref!r}.is_in({list(self.values)!r})"


class _Junction(Filter):
    """Two filters joined by ``&`` or ``|``."""

    symbol = ""
    combine: Callable[..., Any]

    def __init__(self, left: Filter, right: Filter) -> None:
        self.left, self.right = left, right

    def refs(self) -> Iterable["Ref"]:
        yield from self.left.refs()
        yield from self.right.refs()

    def expression(self, column_of: ColumnOf, now: datetime) -> pc.Expression:
        return type(self).combine(self.left.expression(column_of, now), self.right.expression(column_of, now))

    def __repr__(self) -> str:
        return f"({self.left!r}) {self.symbol} ({self.right!r})"


class And(_Junction):
    symbol, combine = "&", operator.and_


class Or(_Junction):
    symbol, combine = "|", operator.or_


class Not(Filter):
    def __init__(self, inner: Filter) -> None:
        self.inner = inner

    def refs(self) -> Iterable["Ref"]:
        return self.inner.refs()

    def expression(self, column_of: ColumnOf, now: datetime) -> pc.Expression:
        return ~self.inner.expression(column_of, now)

    def __repr__(self) -> str:
        return f"~({self.inner!r})"


class TimeWindow(Filter):
    """``after(...)``/``before(...)``: rows whose time is after (or before) ``now - ago``.

    The time is the related class's ``FeatureTime`` unless ``index=`` names
    another feature; ``now`` is supplied when the filter is evaluated.
    """

    def __init__(self, side: str, ago: timedelta, index: Optional["Ref"], spelling: str = "") -> None:
        self.side, self.ago, self.index, self.spelling = side, ago, index, spelling

    def refs(self) -> Iterable["Ref"]:
        if self.index is not None:
            yield self.index

    def time_ref(self, related: type) -> "Ref":
        """The feature this window measures on ``related`` rows."""
        from sinks.features import info
        if self.index is not None:
            return self.index
        feature_time = info(related).feature_time
        if feature_time is None:
            raise DefinitionError(
                f"{self!r} needs a time: {related.__name__} has no FeatureTime feature; "
                f"declare one or pass index=")
        return feature_time

    def expression(self, column_of: ColumnOf, now: datetime) -> pc.Expression:
        column = pc.field(column_of(self.index))
        try:
            bound = pc.scalar(now - self.ago)
        except OverflowError:  # a window reaching before year 1 keeps every row
            bound = pc.scalar(datetime.min.replace(tzinfo=now.tzinfo))
        return column >= bound if self.side == "after" else column <= bound

    def __repr__(self) -> str:
        return f"{self.side}({self.spelling or self.ago})"


def _as_filter(value: Any) -> Filter:
    if not isinstance(value, Filter):
        raise TypeError(f"cannot combine a filter with {value!r}: both sides must be filters")
    return value


def _window(side: str, args: tuple, kwargs: dict) -> TimeWindow:
    if args:
        raise DefinitionError(
            f"{side}() takes keyword arguments only, e.g. {side}(days_ago=60); got {args!r}")
    index = kwargs.pop("index", None)
    unknown = sorted(set(kwargs) - set(_WINDOW_UNITS))
    if unknown:
        raise DefinitionError(
            f"{side}() got unknown argument(s) {', '.join(unknown)}; "
            f"expected {', '.join(_WINDOW_UNITS)} or index")
    if not kwargs:
        raise DefinitionError(f"{side}() needs a distance, e.g. {side}(days_ago=60)")
    for key, value in kwargs.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DefinitionError(f"{side}({key}={value!r}): {key} must be a non-negative int")
    from sinks.features import Ref
    if index is not None and not isinstance(index, Ref):
        raise DefinitionError(f"{side}(index={index!r}): index must be a feature, e.g. Transfer.created_at")
    ago = timedelta(**{_WINDOW_UNITS[key]: value for key, value in kwargs.items()})
    spelling = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    if index is not None:
        spelling += f", index={index!r}"
    return TimeWindow(side, ago, index, spelling)


def after(*args: Any, **kwargs: Any) -> TimeWindow:
    """Rows whose time is at or after ``now`` minus the given distance.

    Keywords as in Chalk: ``weeks_ago``, ``days_ago``, ``hours_ago``,
    ``minutes_ago``, ``seconds_ago``, ``milliseconds_ago``,
    ``microseconds_ago`` (summed) and ``index`` (the time feature; default the
    related class's ``FeatureTime``).
    """
    return _window("after", args, kwargs)


def before(*args: Any, **kwargs: Any) -> TimeWindow:
    """Rows whose time is at or before ``now`` minus the given distance; keywords as :func:`after`."""
    return _window("before", args, kwargs)
