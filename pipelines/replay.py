"""``run --replay-dead-letters DIR``: the inputs of earlier failures, fed again through the same definitions.

    DIR/*.jsonl ─ by stage ─┬─ read (its line), parse (its update) ─ updates ─ Assemble … (build_job)
                            ├─ call, per sink ─ its inputs as they were ─ DeliverSink(sink)
                            ├─ write, per sink ─ its row ─ WriteToSQL(the sink's table)
                            └─ any other (resolve, inputs, a sink not run) ─ the dead letters again, unchanged

The files are read by the launching process (dead letters are few and small). They are
moved to ``DIR/replayed/`` by :func:`mark_replayed` once the run has finished, so a replay
that succeeded is not replayed again; what fails again is dead-lettered anew, like any failure.
"""
from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Dict, List, Optional, Tuple

import apache_beam as beam

from sinks.dataframe import DataFrame, column_name, schema_of
from sinks.features import info
from sinks.integrations import SQLSource
from sinks.sink import Sink, SinkInput
from sinks.values import coercer, day, decimal, scalar_coercer, timestamp
from transforms.dead_letters import DEAD_LETTERS, dead_letter
from transforms.deliver import DeliverSink
from transforms.sql import WriteToSQL

REPLAYED = "replayed"          # the sub-directory replayed files are moved to
UPDATE_STAGES = ("parse", "route")    # stages whose records hold an update, as read


class NotReplayable(ValueError):
    """A record whose input cannot be turned back into what its stage takes."""


@dataclass
class DeadLetters:
    """What a dead-letter directory holds, sorted by where each record goes again."""

    files: List[str] = field(default_factory=list)
    lines: List[Tuple[str, Optional[str], Optional[int]]] = field(default_factory=list)  # read: text, file, line
    updates: List[Any] = field(default_factory=list)                                      # parse
    calls: Dict[str, List[Tuple[Any, Dict[str, Any]]]] = field(default_factory=dict)     # sink → (key, inputs)
    rows: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)                  # sink → rows
    kept: List[Dict[str, Any]] = field(default_factory=list)                              # dead-lettered again

    @property
    def replayed(self) -> int:
        return (len(self.lines) + len(self.updates) + sum(map(len, self.calls.values()))
                + sum(map(len, self.rows.values())))


def read_dead_letters(directory: str, sinks: Dict[str, Sink]) -> DeadLetters:
    """The records of the ``*.jsonl`` files directly under ``directory``, for the ``sinks`` run."""
    found = DeadLetters()
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not name.endswith(".jsonl") or not os.path.isfile(path):
            continue
        found.files.append(path)
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    _sort(found, path, number, line, sinks)
    return found


def _sort(found: DeadLetters, path: str, number: int, line: str, sinks: Dict[str, Sink]) -> None:
    try:
        record = json.loads(line)
        stage, sink_name = record["stage"], record.get("sink")
        value = json.loads(record["input"])
    except (ValueError, KeyError, TypeError) as error:
        found.kept.append(dead_letter("replay", None, error, {"file": path, "line": number, "text": line[:2000]},
                                      reason=f"not a dead-letter record: {error}"))
        return
    sink = sinks.get(sink_name) if sink_name else None
    try:
        if stage == "read" and isinstance(value, dict) and isinstance(value.get("text"), str):
            found.lines.append((value["text"], value.get("file"), value.get("line")))
        elif stage in UPDATE_STAGES:
            found.updates.append(value)
        elif stage == "call" and sink is not None:
            key = json.loads(record["key"]) if "key" in record else None
            found.calls.setdefault(sink.spec.name, []).append((key, call_inputs(sink, value)))
        elif stage == "write" and sink is not None and sink.spec.integration is not None:
            found.rows.setdefault(sink.spec.name, []).append(table_row(sink.spec.output_model, value))
        else:
            found.kept.append(record)
    except NotReplayable as error:
        found.kept.append(dead_letter(stage, sink_name, error, value, reason=f"cannot replay: {error}",
                                      **({"key": json.loads(record["key"])} if "key" in record else {})))


