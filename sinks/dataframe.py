"""``DataFrame``: the table a batch sink or a has-many input receives.

Held as Python lists, one per column: a sink is called with a few dozen rows at a time, and
building a pyarrow table and running compute kernels on it cost ~200-350 µs a call where plain
Python over the same rows takes a few µs (measured over ≤ 25 rows). Arrow is built only when
asked for (``to_arrow()``, ``to_pandas()``, ``to_polars()``), or given (``DataFrame(table)``).
"""
from __future__ import annotations

import copy
import math
import operator
from datetime import date, datetime, timedelta, timezone
from itertools import compress
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import pyarrow as pa

from sinks.features import Ref, info
from sinks.filters import And, Comparison, Filter, IsIn, Not, Or, TimeWindow

Column = Union[Ref, str]
# A filter's result per row: True, False, or None where unknown (a null compared), as in SQL.
Mask = List[Optional[bool]]

_ARROW_TYPES = {
    str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_(),
    bytes: pa.binary(), datetime: pa.timestamp("us", tz="UTC"), date: pa.date32(),
}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_OPERATORS: Dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def arrow_type(python_type: Any) -> Optional[pa.DataType]:
    """The Arrow type that holds values of a feature's Python type, if there is a fixed one."""
    return _ARROW_TYPES.get(python_type)


def column_name(column: Column) -> str:
    """A column's name: the fully qualified feature name (``user.account.title``)."""
    if isinstance(column, str):
        return column
    name = _NAMES.get(column)
    if name is None:
        name = column.fqn
        if len(_NAMES) < _MAX_CACHED:
            _NAMES[column] = name
    return name


# Feature references are slow to read (each attribute goes through ``Feature.__getattribute__``)
# and a has-many input builds a frame with the same columns at every call: names and schemas
# are worked out once per reference (references hash by identity).
_MAX_CACHED = 4096
_NAMES: Dict[Ref, str] = {}


_SCHEMAS: Dict[Tuple[Any, ...], Tuple[List[str], List[Any]]] = {}


def schema_of(columns: Sequence[Column]) -> Tuple[List[str], List[Any]]:
    """The columns' names and declared Python types (None where a name is given)."""
    key = tuple(columns)
    schema = _SCHEMAS.get(key)
    if schema is None:
        schema = ([column_name(c) for c in columns], [None if isinstance(c, str) else c.leaf.type for c in columns])
        if len(_SCHEMAS) < _MAX_CACHED:
            _SCHEMAS[key] = schema
    return schema


