"""Checking a target table against its mapped class before any data moves, and creating
missing tables.

A mismatch is refused with an error naming the sink, the table and the
column: a missing table or column, a column whose type cannot hold the mapped
values, a NOT NULL column without default that the class never writes, or an
conflict key (of an upsert, or an append that skips stored keys) the table does not
enforce as unique.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import sqlalchemy
from sqlalchemy import types
from sqlalchemy.engine import Engine

from transforms.sql.errors import SchemaMismatchError
from transforms.sql.table import TableSpec

# Type families, most specific first; a mapped family may be written to any in its set.
# Float is listed beside Numeric: since SQLAlchemy 2.1 it no longer subclasses it.
_FAMILIES: List[Tuple[str, Any]] = [
    ("boolean", types.Boolean), ("integer", types.Integer), ("numeric", (types.Numeric, types.Float)),
    ("datetime", types.DateTime), ("date", types.Date), ("time", types.Time),
    ("interval", types.Interval), ("json", types.JSON), ("binary", types._Binary),
    ("uuid", types.Uuid), ("array", types.ARRAY), ("string", types.String),
]
_WRITABLE_TO = {
    "boolean": {"boolean", "integer"},  # MySQL's BOOL is TINYINT(1)
    "integer": {"integer", "numeric", "boolean"},
    "numeric": {"numeric"},
    "datetime": {"datetime"},
    "date": {"date", "datetime"},
    "time": {"time"},
    "interval": {"interval", "datetime"},  # MySQL and SQLite store intervals as datetimes
    "json": {"json", "string"},  # MariaDB's JSON is LONGTEXT
    "binary": {"binary"},
    "uuid": {"uuid", "string", "binary"},
    "array": {"array", "json"},
    "string": {"string", "json", "uuid"},
}


def _family(type_: types.TypeEngine) -> Optional[str]:
    for family, base in _FAMILIES:
        if isinstance(type_, base):
            return family
    if isinstance(type_, types.TypeDecorator):
        return _family(type_.impl_instance)
    return None


def prepare_table(engine: Engine, spec: TableSpec, sink: str, create: bool, keyed: bool) -> None:
    """Create the table when asked and missing, then check it; raises :class:`SchemaMismatchError`."""
    inspector = sqlalchemy.inspect(engine)
    table = spec.table
    where = f"sink {sink!r}: table {spec.name!r}"
    if not inspector.has_table(table.name, schema=table.schema):
        if not create:
            raise SchemaMismatchError(f"{where} does not exist (create it, or pass create_tables=True)")
        table.create(engine, checkfirst=True)
        inspector = sqlalchemy.inspect(engine)
    reflected: Dict[str, Any] = {
        c["name"]: c for c in inspector.get_columns(table.name, schema=table.schema)}
    for column in spec.columns:
        found = reflected.get(column.name)
        if found is None:
            raise SchemaMismatchError(f"{where} has no column {column.name!r} (mapped by {spec.label})")
        mapped, stored = _family(column.type), _family(found["type"])
        if mapped and stored and stored not in _WRITABLE_TO[mapped]:
            raise SchemaMismatchError(
                f"{where}, column {column.name!r}: the table's type {found['type']} cannot hold "
                f"{spec.label}'s {column.type}")
    mapped_names = {c.name for c in spec.columns}
    for name, found in reflected.items():
        if (name not in mapped_names and not found.get("nullable", True) and found.get("default") is None
                and not found.get("autoincrement") and not found.get("identity")):
            raise SchemaMismatchError(
                f"{where}, column {name!r} is NOT NULL without a default, and {spec.label} does not map it")
    if keyed:  # upserts and skip_existing appends
        _check_unique(inspector, spec, where)


def _check_unique(inspector: Any, spec: TableSpec, where: str) -> None:
    key = set(spec.table.columns[k].name for k in spec.key)
    if not key:
        raise SchemaMismatchError(f"{where} has no primary key to write by (name a unique constraint)")
    table = spec.table
    unique: List[set] = [set(inspector.get_pk_constraint(table.name, schema=table.schema)
                             .get("constrained_columns") or [])]
    unique += [set(u["column_names"]) for u in inspector.get_unique_constraints(table.name, schema=table.schema)]
    unique += [set(i["column_names"]) for i in inspector.get_indexes(table.name, schema=table.schema)
               if i.get("unique")]
    if key not in unique:
        raise SchemaMismatchError(
            f"{where} has no primary key or unique constraint on ({', '.join(sorted(key))}) to write by")
