"""``generate``: deterministic sample feature updates for a set of definitions.

Classes that point at no other class are *entities* (``--entities`` of each).
A class with a foreign key to another is a child of it: one per parent when the
parent declares a has-one relation to it, 5–25 per parent (spread over
``--days``) for a has-many. String features compared with literals in any sink's
filters (``Transfer.status == "successful"``) take those literals, so filters match.
The same arguments always give the same file.

Updates are written in event-time order without holding them all: they are made in runs of
``RUN_SIZE``, each run sorted and spilled to a temporary file, and the runs merged. Only the keys
of classes that other classes hang from stay in memory (a key and a time per parent).
"""
from __future__ import annotations

import csv
import heapq
import json
import random
import tempfile
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import IO, Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple

from pipelines.sources import format_of
from sinks.features import Feature, info
from sinks.filters import Comparison, Filter, IsIn
from sinks.registry import Registry

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
# Updates sorted in memory at a time (a run of 50,000 bank updates holds ~100 MB).
RUN_SIZE = 50_000


class Generated(NamedTuple):
    """One sample update, with what orders it: its event time, then the order it was made in."""

    at: datetime
    seq: int
    update: Dict[str, Any]


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

    def updates(self) -> Iterator[Generated]:
        """Every update, in the order they are made (not yet by time)."""
        classes = list(self.registry.feature_classes.values())
        parents = {p[1] for c in classes if (p := self.parent_of(c)) is not None}
        keys: Dict[type, List[Tuple[Any, datetime]]] = {}
        seq = 0
        pending = classes[:]
        while pending:
            ready = [c for c in pending if (p := self.parent_of(c)) is None or p[1] in keys or p[1] not in pending]
            if not ready:
                ready = pending[:1]
            for cls in ready:
                pending.remove(cls)
                keys[cls] = []
                primary = f"{info(cls).namespace}.{info(cls).primary.name}"
                for update, at in self.rows_of(cls, keys):
                    if cls in parents:
                        keys[cls].append((update[primary], at))
                    yield Generated(at, seq, update)
                    seq += 1

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
    columns: Dict[str, Any] = {}          # every feature name written, with a sample value
    with tempfile.TemporaryDirectory(prefix="sinks-generate-") as spill:
        runs = _sorted_runs(_Generator(registry, entities, days, seed).updates(), spill, columns)
        updates = heapq.merge(*(_read_run(run) for run in runs), key=lambda g: (g.at, g.seq))
        kind = format_of(out)
        if kind == "jsonl":
            count = _write_jsonl(updates, out)
        elif kind == "csv":
            count = _write_csv(updates, sorted(columns), out)
        else:
            count = _write_parquet(updates, columns, out)
        for run in runs:
            run.close()
    return count


def _sorted_runs(updates: Iterator[Generated], spill: str, columns: Dict[str, Any]) -> List[IO[str]]:
    """``updates`` in runs of ``RUN_SIZE``, each sorted by (time, seq) into a file under ``spill``."""
    runs: List[IO[str]] = []
    batch: List[Generated] = []
    for generated in updates:
        for name, value in generated.update.items():
            if columns.get(name) is None:
                columns[name] = value
        batch.append(generated)
        if len(batch) == RUN_SIZE:
            runs.append(_spill(batch, spill))
            batch = []
    if batch:
        runs.append(_spill(batch, spill))
    return runs


def _spill(batch: List[Generated], spill: str) -> IO[str]:
    batch.sort(key=lambda g: (g.at, g.seq))
    run = tempfile.TemporaryFile("w+", encoding="utf-8", dir=spill)
    for generated in batch:
        run.write(json.dumps([generated.at.isoformat(), generated.seq, generated.update]) + "\n")
    run.seek(0)
    return run


def _read_run(run: IO[str]) -> Iterator[Generated]:
    for line in run:
        at, seq, update = json.loads(line)
        yield Generated(datetime.fromisoformat(at), seq, update)


def _write_jsonl(updates: Iterable[Generated], out: str) -> int:
    count = 0
    with open(out, "w", encoding="utf-8") as handle:
        for generated in updates:
            handle.write(json.dumps(generated.update) + "\n")
            count += 1
    return count


def _write_csv(updates: Iterable[Generated], columns: List[str], out: str) -> int:
    count = 0
    with open(out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for generated in updates:
            writer.writerow(generated.update)
            count += 1
    return count


def _write_parquet(updates: Iterable[Generated], columns: Dict[str, Any], out: str) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq
    kinds = {bool: pa.bool_(), int: pa.int64(), float: pa.float64()}
    schema = pa.schema([pa.field(name, kinds.get(type(columns[name]), pa.string())) for name in sorted(columns)])
    count = 0
    with pq.ParquetWriter(out, schema) as writer:
        rows: List[Dict[str, Any]] = []
        for generated in updates:
            rows.append(generated.update)
            if len(rows) == RUN_SIZE:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                count += len(rows)
                rows = []
        if rows or not count:
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
            count += len(rows)
    return count
