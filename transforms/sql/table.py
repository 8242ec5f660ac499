"""What a write needs to know about its target: the table, its columns, its conflict key,
and how a mapped instance or a dict becomes a row of column values."""
from __future__ import annotations

import operator
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import sqlalchemy
from sqlalchemy import Column, Table

Row = Dict[str, Any]
"""Column values keyed by ``Column.key``; a column left out is filled by the database."""


class RowError(ValueError):
    """An input that cannot become a row of the table (wrong type, unknown column)."""


class TableSpec:
    """A target table and the mapping from a model's instances (or dicts) to its rows.

    It pickles as the table's description (a ``Table`` and the attribute names), not
    as the model class, so a model declared in the pipeline's own script or inside
    a function reaches the workers too.

    Args:
      model: a SQLAlchemy mapped class, or a ``Table``.
      conflict: the upsert conflict target: column names, or the name of a
        unique constraint of the table; the primary key when None.
      version: the column (name or attribute) that orders the versions of a key's
        row; None for the column whose ``info`` has ``"version": True``, if any.
        An upsert never replaces a row by one with a lower version.
    """

    def __init__(self, model: Any, conflict: Union[None, str, Sequence[str]] = None,
                 version: Optional[str] = None) -> None:
        if isinstance(model, Table):
            self.table = model
            self._attributes: List[Tuple[str, str]] = []
            self.label = model.name
        else:
            mapper = sqlalchemy.inspect(model, raiseerr=False)
            if mapper is None or not hasattr(mapper, "column_attrs"):
                raise TypeError(f"expected a SQLAlchemy mapped class or Table, not {model!r}")
            self.table = mapper.local_table
            self._attributes = [(prop.key, str(prop.columns[0].key)) for prop in mapper.column_attrs
                                if prop.columns[0].table is self.table]
            self.label = model.__name__
        self.columns: List[Column] = [c for c in self.table.columns if c.computed is None]
        self._keys = {c.key for c in self.columns}
        self._aliases: Dict[str, str] = {c.name: str(c.key) for c in self.columns if c.name != c.key}
        self._aliases.update((attribute, key) for attribute, key in self._attributes if attribute != key)
        self.key: Tuple[str, ...] = self._conflict_key(conflict)
        self._key_getter: Callable[[Row], Any] = operator.itemgetter(*self.key) if self.key else _no_key
        self.version: Optional[str] = self._version_key(version)
        # Columns whose value, when None, is left to the database: identity, serial, server default.
        # (``Table.autoincrement_column`` is not public in SQLAlchemy 2.0.0, which setup.py allows.)
        serial = self.table._autoincrement_column
        self._database_filled = frozenset(
            c.key for c in self.columns
            if c.server_default is not None or c.identity is not None or c is serial)
        self._database_filled_order = tuple(c.key for c in self.columns if c.key in self._database_filled)
        self._python_defaults: List[Tuple[str, Any]] = [(c.key, c.default) for c in self.columns
                                 if c.default is not None and (c.default.is_scalar or c.default.is_callable)]

    @property
    def name(self) -> str:
        return self.table.fullname

    def _conflict_key(self, conflict: Union[None, str, Sequence[str]]) -> Tuple[str, ...]:
        if conflict is None:
            return tuple(c.key for c in self.table.primary_key.columns)
        if isinstance(conflict, str):
            for constraint in self.table.constraints:
                if constraint.name == conflict and isinstance(
                        constraint, (sqlalchemy.UniqueConstraint, sqlalchemy.PrimaryKeyConstraint)):
                    return tuple(c.key for c in constraint.columns)
            for index in self.table.indexes:
                if index.name == conflict and index.unique:
                    return tuple(c.key for c in index.columns)
            raise ValueError(f"table {self.name!r} has no unique constraint named {conflict!r}")
        keys = tuple(self._aliases.get(name, name) for name in conflict)
        unknown = [name for name, key in zip(conflict, keys) if key not in self._keys]
        if unknown:
            raise ValueError(f"table {self.name!r} has no column {unknown[0]!r}")
        return keys

    def _version_key(self, version: Optional[str]) -> Optional[str]:
        if version is None:
            flagged = [str(c.key) for c in self.columns if c.info.get("version")]
            if len(flagged) > 1:
                raise ValueError(f"table {self.name!r} flags {len(flagged)} version columns: {flagged}")
            return flagged[0] if flagged else None
        key = self._aliases.get(version, version)
        if key not in self._keys:
            raise ValueError(f"table {self.name!r} has no column {version!r} to take as the version")
        if key in self.key:
            raise ValueError(f"the version column {version!r} of table {self.name!r} is part of the conflict key")
        return key

    def row(self, value: Any) -> Row:
        """The row for a mapped instance or a dict of column values; raises :class:`RowError`.

        A dict that needs no renaming and no defaults is used as it is, not copied.
        """
        row: Row
        if isinstance(value, dict):
            row = {self._aliases.get(k) or k: v for k, v in value.items()} if self._aliases else value
            if not self._keys.issuperset(row):
                raise RowError(f"table {self.name!r} has no column {sorted(set(row) - self._keys)[0]!r}")
        elif self._attributes and self._maps(value):
            state = value.__dict__
            row = {key: state[attribute] for attribute, key in self._attributes if attribute in state}
        else:
            raise RowError(f"expected a {self.label} or a dict of its columns, not {type(value).__name__}")
        if self._python_defaults:
            missing = [(key, default) for key, default in self._python_defaults if key not in row]
            if missing:
                row = dict(row) if row is value else row
                for key, default in missing:
                    row[key] = default.arg(None) if default.is_callable else default.arg
        return row

    def _maps(self, value: Any) -> bool:
        """True for an instance of a class mapped to this table (not checked by class: the
        class need not be importable where the rows are written)."""
        state = getattr(value, "_sa_instance_state", None)
        return state is not None and getattr(state.mapper.local_table, "fullname", None) == self.name

    def groups(self, rows: Iterable[Row]) -> Dict[Tuple[str, ...], List[Row]]:
        """Rows grouped by the columns they write, so that each group is one statement.

        A row writes every column except the ones the database fills in
        (identity, serial, server default) that the row leaves None.
        """
        if not self._database_filled:
            rows = list(rows)
            return {tuple(c.key for c in self.columns): rows} if rows else {}
        by_left_out: Dict[Tuple[str, ...], List[Row]] = {}
        for row in rows:
            left_out = tuple(k for k in self._database_filled_order if row.get(k) is None)
            by_left_out.setdefault(left_out, []).append(row)
        return {tuple(c.key for c in self.columns if c.key not in left_out): group
                for left_out, group in by_left_out.items()}

    def key_of(self, row: Row) -> Any:
        """The row's conflict key (None for a missing column, which the database then refuses)."""
        try:
            return self._key_getter(row)
        except KeyError:
            return tuple(row.get(k) for k in self.key)


def _no_key(row: Row) -> Tuple[()]:
    return ()


def latest_per_key(spec: TableSpec, rows: Sequence[Row]) -> List[Row]:
    """One row per conflict key: the one with the highest version (of equal versions, and
    without a version column, the last to arrive), in the order of their last appearance.
    A row without a version is older than any row with one."""
    latest: Dict[Any, Row] = {}
    version = spec.version
    for row in rows:
        key = spec.key_of(row)
        kept = latest.pop(key, None)
        if kept is not None and version is not None and _older(row.get(version), kept.get(version)):
            row = kept
        latest[key] = row
    return list(latest.values())


def _older(version: Any, than: Any) -> bool:
    if version is None or than is None:
        return version is None and than is not None
    try:
        return bool(version < than)
    except TypeError:  # versions that do not compare: the database will tell
        return False

