"""One job from a set of definitions: source → assemble → (pace →) call → write, dead letters to files.

    updates ─ Assemble ─┬─ sink A ─ DeliverSink ─┬─ written / results
                        ├─ sink B ─ DeliverSink ─┤
                        └─ dead_letters ─────────┴─ WriteDeadLetters(dir)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import List, Optional, Sequence

import apache_beam as beam

from pipelines.dead_letter_files import WriteDeadLetters
from sinks.integrations import MySQLSource, PostgreSQLSource, SQLiteSource, SQLSource
from sinks.registry import Registry
from sinks.sink import Sink
from transforms.assemble import Assemble
from transforms.buffer import Clock
from transforms.call import RetryPolicy
from transforms.dead_letters import DEAD_LETTERS
from transforms.deliver import DeliverSink
from transforms.sql import WriteRetry


@dataclass
class JobSettings:
    """What a job needs besides its definitions and its source."""

    sink_names: Sequence[str] = ()
    dead_letters: str = "dead_letters"
    num_shards: int = 1                    # pacing buffers per paced sink
    write_shards: int = 4                  # parallel writers per upsert table
    create_tables: Optional[bool] = None
    database_url: Optional[str] = None
    allowed_lateness: timedelta = timedelta(0)
    as_of: Optional[datetime] = None       # where a bounded run's windows end (default: the data's clock)
    max_clock_skew: Optional[timedelta] = timedelta(days=1)   # FeatureTime beyond wall clock + this: dead letter
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    write_retry: WriteRetry = field(default_factory=WriteRetry)
    clock: Optional[Clock] = None          # the pacing buffers' processing-time clock
    input_id: Optional[str] = None         # a file input read in bundles (``pipelines.run.bundled_input``)


def source_from_url(url: str) -> SQLSource:
    """The integration a ``--database-url`` names (postgresql://, mysql+pymysql://, sqlite:///)."""
    backend = url.split(":", 1)[0].split("+", 1)[0]
    if backend in ("postgresql", "postgres"):
        return PostgreSQLSource(url=url)
    if backend in ("mysql", "mariadb"):
        return MySQLSource(url=url)
    if backend == "sqlite":
        return SQLiteSource(url.split(":///", 1)[1] if ":///" in url else None)
    raise ValueError(f"--database-url: unsupported database {backend!r} "
                     "(postgresql://..., mysql+pymysql://..., sqlite:///file.db)")


def selected_sinks(registry: Registry, names: Sequence[str]) -> List[Sink]:
    """The sinks to run: those named (KeyError naming the known ones), or all."""
    if not registry.sinks:
        raise KeyError("the definitions declare no sink")
    return [registry.sink(name) for name in names] if names else list(registry.sinks.values())


def build_job(updates: beam.PCollection, registry: Registry, settings: JobSettings,
              extra_dead_letters: Sequence[beam.PCollection] = (), validate: bool = True) -> beam.PCollection:
    """Adds every selected sink's stages after ``updates``; returns the dead letters of all stages.

    With ``validate`` each SQL table is checked against its class now (see ``WriteToSQL``)."""
    chosen = selected_sinks(registry, settings.sink_names)
    override = source_from_url(settings.database_url) if settings.database_url else None
    assembled = updates | "Assemble" >> Assemble(chosen, settings.allowed_lateness, settings.as_of,
                                                 settings.max_clock_skew, settings.input_id)
    letters = [*extra_dead_letters, assembled[DEAD_LETTERS]]
    for sink in chosen:
        delivered = assembled[sink.spec.name] | DeliverSink(
            sink, num_shards=settings.num_shards, retry=settings.retry, clock=settings.clock,
            integration=override if sink.spec.integration is not None else None,
            write_retry=settings.write_retry, write_shards=settings.write_shards,
            create_tables=settings.create_tables, validate=validate)
        letters.append(delivered[DEAD_LETTERS])
    dead = letters | "DeadLetters" >> beam.Flatten()
    dead | "WriteDeadLetters" >> WriteDeadLetters(settings.dead_letters)
    return dead
