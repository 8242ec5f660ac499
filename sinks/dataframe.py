"""``DataFrame``: the table a batch sink or a has-many input receives, backed by pyarrow."""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import pyarrow as pa
import pyarrow.compute as pc

from sinks.features import Ref
from sinks.filters import Filter

Column = Union[Ref, str]

_ARROW_TYPES = {
    str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_(),
    bytes: pa.binary(), datetime: pa.timestamp("us", tz="UTC"), date: pa.date32(),
}


def arrow_type(python_type: Any) -> Optional[pa.DataType]:
    """The Arrow type that holds values of a feature's Python type, if there is a fixed one."""
    return _ARROW_TYPES.get(python_type)


def column_name(column: Column) -> str:
    """A column's name: the fully qualified feature name (``user.account.title``)."""
    return column if isinstance(column, str) else column.fqn


class DataFrame:
    """Rows of feature values, one column per feature, named by fully qualified name.

    As an annotation, ``DataFrame[User.uuid, User.account.title]`` declares a
    batch sink's input and ``DataFrame[Transfer]`` a has-many relation. At run
    time it wraps a ``pyarrow.Table``::

        df = DataFrame([{Transfer.amount: 12.5, Transfer.status: "ok"}])
        df[Transfer.status == "ok"][Transfer.amount].sum()   # 12.5
    """

    __columns__: Tuple[Any, ...] = ()

    def __class_getitem__(cls, items: Any) -> type:
        columns = items if isinstance(items, tuple) else (items,)
        name = f"DataFrame[{', '.join(c if isinstance(c, str) else getattr(c, '__name__', repr(c)) for c in columns)}]"
        return type(name, (cls,), {"__columns__": columns})

    def __init__(self, data: Union[None, pa.Table, Iterable[Dict[Any, Any]]] = None, *,
                 columns: Optional[Sequence[Column]] = None, time_column: Optional[Column] = None,
                 now: Optional[datetime] = None) -> None:
        """Build from an Arrow table or from rows keyed by features or their names.

        ``columns`` fixes the column order and, for features of known types,
        the Arrow types (so an empty frame still has a schema). ``time_column``
        is what ``after()``/``before()`` without ``index=`` measure, and
        ``now`` the instant they count back from (default: the wall clock).
        """
        if isinstance(data, pa.Table):
            self._table = data
        else:
            rows = [{column_name(k): v for k, v in row.items()} for row in (data or [])]
            self._table = _table(rows, columns)
        self.time_column = column_name(time_column) if time_column is not None else None
        self.now = now

    @property
    def columns(self) -> List[str]:
        return list(self._table.column_names)

    def __len__(self) -> int:
        return self._table.num_rows

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return iter(self._table.to_pylist())

    def __getitem__(self, key: Any) -> "DataFrame":
        """``df[Feature]`` or ``df[F1, F2]`` projects; ``df[filter, ...]`` keeps matching rows."""
        keys = key if isinstance(key, tuple) else (key,)
        filters = [k for k in keys if isinstance(k, Filter)]
        projection = [k for k in keys if not isinstance(k, Filter)]
        frame = self.filter(*filters) if filters else self
        if projection:
            frame = frame._with(frame._table.select([frame._column(c) for c in projection]))
        return frame

    def filter(self, *conditions: Filter) -> "DataFrame":
        """Rows for which every condition holds (a null result counts as false)."""
        now = self.now or datetime.now(timezone.utc)
        mask = conditions[0].mask(self._table, self._column_or_time, now)
        for condition in conditions[1:]:
            mask = pc.and_kleene(mask, condition.mask(self._table, self._column_or_time, now))
        return self._with(self._table.filter(mask, null_selection_behavior="drop"))

    def count(self) -> int:
        return self._table.num_rows

    def sum(self) -> Any:
        """Sum of the single column; 0 for no rows."""
        return pc.sum(self._single(), min_count=0).as_py()

    def mean(self) -> Any:
        """Mean of the single column; None for no rows."""
        return pc.mean(self._single()).as_py()

    def min(self) -> Any:
        return pc.min(self._single()).as_py()

    def max(self) -> Any:
        return pc.max(self._single()).as_py()

    def to_arrow(self) -> pa.Table:
        return self._table

    def to_pylist(self) -> List[Dict[str, Any]]:
        return self._table.to_pylist()

    def to_pandas(self) -> Any:
        """A pandas DataFrame (needs pandas installed)."""
        return self._table.to_pandas()

    def __repr__(self) -> str:
        return f"DataFrame({self._table.num_rows} rows: {', '.join(self.columns)})"

    def _with(self, table: pa.Table) -> "DataFrame":
        return DataFrame(table, time_column=self.time_column, now=self.now)

    def _column(self, column: Column) -> str:
        name = column_name(column)
        if name not in self._table.column_names:
            raise KeyError(f"no column {name!r} in this DataFrame (columns: {', '.join(self.columns)})")
        return name

    def _column_or_time(self, column: Optional[Column]) -> str:
        if column is not None:
            return self._column(column)
        if self.time_column is None:
            raise KeyError("this DataFrame has no time column: pass index= to after()/before()")
        return self.time_column

    def _single(self) -> pa.ChunkedArray:
        if self._table.num_columns != 1:
            raise ValueError(
                f"aggregation needs exactly one column, this DataFrame has {self._table.num_columns}: "
                "project one first, e.g. df[Transfer.amount].sum()")
        return self._table.column(0)


def _table(rows: List[Dict[str, Any]], columns: Optional[Sequence[Column]]) -> pa.Table:
    if not columns:
        return pa.Table.from_pylist(rows)
    types = [arrow_type(None if isinstance(c, str) else c.leaf.type) for c in columns]
    names = [column_name(c) for c in columns]
    if all(types) or not rows:
        schema = pa.schema([pa.field(n, t or pa.null()) for n, t in zip(names, types)])
        return pa.Table.from_pylist(rows, schema=schema)
    # A feature of a type Arrow has no fixed mapping for (list, dict, Decimal): infer it, and
    # give the others their own type (a timestamp may come as µs since the epoch).
    inferred = pa.Table.from_pylist(rows)

    def column(name: str, kind: Optional[pa.DataType]) -> Any:
        if name not in inferred.column_names:
            return pa.nulls(len(rows), kind or pa.null())
        found = inferred.column(name)
        return found.cast(kind) if kind else found
    return pa.table({n: column(n, t) for n, t in zip(names, types)})
