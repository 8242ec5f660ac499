"""``run``: read updates, run every sink of a set of definitions, report what happened."""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Iterable, List, Optional, Tuple

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, _BeamArgumentParser

from pipelines.build import JobSettings, build_job, selected_sinks
from pipelines.options import SinkOptions
from pipelines.live import ReadDirectory
from pipelines.sources import ReadUpdates, check_input, is_stream_url, json_record, read_stream
from pipelines.summary import counters, summary_table
from sinks.registry import Registry
from transforms.dead_letters import DEAD_LETTERS
from transforms.resolve import ResolveMessages
from transforms.testing import direct_runner_test_clock

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


def _option_classes(base: Any) -> Iterable[Any]:
    cls: Any
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


def _options(args: argparse.Namespace, beam_args: List[str]) -> Tuple[PipelineOptions, str, Optional[ReadDirectory]]:
    """Pipeline options for the input, what to call the input, and the live directory source if any."""
    if is_stream_url(args.input):
        return pipeline_options(beam_args, args.runner, streaming=True), args.input, None
    if args.follow:
        # Real-time timers on a local runner need the BundleBasedDirectRunner (with its clock).
        live = ReadDirectory(args.input, stop_after=args.stop_after, raw=args.resolver is not None)
        options = pipeline_options(beam_args, args.runner or LOCAL_STREAMING_RUNNER, streaming=False)
        return options, f"files arriving in {args.input}", live
    files = check_input(args.input, args.input_format)
    return pipeline_options(beam_args, args.runner, args.streaming), f"{files} file(s)", None


def _read(pipeline: beam.Pipeline, args: argparse.Namespace, live: Optional[ReadDirectory],
          raw: bool) -> Tuple[beam.PCollection, List[beam.PCollection]]:
    """The input's records (raw messages with ``raw``, else feature updates) and its dead letters."""
    if live is None and not is_stream_url(args.input):
        read = pipeline | "ReadUpdates" >> ReadUpdates(args.input, args.input_format, raw=raw)
        return read.updates, [read[DEAD_LETTERS]]
    if live is not None:
        watched = pipeline | "WatchDirectory" >> live
        return watched.updates, [watched[DEAD_LETTERS]]
    messages = pipeline | "ReadStream" >> read_stream(args.input)
    if raw:
        return messages, []
    parsed = messages | "ParseJson" >> beam.Map(json_record).with_outputs(DEAD_LETTERS, main="updates")
    return parsed.updates, [parsed[DEAD_LETTERS]]


def run_job(registry: Registry, args: argparse.Namespace, beam_args: List[str]) -> int:
    """Builds and runs the job; prints the summary; returns the exit code."""
    chosen = selected_sinks(registry, args.sink or ())
    resolver = registry.resolver(args.resolver) if args.resolver else None
    options, where, live = _options(args, beam_args)
    settings = JobSettings(
        sink_names=[s.spec.name for s in chosen], dead_letters=args.dead_letters,
        num_shards=args.num_shards, create_tables=True if args.create_tables else None,
        database_url=args.database_url, retry=options.view_as(SinkOptions).retry_policy(),
        clock=direct_runner_test_clock if live is not None else None)
    pipeline = beam.Pipeline(options=options)
    records, dead_letters = _read(pipeline, args, live, raw=resolver is not None)
    records = records | "Progress" >> beam.ParDo(_Progress())
    if resolver is not None:
        resolved = records | ResolveMessages(resolver)
        records = resolved.updates
        dead_letters.append(resolved[DEAD_LETTERS])
    build_job(records, registry, settings, extra_dead_letters=dead_letters)
    print(f"running {len(chosen)} sink(s) on {where} with {options.view_as(StandardOptions).runner}",
          file=sys.stderr)
    started = time.monotonic()
    try:
        result = pipeline.run()
        state = result.wait_until_finish()
    finally:
        if live is not None:
            live.stop()
    if live is not None and str(state).endswith("DONE"):
        live.commit()   # every output of the files read is committed: mark them done
    elapsed = time.monotonic() - started
    print(summary_table(result, settings.sink_names))
    if options.view_as(StandardOptions).runner in ("BundleBasedDirectRunner", "DirectRunner"):
        print("note: the DirectRunner reports the metrics of only some bundles; counts above may be low")
    parsed = counters(result).get("sinks.assemble", {})
    count = parsed.get("updates", 0) + parsed.get("dead_letters", 0)
    print(f"{count:,} updates in {elapsed:.1f} s ({count / max(elapsed, 1e-9):,.0f}/s)")
    if args.show_rows:
        print(first_rows(chosen, settings, args.show_rows))
    letters = _dead_letters_since(settings.dead_letters, time.time() - elapsed - 1)
    if letters:
        print(f"{letters:,} dead letter(s) written under {os.path.abspath(settings.dead_letters)}/")
    return 0 if str(state).endswith("DONE") else 1


def _dead_letters_since(directory: str, since: float) -> int:
    """Records in the dead-letter files this run wrote (counted from the files: metrics may miss some)."""
    if not os.path.isdir(directory):
        return 0
    count = 0
    for entry in os.scandir(directory):
        if entry.name.endswith(".jsonl") and entry.stat().st_mtime >= since:
            with open(entry.path, "rb") as handle:
                count += sum(1 for _ in handle)
    return count


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