class DataFrame:
    """Rows of feature values, one column per feature, named by fully qualified name.

    As an annotation, ``DataFrame[User.uuid, User.account.title]`` declares a
    batch sink's input and ``DataFrame[Transfer]`` a has-many relation. At run
    time it holds the rows a sink receives::

        df = DataFrame([{Transfer.amount: 12.5, Transfer.status: "ok"}])
        df[Transfer.status == "ok"][Transfer.amount].sum()   # 12.5
    """

    __columns__: Tuple[Any, ...] = ()

    def __class_getitem__(cls, items: Any) -> type:
        columns = items if isinstance(items, tuple) else (items,)
        name = f"DataFrame[{', '.join(c if isinstance(c, str) else getattr(c, '__name__', repr(c)) for c in columns)}]"
        return type(name, (cls,), {"__columns__": columns})

    def __init__(self, data: Union[None, pa.Table, Mapping[Any, Sequence[Any]], Iterable[Mapping[Any, Any]]] = None,
                 *, columns: Optional[Sequence[Column]] = None, time_column: Optional[Column] = None,
                 now: Optional[datetime] = None) -> None:
        """Build from rows keyed by features or their names, from a mapping of columns
        (``{Transfer.amount: [1.0, 2.0]}``, as Chalk's ``DataFrame({...})``), or from an Arrow table.

        ``columns`` fixes the column order and, for features of known types, their types
        (so an empty frame still has a schema). ``time_column`` is what ``after()``/``before()``
        without ``index=`` measure, and ``now`` the instant they count back from (default: the
        wall clock).
        """
        self.time_column = column_name(time_column) if time_column is not None else None
        self.now = now
        self._arrow: Optional[pa.Table] = None
        if isinstance(data, pa.Table):
            self._arrow = data
            self._names = list(data.column_names)
            self._types: List[Any] = [None] * len(self._names)
            self._data = {name: data.column(name).to_pylist() for name in self._names}
            self._length = data.num_rows
            return
        if isinstance(data, Mapping):
            by_name = {column_name(k): list(v) for k, v in data.items()}
            lengths = {len(v) for v in by_name.values()}
            if len(lengths) > 1:
                raise ValueError(f"DataFrame columns differ in length: {sorted(lengths)}")
            rows_or_columns: Any = by_name
        else:
            rows_or_columns = data if isinstance(data, list) else list(data or ())
        if columns:
            self._names, self._types = schema_of(columns)
        else:
            self._names, self._types = [], []
        if isinstance(rows_or_columns, dict):
            names = self._names or list(rows_or_columns)
            self._length = len(next(iter(rows_or_columns.values()), ()))
            self._data = {n: rows_or_columns.get(n, [None] * self._length) for n in names}
        else:
            self._data = _columns_of(rows_or_columns, self._names)
            self._length = len(rows_or_columns)
        if not columns:
            self._names = list(self._data)
            self._types = [None] * len(self._names)

    @classmethod
    def from_dict(cls, data: Mapping[Any, Sequence[Any]], **options: Any) -> "DataFrame":
        """From columns: ``{Transfer.id: ["t1", "t2"], "transfer.amount": [1.0, 2.0]}``."""
        return cls(dict(data), **options)

    @classmethod
    def from_list(cls, rows: Iterable[Mapping[Any, Any]], **options: Any) -> "DataFrame":
        """From rows: ``[{Transfer.id: "t1", Transfer.amount: 1.0}, ...]``."""
        return cls(list(rows), **options)

    # ------------------------------------------------------------------ shape

    @property
    def columns(self) -> List[str]:
        """The columns' fully qualified names, in order."""
        return list(self._names)

    @property
    def shape(self) -> Tuple[int, int]:
        """(rows, columns)."""
        return self._length, len(self._names)

    def __len__(self) -> int:
        return self._length

    def is_empty(self) -> bool:
        return self._length == 0

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return iter(self.to_pylist())

    # ------------------------------------------------------------------ selection

    def __getitem__(self, key: Any) -> "DataFrame":
        """``df[Feature]`` or ``df[F1, F2]`` projects; ``df[filter, ...]`` keeps matching rows."""
        keys = key if isinstance(key, tuple) else (key,)
        filters = [k for k in keys if isinstance(k, Filter)]
        projection = [k for k in keys if not isinstance(k, Filter)]
        frame = self.filter(*filters) if filters else self
        if projection:
            names = [frame._column(c) for c in projection]
            frame = frame._with(names, {n: frame._data[n] for n in names}, frame._length,
                                [frame._type(n) for n in names])
        return frame

    def filter(self, *conditions: Filter) -> "DataFrame":
        """Rows for which every condition holds (an unknown result, from a null, counts as false)."""
        now = self.now or datetime.now(timezone.utc)
        mask = _evaluate(conditions[0], self, now)
        for condition in conditions[1:]:
            mask = _and(mask, _evaluate(condition, self, now))
        keep = [value is True for value in mask]
        if all(keep):
            return self
        data = {name: list(compress(values, keep)) for name, values in self._data.items()}
        return self._with(self._names, data, sum(keep), self._types)

    def sort(self, by: Union[Column, Sequence[Column]], descending: Union[bool, Sequence[bool]] = False) -> "DataFrame":
        """Rows ordered by one or more columns (nulls last), as Chalk's ``sort(by, descending=)``."""
        columns = [by] if isinstance(by, (str, Ref)) else list(by)
        orders = [descending] * len(columns) if isinstance(descending, bool) else list(descending)
        if len(orders) != len(columns):
            raise ValueError(f"sort: {len(columns)} column(s) but {len(orders)} descending flag(s)")
        order = list(range(self._length))
        for column, reverse in reversed(list(zip(columns, orders))):   # stable: least significant first
            values = self._values(self._column(column))
            known = [i for i in order if values[i] is not None]
            known.sort(key=values.__getitem__, reverse=reverse)
            order = known + [i for i in order if values[i] is None]
        return self._with(self._names, {n: [v[i] for i in order] for n, v in self._data.items()}, self._length,
                          self._types)

    def slice(self, offset: int = 0, length: Optional[int] = None) -> "DataFrame":
        """``length`` rows (all the rest if None) from row ``offset`` (negative counts from the end)."""
        start = offset if offset >= 0 else max(self._length + offset, 0)
        stop = self._length if length is None else start + length
        data = {n: v[start:stop] for n, v in self._data.items()}
        return self._with(self._names, data, len(range(self._length)[start:stop]), self._types)

    # ------------------------------------------------------------------ aggregations

    def count(self) -> int:
        """The number of rows."""
        return self._length

    def sum(self) -> Any:
        """Sum of the single column, nulls skipped; 0 for no rows."""
        name, values = self._single()
        known = [v for v in values if v is not None]
        total = sum(known)
        return float(total) if self._type(name) is float else total

    def mean(self) -> Any:
        """Mean of the single column, nulls skipped; None for no rows."""
        known = self._known()
        return sum(known) / len(known) if known else None

    def median(self) -> Any:
        """Median of the single column, nulls skipped; None for no rows."""
        known = sorted(self._known())
        if not known:
            return None
        middle = len(known) // 2
        return known[middle] if len(known) % 2 else (known[middle - 1] + known[middle]) / 2

    def var(self, ddof: int = 1) -> Any:
        """Variance of the single column (``ddof=1``: sample variance, as Chalk); None for too few rows."""
        known = self._known()
        if len(known) - ddof <= 0:
            return None
        mean = sum(known) / len(known)
        return sum((v - mean) ** 2 for v in known) / (len(known) - ddof)

    def std(self, ddof: int = 1) -> Any:
        """Standard deviation of the single column (``ddof=1`` as Chalk); None for too few rows."""
        variance = self.var(ddof)
        return None if variance is None else math.sqrt(variance)

    def min(self) -> Any:
        known = self._known()
        return min(known) if known else None

    def max(self) -> Any:
        known = self._known()
        return max(known) if known else None

    def num_unique(self, column: Optional[Column] = None) -> int:
        """Distinct values of ``column`` (or of the single column), nulls counted as one value;
        without a column on a frame of several, distinct rows."""
        if column is not None:
            return len(set(map(_hashable, self._values(self._column(column)))))
        if len(self._names) == 1:
            return len(set(map(_hashable, self._values(self._names[0]))))
        return len(set(zip(*(map(_hashable, self._values(n)) for n in self._names))))

    def any(self) -> bool:
        """Whether any value of the single (boolean) column is true."""
        return any(v is True for v in self._single()[1])

    def all(self) -> bool:
        """Whether every value of the single (boolean) column is true (True for no rows)."""
        return all(v is True for v in self._single()[1])

    def item(self) -> Any:
        """The only value of a frame of one row and one column."""
        if self.shape != (1, 1):
            raise ValueError(f"item() needs a DataFrame of 1 row and 1 column, this one is {self.shape}")
        return self._values(self._names[0])[0]

    def group_by(self, group: Mapping[Any, Column], agg: Mapping[Any, "Aggregation"]) -> "DataFrame":
        """One row per distinct value of the ``group`` columns, with the ``agg`` aggregations of
        each group's rows, as Chalk's ``group_by(group={out: column}, agg={out: op.sum(column)})``.
        Groups come in order of first appearance."""
        keys = [self._values(self._column(c)) for c in group.values()]
        groups: Dict[Tuple[Any, ...], List[int]] = {}
        for index, key in enumerate(zip(*keys) if keys else [()] * self._length):
            groups.setdefault(tuple(map(_hashable, key)), []).append(index)
        firsts = [rows[0] for rows in groups.values()]
        data: Dict[str, List[Any]] = {}
        for out, values in zip(group, keys):
            data[column_name(out)] = [values[i] for i in firsts]
        for out, aggregation in agg.items():
            if not isinstance(aggregation, Aggregation):
                raise TypeError(f"group_by: agg[{column_name(out)!r}] must be op.sum(...), op.count(...), ...; "
                                f"got {aggregation!r}")
            column = self._values(self._column(aggregation.column)) if aggregation.column is not None else None
            data[column_name(out)] = [aggregation.of(column, rows) for rows in groups.values()]
        return DataFrame(data)

    # ------------------------------------------------------------------ exports

    def to_pylist(self) -> List[Dict[str, Any]]:
        """The rows as dicts of fully qualified name → value."""
        columns = [self._values(n) for n in self._names]
        return [dict(zip(self._names, row)) for row in zip(*columns)] if columns else [{}] * self._length

    def to_arrow(self) -> pa.Table:
        """A ``pyarrow.Table`` (built on first call)."""
        if self._arrow is None:
            self._arrow = _table(self._names, self._types, self._data, self._length)
        return self._arrow

    to_pyarrow = to_arrow

    def to_pandas(self) -> Any:
        """A pandas DataFrame (needs pandas installed)."""
        return self.to_arrow().to_pandas()

    def to_polars(self) -> Any:
        """A polars DataFrame (needs polars installed)."""
        try:
            import polars
        except ImportError:
            raise ImportError("DataFrame.to_polars() needs polars: pip install polars") from None
        return polars.from_arrow(self.to_arrow())

    def __repr__(self) -> str:
        return f"DataFrame({self._length} rows: {', '.join(self._names)})"

    # ------------------------------------------------------------------ internals

    def _with(self, names: List[str], data: Dict[str, List[Any]], length: int, types: List[Any]) -> "DataFrame":
        frame = DataFrame.__new__(DataFrame)
        frame.time_column, frame.now, frame._arrow = self.time_column, self.now, None
        frame._names, frame._data, frame._length, frame._types = names, data, length, types
        return frame

    def _type(self, name: str) -> Any:
        try:
            return self._types[self._names.index(name)]
        except ValueError:
            return None

    def _column(self, column: Column) -> str:
        name = column_name(column)
        if name not in self._data:
            raise KeyError(f"no column {name!r} in this DataFrame (columns: {', '.join(self._names)})")
        return name

    def _column_or_time(self, column: Optional[Column]) -> str:
        if column is not None:
            return self._column(column)
        if self.time_column is None:
            raise KeyError("this DataFrame has no time column: pass index= to after()/before()")
        return self._column(self.time_column)

    def _values(self, name: str) -> List[Any]:
        """A column's values as a sink sees them: timestamps held as µs since the epoch (as the
        assemble stage keeps them) become datetimes, ints in a float column floats."""
        values = self._data[name]
        kind = self._type(name)
        if kind is datetime:
            return [_moment(v) if type(v) is int else v for v in values]
        if kind is float:
            return [float(v) if type(v) is int else v for v in values]
        return values

    def _single(self) -> Tuple[str, List[Any]]:
        if len(self._names) != 1:
            raise ValueError(
                f"aggregation needs exactly one column, this DataFrame has {len(self._names)}: "
                "project one first, e.g. df[Transfer.amount].sum()")
        name = self._names[0]
        return name, self._values(name)

    def _known(self) -> List[Any]:
        return [v for v in self._single()[1] if v is not None]


