"""``generate``: deterministic sample feature updates for a set of definitions.

Classes that point at no other class are *entities* (``--entities`` of each).
A class with a foreign key to another is a child of it: one per parent when the
parent declares a has-one relation to it, 5–25 per parent (spread over
``--days``) for a has-many. String features compared with literals in any sink's
filters (``Transfer.status == "successful"``) take those literals, so filters match.
The same arguments always give the same file.
"""
from __future__ import annotations

import csv
import json
import random
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from pipelines.sources import format_of
from sinks.features import Feature, info
from sinks.filters import Comparison, Filter, IsIn
from sinks.registry import Registry

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _literals(registry: Registry) -> Dict[Tuple[type, str], List[Any]]:
    """Values each feature is compared with in the sinks' filters."""
    found: Dict[Tuple[type, str], List[Any]] = {}

    def visit(item: Filter) -> None:
        if isinstance(item, Comparison) and not isinstance(item.value, Feature):
            found.setdefault((item.ref.root, item.ref.leaf.name), []).append(item.value)
        elif isinstance(item, IsIn):
            found.setdefault((item.ref.root, item.ref.leaf.name), []).extend(item.values)
        for child in ("left", "right", "inner"):
            if hasattr(item, child):
                visit(getattr(item, child))

    for sink in registry.sinks.values():
        for spec_input in sink.spec.inputs:
            for item in spec_input.ref.filters:
                visit(item)
    return found


class _Generator:
    def __init__(self, registry: Registry, entities: int, days: int, seed: int) -> None:
        self.registry = registry
        self.entities = entities
        self.span = timedelta(days=days)
        self.rng = random.Random(seed)
        self.literals = _literals(registry)

    def parent_of(self, cls: type) -> Optional[Tuple[Feature, type, bool]]:
        """(foreign key, parent class, many) for a class that points at another."""
        for fk in info(cls).scalars:
            parent = fk.foreign_key.owner if fk.foreign_key is not None else None
            if parent is None or parent is cls:
                continue
            many = any(f.kind == "has_many" and f.related is cls for f in info(parent).features.values())
            return fk, parent, many
        return None

    def updates(self) -> List[Dict[str, Any]]:
        classes = list(self.registry.feature_classes.values())
        keys: Dict[type, List[Tuple[Any, datetime]]] = {}
        out: List[Tuple[datetime, Dict[str, Any]]] = []
        pending = classes[:]
        while pending:
            ready = [c for c in pending if (p := self.parent_of(c)) is None or p[1] in keys or p[1] not in pending]
            if not ready:
                ready = pending[:1]
            for cls in ready:
                pending.remove(cls)
                keys[cls] = []
                for update, at in self.rows_of(cls, keys):
                    keys[cls].append((update[f"{info(cls).namespace}.{info(cls).primary.name}"], at))
                    out.append((at, update))
        out.sort(key=lambda pair: pair[0])
        return [update for _, update in out]

    def rows_of(self, cls: type,
                keys: Dict[type, List[Tuple[Any, datetime]]]) -> Iterator[Tuple[Dict[str, Any], datetime]]:
        parent = self.parent_of(cls)
        if parent is None or parent[1] not in keys:
            for i in range(self.entities):
                yield self.row(cls, i, START + self.span * self.rng.random() * 0.1, None, None)
            return
        fk, parent_cls, many = parent
        index = 0
        for parent_key, born in keys[parent_cls]:
            for _ in range(self.rng.randint(5, 25) if many else 1):
                at = born + (START + self.span - born) * self.rng.random() if many else born + timedelta(minutes=1)
                yield self.row(cls, index, at, fk, parent_key)
                index += 1

    def row(self, cls: type, index: int, at: datetime, fk: Optional[Feature],
            parent_key: Any) -> Tuple[Dict[str, Any], datetime]:
        class_info = info(cls)
        update: Dict[str, Any] = {}
        for feature in class_info.scalars:
            name = f"{class_info.namespace}.{feature.name}"
            if feature is class_info.primary:
                value: Any = f"{class_info.namespace[0]}{index}" if feature.type is str else index
            elif fk is not None and feature is fk:
                value = parent_key
            elif feature is class_info.feature_time:
                value = at.isoformat()
            elif feature.optional and self.rng.random() < 0.2:
                continue
            else:
                value = self.value(cls, feature, index)
            update[name] = value
        return update, at

    def value(self, cls: type, feature: Feature, index: int) -> Any:
        choices = self.literals.get((cls, feature.name))
        if choices:
            return self.rng.choice(choices + [f"other-{feature.name}"])
        kind = feature.type
        if kind is str:
            return f"{feature.name.replace('_', ' ').title()} {self.rng.randrange(max(self.entities, 10))}"
        if kind is bool:
            return self.rng.random() < 0.5
        if kind is int:
            return self.rng.randrange(1000)
        if kind in (float, Decimal):
            return round(self.rng.uniform(1, 500), 2)
        if kind is datetime:
            return (START + self.span * self.rng.random()).isoformat()
        if kind is date:
            return (START + self.span * self.rng.random()).date().isoformat()
        return None


def generate(registry: Registry, entities: int, out: str, days: int = 180, seed: int = 1) -> int:
    """Writes sample updates to ``out`` (JSONL, CSV or Parquet, by its name); returns how many."""
    updates = _Generator(registry, entities, days, seed).updates()
    kind = format_of(out)
    if kind == "jsonl":
        with open(out, "w", encoding="utf-8") as handle:
            for update in updates:
                handle.write(json.dumps(update) + "\n")
    elif kind == "csv":
        columns = sorted({name for update in updates for name in update})
        with open(out, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows(updates)
    else:
        _write_parquet(updates, out)
    return len(updates)


def _write_parquet(updates: Iterable[Dict[str, Any]], out: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = list(updates)
    columns = sorted({name for update in rows for name in update})
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(
        [pa.field(c, _arrow_type(rows, c)) for c in columns])), out)


def _arrow_type(rows: List[Dict[str, Any]], column: str) -> Any:
    import pyarrow as pa
    sample = next((r[column] for r in rows if r.get(column) is not None), None)
    return {bool: pa.bool_(), int: pa.int64(), float: pa.float64()}.get(type(sample), pa.string())
