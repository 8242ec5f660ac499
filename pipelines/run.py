"""``run``: read updates, run every sink of a set of definitions, report what happened."""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Iterable, List

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, _BeamArgumentParser

from pipelines.build import JobSettings, build_job, selected_sinks
from pipelines.options import SinkOptions
from pipelines.sources import ReadUpdates, check_input
from pipelines.summary import counters, summary_table
from sinks.registry import Registry
from transforms.dead_letters import DEAD_LETTERS
from transforms.resolve import ResolveMessages

LOCAL_BATCH_RUNNER = "FnApiRunner"
LOCAL_STREAMING_RUNNER = "BundleBasedDirectRunner"


class OptionError(ValueError):
    """A pipeline option Beam does not know."""


def pipeline_options(beam_args: List[str], runner: str | None, streaming: bool) -> PipelineOptions:
    """Beam options from the arguments ``run`` does not consume; unknown ones are an error
    (Beam itself only logs and drops them)."""
    parser = _BeamArgumentParser(allow_abbrev=False)
    for cls in _option_classes(PipelineOptions):
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(beam_args)
    if unknown:
        raise OptionError(f"unknown option(s): {' '.join(unknown)}")
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    standard.streaming = streaming or standard.streaming
    # Name a runner always: without one Beam may try to download Prism at run time.
    standard.runner = runner or standard.runner or (
        LOCAL_STREAMING_RUNNER if standard.streaming else LOCAL_BATCH_RUNNER)
    return options


def _option_classes(base: type) -> Iterable[type]:
    for cls in base.__subclasses__():
        yield cls
        yield from _option_classes(cls)


class _Progress(beam.DoFn):
    """Prints how many updates this worker has read, and how fast, every few seconds."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every

    def setup(self) -> None:
        self._count, self._start = 0, time.monotonic()
        self._next = self._start + self.every

    def process(self, update: Any) -> Iterable[Any]:
        self._count += 1
        if self._count & 1023 == 0 and time.monotonic() >= self._next:
            elapsed = time.monotonic() - self._start
            print(f"read {self._count:,} updates ({self._count / elapsed:,.0f}/s)", file=sys.stderr, flush=True)
            self._next = time.monotonic() + self.every
        yield update


def run_job(registry: Registry, args: argparse.Namespace, beam_args: List[str]) -> int:
    """Builds and runs the job; prints the summary; returns the exit code."""
    chosen = selected_sinks(registry, args.sink or ())
    files = check_input(args.input, args.input_format)
    options = pipeline_options(beam_args, args.runner, args.streaming)
    settings = JobSettings(
        sink_names=[s.spec.name for s in chosen], dead_letters=args.dead_letters,
        num_shards=args.num_shards, create_tables=True if args.create_tables else None,
        database_url=args.database_url, retry=options.view_as(SinkOptions).retry_policy())
    resolver = registry.resolver(args.resolver) if args.resolver else None
    pipeline = beam.Pipeline(options=options)
    read = pipeline | "ReadUpdates" >> ReadUpdates(args.input, args.input_format, raw=resolver is not None)
    records = read.updates | "Progress" >> beam.ParDo(_Progress())
    dead_letters = [read[DEAD_LETTERS]]
    if resolver is not None:
        resolved = records | ResolveMessages(resolver)
        records = resolved.updates
        dead_letters.append(resolved[DEAD_LETTERS])
    build_job(records, registry, settings, extra_dead_letters=dead_letters)
    print(f"running {len(chosen)} sink(s) on {files} file(s) with {options.view_as(StandardOptions).runner}",
          file=sys.stderr)
    started = time.monotonic()
    result = pipeline.run()
    state = result.wait_until_finish()
    elapsed = time.monotonic() - started
    print(summary_table(result, settings.sink_names))
    read_count = counters(result).get("sinks.source", {}).get("updates_read", 0)
    print(f"{read_count:,} updates in {elapsed:.1f} s ({read_count / max(elapsed, 1e-9):,.0f}/s)")
    if args.show_rows:
        print(first_rows(chosen, settings, args.show_rows))
    letters = counters(result).get("sinks.dead_letters", {}).get("written", 0)
    if letters:
        print(f"{letters:,} dead letter(s) written under {os.path.abspath(settings.dead_letters)}/")
    return 0 if str(state).endswith("DONE") else 1


def first_rows(chosen: List[Any], settings: JobSettings, limit: int) -> str:
    """The first ``limit`` rows of each table the integration sinks wrote, as text."""
    import sqlalchemy

    from pipelines.build import source_from_url
    blocks = []
    for sink in chosen:
        spec = sink.spec
        if spec.integration is None:
            continue
        source = source_from_url(settings.database_url) if settings.database_url else spec.integration
        table = spec.output_model.__table__
        engine = source.create_engine()
        try:
            with engine.connect() as connection:
                total = connection.execute(sqlalchemy.select(sqlalchemy.func.count()).select_from(table)).scalar()
                rows = connection.execute(sqlalchemy.select(table).limit(limit)).all()
        finally:
            engine.dispose()
        lines = [f"{table.name} ({total:,} rows, first {len(rows)}):", "  " + " | ".join(table.columns.keys())]
        lines += ["  " + " | ".join(str(value) for value in row) for row in rows]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