# Per has-many parameter: column names, their types, the features they read, each feature's
# default as ``(value,)`` (``()`` without one), and the time column.
_RELATED: Dict[Ref, Tuple[List[str], List[Any], List[str], List[Tuple[Any, ...]], Optional[str]]] = {}


def related_frame(rows: Sequence[Mapping[str, Any]], ref: Ref, now: datetime) -> DataFrame:
    """The ``DataFrame`` a sink parameter annotated ``ref`` (a has-many relation, perhaps with
    filters and a projection) receives for ``rows`` of the related class (keyed by feature
    name, timestamps as µs since the epoch): every scalar feature of that class, filtered
    (windows ending at ``now``) and projected as ``ref`` says. A row that never received a
    feature declaring a default holds the default; a null it received stays null."""
    plan = _RELATED.get(ref)
    if plan is None:
        related = info(ref.leaf.related)
        names, types = schema_of(related.scalars)
        time = related.feature_time
        defaults = [(f.default,) if f.has_default else () for f in related.scalars]
        plan = (names, types, [f.name for f in related.scalars], defaults,
                None if time is None else column_name(time))
        if len(_RELATED) < _MAX_CACHED:
            _RELATED[ref] = plan
    names, types, attrs, defaults, time_column = plan
    frame = DataFrame.__new__(DataFrame)
    frame.time_column, frame.now, frame._arrow = time_column, now, None
    frame._names, frame._types, frame._length = names, types, len(rows)
    frame._data = {name: _column(rows, attr, default) for name, attr, default in zip(names, attrs, defaults)}
    if ref.filters:
        frame = frame.filter(*ref.filters)
    if ref.projection:
        frame = frame[ref.projection]
    return frame


