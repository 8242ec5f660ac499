"""Filter expressions over related rows: ``Transfer.status == "ok"``, ``after(days_ago=60)``."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Tuple

import pyarrow as pa
import pyarrow.compute as pc

from sinks.errors import DefinitionError

if TYPE_CHECKING:
    from sinks.features import Ref

# Resolves a feature reference to the column that holds it in a DataFrame;
# ``None`` stands for the frame's FeatureTime column (time windows without ``index=``).
ColumnOf = Callable[[Optional["Ref"]], str]

_KERNELS = {
    "==": pc.equal, "!=": pc.not_equal, "<": pc.less,
    "<=": pc.less_equal, ">": pc.greater, ">=": pc.greater_equal,
}
# Chalk's keywords; a month and a year are fixed lengths (30 and 365 days), as a window over
# event times needs: "now" moves continuously, not by calendar.
_WINDOW_DAYS = {"years_ago": 365, "months_ago": 30}
_WINDOW_UNITS = {
    "years_ago": "days", "months_ago": "days", "weeks_ago": "weeks", "days_ago": "days", "hours_ago": "hours",
    "minutes_ago": "minutes",
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

    def literals(self) -> Iterable[Tuple["Ref", Any]]:
        """Every ``(feature, literal)`` the expression compares, to check against the feature's type."""
        return ()

    def mask(self, table: pa.Table, column_of: ColumnOf, now: datetime) -> Any:
        """Which rows of ``table`` match, as a boolean array (null where unknown), with windows
        ending at ``now``. Plain compute kernels: ``Table.filter`` with a compute expression costs
        ~0.2 ms a call, which a sink called per update pays every time."""
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

    def literals(self) -> Iterable[Tuple["Ref", Any]]:
        from sinks.features import Ref
        if not isinstance(self.value, Ref):
            yield self.ref, self.value

    def mask(self, table: pa.Table, column_of: ColumnOf, now: datetime) -> Any:
        from sinks.features import Ref
        left = table.column(column_of(self.ref))
        right = table.column(column_of(self.value)) if isinstance(self.value, Ref) else pa.scalar(
            self.value, type=left.type if self.value is not None else None)
        return _KERNELS[self.op](left, right)

    def __repr__(self) -> str:
        return f"{self.ref!r} {self.op} {self.value!r}"


class IsIn(Filter):
    """``ref.is_in([...])``."""

    def __init__(self, ref: "Ref", values: Iterable[Any]) -> None:
        self.ref, self.values = ref, tuple(values)

    def refs(self) -> Iterable["Ref"]:
        yield self.ref

    def literals(self) -> Iterable[Tuple["Ref", Any]]:
        return ((self.ref, value) for value in self.values)

    def mask(self, table: pa.Table, column_of: ColumnOf, now: datetime) -> Any:
        column = table.column(column_of(self.ref))
        return pc.is_in(column, value_set=pa.array(list(self.values), type=column.type))

    def __repr__(self) -> str:
        return f"{self.ref!r}.is_in({list(self.values)!r})"


class IsNull(Filter):
    """``ref == None``: the feature has no value (Chalk's spelling of "is null"); ``~IsNull``
    (``ref != None``) is "is not null". A comparison with a null never matches, so it needs
    its own node."""

    def __init__(self, ref: "Ref") -> None:
        self.ref = ref

    def refs(self) -> Iterable["Ref"]:
        yield self.ref

    def mask(self, table: pa.Table, column_of: ColumnOf, now: datetime) -> Any:
        return pc.is_null(table.column(column_of(self.ref)))

    def __repr__(self) -> str:
        return f"{self.ref!r} == None"


class _Junction(Filter):
    """Two filters joined by ``&`` or ``|``."""

    symbol = ""

    def __init__(self, left: Filter, right: Filter) -> None:
        self.left, self.right = left, right

    def refs(self) -> Iterable["Ref"]:
        yield from self.left.refs()
        yield from self.right.refs()

    def literals(self) -> Iterable[Tuple["Ref", Any]]:
        yield from self.left.literals()
        yield from self.right.literals()

    def mask(self, table: pa.Table, column_of: ColumnOf, now: datetime) -> Any:
        kernel = pc.and_kleene if isinstance(self, And) else pc.or_kleene
        return kernel(self.left.mask(table, column_of, now), self.right.mask(table, column_of, now))

    def __repr__(self) -> str:
        return f"({self.left!r}) {self.symbol} ({self.right!r})"


class And(_Junction):
    symbol = "&"


class Or(_Junction):
    symbol = "|"


class Not(Filter):
    def __init__(self, inner: Filter) -> None:
        self.inner = inner

    def refs(self) -> Iterable["Ref"]:
        return self.inner.refs()

    def literals(self) -> Iterable[Tuple["Ref", Any]]:
        return self.inner.literals()

    def mask(self, table: pa.Table, column_of: ColumnOf, now: datetime) -> Any:
        return pc.invert(self.inner.mask(table, column_of, now))

    def __repr__(self) -> str:
        if isinstance(self.inner, IsNull):
            return f"{self.inner.ref!r} != None"
        return f"~({self.inner!r})"


class TimeWindow(Filter):
    """``after(...)``/``before(...)``: rows whose time is between ``now - ago`` and ``now`` (or before ``now - ago``).

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

    def mask(self, table: pa.Table, column_of: ColumnOf, now: datetime) -> Any:
        column = table.column(column_of(self.index))
        bound = pa.scalar(self._bound(now), type=column.type)
        if self.side == "before":
            return pc.less_equal(column, bound)
        # A row is in an after() window from its time until ``ago`` later: one timed after "now"
        # (an ``index=`` feature set in the future) is not in it yet.
        return pc.and_kleene(pc.greater_equal(column, bound), pc.less_equal(column, pa.scalar(now, type=column.type)))

    def _bound(self, now: datetime) -> datetime:
        try:
            return now - self.ago
        except OverflowError:  # a window reaching before year 1 keeps every row
            return datetime.min.replace(tzinfo=now.tzinfo)

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
    from sinks.features import Ref, as_feature
    if index is not None and not isinstance(index, Ref):
        raise DefinitionError(f"{side}(index={index!r}): index must be a feature, e.g. Transfer.created_at")
    index = as_feature(index) or index
    try:
        ago = sum((timedelta(**{_WINDOW_UNITS[key]: value * _WINDOW_DAYS.get(key, 1)})
                   for key, value in kwargs.items()), timedelta(0))
    except OverflowError:
        raise DefinitionError(f"{side}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) reaches "
                              "further back than a timedelta can hold") from None
    spelling = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    if index is not None:
        spelling += f", index={index!r}"
    return TimeWindow(side, ago, index, spelling)


def after(*args: Any, **kwargs: Any) -> TimeWindow:
    """Rows whose time is at or after ``now`` minus the given distance.

    Keywords as in Chalk: ``years_ago`` (365 days each), ``months_ago`` (30 days
    each), ``weeks_ago``, ``days_ago``, ``hours_ago``, ``minutes_ago``,
    ``seconds_ago``, ``milliseconds_ago``, ``microseconds_ago`` (summed) and
    ``index`` (the time feature; default the related class's ``FeatureTime``).
    """
    return _window("after", args, kwargs)


def before(*args: Any, **kwargs: Any) -> TimeWindow:
    """Rows whose time is at or before ``now`` minus the given distance; keywords as :func:`after`."""
    return _window("before", args, kwargs)