def call_inputs(sink: Sink, value: Any) -> Dict[str, Any]:
    """A call record's input as the sink's function took it: typed values, has-many inputs as
    ``DataFrame``s (already filtered and windowed when they failed), a batch sink's row by column."""
    if not isinstance(value, dict):
        raise NotReplayable(f"the input of sink '{sink.spec.name}' is not an object")
    inputs = {}
    for spec_input in sink.spec.inputs:
        name = column_name(spec_input.ref) if sink.spec.is_batch else spec_input.parameter
        if name not in value:
            raise NotReplayable(f"the input lacks '{name}'")
        try:
            inputs[name] = _frame(spec_input, value[name]) if spec_input.is_has_many else _typed(
                spec_input.ref.leaf.type, value[name])
        except (TypeError, ValueError) as error:
            raise NotReplayable(f"'{name}' = {value[name]!r:.200}: {error}") from None
    return inputs


def _frame(spec_input: SinkInput, rows: Any) -> DataFrame:
    ref = spec_input.ref
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise TypeError("expected the rows of a DataFrame")
    related = info(ref.leaf.related)
    columns = list(ref.projection or related.scalars)
    names, types = schema_of(columns)
    typed = [{name: _typed(kind, row.get(name)) for name, kind in zip(names, types)} for row in rows]
    return DataFrame(typed, columns=columns, time_column=related.feature_time)


def _typed(kind: Any, value: Any) -> Any:
    """A JSON value of a dead letter as a value of the feature type ``kind``."""
    if value is None or kind is None:
        return value
    if kind is bytes and isinstance(value, str):
        return base64.b64decode(value)
    convert = coercer(kind) or scalar_coercer(kind)
    return convert(value)


def table_row(model: Optional[type], value: Any) -> Dict[str, Any]:
    """A write record's row, with the values the table's column types take (timestamps, dates,
    decimals, bytes) turned back from their JSON form."""
    if model is None or not isinstance(value, dict):
        raise NotReplayable("the input is not a row of the table (its sink returned something else)")
    table = getattr(model, "__table__")
    row = {}
    for name, item in value.items():
        column = table.columns.get(name)
        try:
            kind = column.type.python_type if column is not None else None
        except NotImplementedError:
            kind = None
        try:
            row[name] = _column_value(kind, item)
        except (TypeError, ValueError) as error:
            raise NotReplayable(f"column '{name}' = {item!r:.200}: {error}") from None
    return row


def _column_value(kind: Any, value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    if kind is datetime:
        return timestamp(value)
    if kind is date:
        return day(value)
    if kind is Decimal:
        return decimal(value)
    if kind is bytes:
        return base64.b64decode(value)
    return value


def replay_branches(pipeline: beam.Pipeline, letters: DeadLetters, sinks: Dict[str, Sink],
                    integration: Optional[SQLSource], deliver_options: Dict[str, Any]) -> List[beam.PCollection]:
    """The call and write branches of a replay, and the records kept; returns their dead letters.

    ``deliver_options`` are :class:`DeliverSink`'s (the run's retry, shards, write settings)."""
    dead: List[beam.PCollection] = []
    for name, pairs in letters.calls.items():
        sink = sinks[name]
        delivered = (pipeline
                     | f"ReplayCalls({name})" >> beam.Create(pairs, reshuffle=False)
                     | f"ReplayDeliver({name})" >> DeliverSink(
                         sink, integration=integration if sink.spec.integration is not None else None,
                         **deliver_options))
        dead.append(delivered[DEAD_LETTERS])
    for name, rows in letters.rows.items():
        spec = sinks[name].spec
        target = integration or spec.integration
        assert target is not None and spec.output_model is not None   # records of integration sinks only
        written = (pipeline
                   | f"ReplayRows({name})" >> beam.Create(rows, reshuffle=False)
                   | f"ReplayWrite({name})" >> WriteToSQL(
                       target, spec.output_model, upsert=spec.upsert, name=spec.name,
                       num_shards=deliver_options["write_shards"], create_tables=deliver_options["create_tables"],
                       validate=deliver_options["validate"], retry=deliver_options["write_retry"]))
        dead.append(written[DEAD_LETTERS])
    if letters.kept:
        dead.append(pipeline | "ReplayKept" >> beam.Create(letters.kept, reshuffle=False))
    return dead


def mark_replayed(letters: DeadLetters, directory: str) -> None:
    """Move the files replayed to ``directory/replayed/``: a later replay leaves them alone."""
    target = os.path.join(directory, REPLAYED)
    os.makedirs(target, mode=0o700, exist_ok=True)
    for path in letters.files:
        os.replace(path, os.path.join(target, os.path.basename(path)))