def _column(rows: Sequence[Mapping[str, Any]], attr: str, default: Tuple[Any, ...]) -> List[Any]:
    if not default:
        return [row.get(attr) for row in rows]
    value = default[0]
    if isinstance(value, (list, dict, set)):   # a sink changing one row's default must not change the others'
        return [row[attr] if attr in row else copy.copy(value) for row in rows]
    return [row.get(attr, value) for row in rows]


class Aggregation:
    """One aggregation of ``group_by``'s ``agg``: ``op.sum(Transfer.amount)``, ``op.count(...)``."""

    def __init__(self, name: str, column: Optional[Column]) -> None:
        self.name, self.column = name, column

    def of(self, values: Optional[List[Any]], rows: List[int]) -> Any:
        """This aggregation of ``values`` (a column, None for ``op.count()``) at ``rows``."""
        if self.name == "count":
            return len(rows)
        assert values is not None
        part = DataFrame({"value": [values[i] for i in rows]})
        return getattr(part, self.name)()

    def __repr__(self) -> str:
        return f"op.{self.name}({self.column!r})"


class op:
    """Aggregations for :meth:`DataFrame.group_by`, named as Chalk's ``op``."""

    @staticmethod
    def count(column: Optional[Column] = None) -> Aggregation:
        return Aggregation("count", column)

    @staticmethod
    def sum(column: Column) -> Aggregation:
        return Aggregation("sum", column)

    @staticmethod
    def mean(column: Column) -> Aggregation:
        return Aggregation("mean", column)

    @staticmethod
    def median(column: Column) -> Aggregation:
        return Aggregation("median", column)

    @staticmethod
    def min(column: Column) -> Aggregation:
        return Aggregation("min", column)

    @staticmethod
    def max(column: Column) -> Aggregation:
        return Aggregation("max", column)

    @staticmethod
    def std(column: Column) -> Aggregation:
        return Aggregation("std", column)

    @staticmethod
    def var(column: Column) -> Aggregation:
        return Aggregation("var", column)

    @staticmethod
    def num_unique(column: Column) -> Aggregation:
        return Aggregation("num_unique", column)


