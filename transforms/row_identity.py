"""What an integration sink's rows carry so that reorders, reruns and backfills are safe.

- The firing's version (:class:`transforms.firing.Version`) travels with each upserted row
  (:class:`transforms.sql.VersionedRow`): the writer keeps the newest per key.
- A column the model flags as the entity's event time is filled from the firing's clock: for
  an upsert, its version column (``info={"version": True}``), which the database compares
  across runs; for an append, a column flagged ``info={"event_time": True}``.
- An append sink's model that declares a unique constraint names each row's identity: the
  sink appends with ``skip_existing`` on it, so a rerun adds no row it already stored.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, List, Optional, Tuple

import sqlalchemy

from transforms.firing import version_of
from transforms.sql import TableSpec, VersionedRow
from transforms.sql.table import Row, RowError

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class EventTimeColumn:
    """A model's column filled, when a row leaves it empty, with the event-time clock of the
    entity the row was computed from. A ``DateTime`` column gets the time, an integer column
    microseconds since the epoch."""

    def __init__(self, spec: TableSpec, key: str) -> None:
        self.spec = spec
        self.key = key
        kind = spec.table.columns[key].type
        self.aware = bool(getattr(kind, "timezone", False))
        self.as_micros = isinstance(kind, sqlalchemy.Integer)
        if not (self.as_micros or isinstance(kind, sqlalchemy.DateTime)):
            raise TypeError(f"table {spec.name!r}: the event-time column {key!r} must be a DateTime or an integer "
                            f"(microseconds since the epoch), not {kind}")

    @classmethod
    def of(cls, spec: TableSpec, upsert: bool) -> Optional["EventTimeColumn"]:
        """The column of ``spec`` to fill: an upsert's version column, else one flagged ``event_time``."""
        flagged = [str(c.key) for c in spec.columns if c.info.get("event_time")]
        if len(flagged) > 1:
            raise ValueError(f"table {spec.name!r} flags {len(flagged)} event_time columns: {flagged}")
        key = spec.version if upsert and spec.version is not None else (flagged[0] if flagged else None)
        return None if key is None else cls(spec, key)

    def stamped(self, value: Any, clock: int) -> Any:
        try:
            row: Row = self.spec.row(value)
        except RowError:      # not a row of the table: the writer dead-letters it as it is
            return value
        if row.get(self.key) is None:
            try:
                moment = _EPOCH + timedelta(microseconds=clock)
            except OverflowError:  # an entity no timed update reached
                return row
            row[self.key] = clock if self.as_micros else moment if self.aware else moment.replace(tzinfo=None)
        return row


def append_identity(model: Any, sink: str) -> Optional[List[str]]:
    """The columns of the unique constraint an append sink's model declares (``__table_args__ =
    (UniqueConstraint(...),)``, or ``unique=True`` on one column), None if it declares none."""
    table = sqlalchemy.inspect(model).local_table
    keys = [[c.name for c in constraint.columns] for constraint in table.constraints
            if isinstance(constraint, sqlalchemy.UniqueConstraint)]
    keys += [[c.name] for c in table.columns if c.unique and [c.name] not in keys]
    if len(keys) > 1:
        raise ValueError(f"sink {sink!r}: table {table.name!r} declares {len(keys)} unique keys {keys}; "
                         "an append sink's rows need one identity")
    return keys[0] if keys else None


def versioned_row(result: Tuple[Any, Any], column: Optional[EventTimeColumn]) -> VersionedRow:
    """A sink's ``(key, row)`` result as the row and the version of the firing it came from."""
    version = version_of(result)
    row = result[1]
    if column is not None and version is not None:
        row = column.stamped(row, version.clock)
    return VersionedRow(row, version)


def stamped_row(result: Tuple[Any, Any], column: EventTimeColumn) -> Any:
    """A sink's ``(key, row)`` result as the row, its event-time column filled."""
    version = version_of(result)
    return result[1] if version is None else column.stamped(result[1], version.clock)