# ---------------------------------------------------------------------- building

def _columns_of(rows: List[Mapping[Any, Any]], names: List[str]) -> Dict[str, List[Any]]:
    """Rows → columns. With ``names``, those columns only (a missing value is None)."""
    if not rows:
        return {n: [] for n in names}
    first = rows[0].keys()
    if all(row.keys() == first for row in rows):
        # The usual case: every row has the same keys (all features, or all names), once each.
        by_name = {column_name(k): k for k in first}
        if len(by_name) == len(first):
            wanted = names or list(by_name)
            return {n: [row[by_name[n]] for row in rows] if n in by_name else [None] * len(rows) for n in wanted}
    named = [{column_name(k): v for k, v in row.items()} for row in rows]
    if not names:
        seen: Dict[str, None] = {}
        for row in named:
            seen.update(dict.fromkeys(row))
        names = list(seen)
    return {n: [row.get(n) for row in named] for n in names}


def _table(names: List[str], types: List[Any], data: Dict[str, List[Any]], length: int) -> pa.Table:
    arrow_types = [arrow_type(t) for t in types]
    if not names:
        return pa.table({})

    def column(name: str, kind: Optional[pa.DataType]) -> pa.Array:
        values = data[name]
        if kind is None:
            return pa.array(values) if values else pa.nulls(0)
        if pa.types.is_timestamp(kind):
            values = [_moment(v) if type(v) is int else v for v in values]
        elif pa.types.is_floating(kind):
            values = [float(v) if type(v) is int else v for v in values]
        return pa.array(values, type=kind)
    return pa.table({n: column(n, t) for n, t in zip(names, arrow_types)})


def _moment(micros: int) -> datetime:
    return _EPOCH + micros * _MICROSECOND


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // _MICROSECOND


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(map(_hashable, value))
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, set):
        return frozenset(value)
    return value


# ---------------------------------------------------------------------- filters
# Three-valued, as SQL and Arrow's Kleene kernels: a comparison with a null is unknown (None),
# unknown & false is false, unknown | true is true, ~unknown is unknown.

def _and(left: Mask, right: Mask) -> Mask:
    return [False if a is False or b is False else (None if a is None or b is None else True)
            for a, b in zip(left, right)]


def _or(left: Mask, right: Mask) -> Mask:
    return [True if a is True or b is True else (None if a is None or b is None else False)
            for a, b in zip(left, right)]


def _evaluate(condition: Filter, frame: DataFrame, now: datetime) -> Mask:
    if isinstance(condition, Comparison):
        return _comparison(condition, frame)
    if isinstance(condition, TimeWindow):
        return _window(condition, frame, now)
    if isinstance(condition, IsIn):
        values = frame._data[frame._column(condition.ref)]
        try:
            members: Any = frozenset(condition.values)
        except TypeError:
            members = condition.values
        return [v in members for v in values]
    if isinstance(condition, And):
        return _and(_evaluate(condition.left, frame, now), _evaluate(condition.right, frame, now))
    if isinstance(condition, Or):
        return _or(_evaluate(condition.left, frame, now), _evaluate(condition.right, frame, now))
    if isinstance(condition, Not):
        return [None if v is None else not v for v in _evaluate(condition.inner, frame, now)]
    if type(condition).__name__ == "IsNull":     # ``ref == None`` as its own node
        return [v is None for v in frame._data[frame._column(condition.ref)]]  # type: ignore[attr-defined]
    # A filter this evaluator does not know: Arrow evaluates it.
    mask = condition.mask(frame.to_arrow(), frame._column_or_time, now)
    return mask.to_pylist()


def _comparison(condition: Comparison, frame: DataFrame) -> Mask:
    compare = _OPERATORS[condition.op]
    name = frame._column(condition.ref)
    literal = condition.value
    if isinstance(literal, Ref):
        left, right = frame._values(name), frame._values(frame._column(literal))
        return [None if a is None or b is None else compare(a, b) for a, b in zip(left, right)]
    values = frame._data[name]
    if literal is None:
        # Chalk's ``== None`` / ``!= None``: is null / is not null.
        if condition.op == "==":
            return [v is None for v in values]
        if condition.op == "!=":
            return [v is not None for v in values]
        return [None] * len(values)
    if isinstance(literal, datetime):
        return _compare_times(values, compare, literal)
    return [None if v is None else compare(v, literal) for v in values]


def _window(window: TimeWindow, frame: DataFrame, now: datetime) -> Mask:
    values = frame._data[frame._column_or_time(window.index)]
    compare = operator.ge if window.side == "after" else operator.le
    try:
        bound = now - window.ago
    except OverflowError:  # a window reaching before year 1 keeps every row
        bound = datetime.min.replace(tzinfo=now.tzinfo)
    mask = _compare_times(values, compare, bound)
    if window.side == "before":
        return mask
    # A row is in an after() window from its time until ``ago`` later: one timed after "now"
    # (an ``index=`` feature set in the future) is not in it yet.
    return _and(mask, _compare_times(values, operator.le, now))


def _compare_times(values: List[Any], compare: Callable[[Any, Any], bool], bound: datetime) -> Mask:
    """Compares timestamps held as µs since the epoch (the assemble stage's) or as datetimes
    (a naive one counting as UTC, as in Arrow) with ``bound``."""
    if bound.tzinfo is None:
        bound = bound.replace(tzinfo=timezone.utc)
    bound_micros = _micros(bound)
    return [None if v is None else compare(v, bound_micros) if type(v) is int
            else compare(v if v.tzinfo is not None else v.replace(tzinfo=timezone.utc), bound)
            for v in values]
