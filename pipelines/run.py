"""``run``: read updates, run every sink of a set of definitions, report what happened."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections import Counter
from typing import Any, Iterable, List, NoReturn, Optional, Sequence, Tuple

import apache_beam as beam
import sqlalchemy
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, _BeamArgumentParser

from pipelines import in_process, progress
from pipelines.build import JobSettings, build_job, selected_sinks, source_from_url
from pipelines.errors import CommandError, table_write_error
from pipelines.live import ReadDirectory, unsupported_runner
from pipelines.live_clock import LiveClock
from pipelines.options import SinkOptions, check_url, clock_settings, write_retry
from pipelines.replay import DeadLetters, mark_replayed, read_dead_letters, replay_branches
from pipelines.sources import RECORDS_PER_BUNDLE, ReadUpdates, check_input, is_stream_url, json_record, read_stream
from pipelines.summary import counters, show_value, summary_table
from sinks.registry import Registry
from sinks.selection import select_sinks
from sinks.sink import Sink
from transforms.assemble import reads_in_bundles
from transforms.dead_letters import DEAD_LETTERS
from transforms.resolve import ResolveMessages
from transforms.sql.schema import SchemaMismatchError

LOCAL_BATCH_RUNNER = "FnApiRunner"
LOCAL_STREAMING_RUNNER = "BundleBasedDirectRunner"
ROWS_NOT_WRITTEN = 3     # exit status of a run that finished but abandoned some writes


def pipeline_options(beam_args: List[str], runner: str | None, streaming: bool) -> PipelineOptions:
    """Beam options from the arguments ``run`` does not consume; unknown ones are a
    :class:`CommandError` (Beam itself only logs and drops them)."""
    parser = _OptionParser(allow_abbrev=False)
    for cls in _option_classes(PipelineOptions):
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(beam_args)
    if unknown:
        raise CommandError(f"unknown option(s): {' '.join(unknown)}")
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    standard.streaming = streaming or standard.streaming
    # Name a runner always: without one Beam may try to download Prism at run time.
    standard.runner = runner or standard.runner or (
        LOCAL_STREAMING_RUNNER if standard.streaming else LOCAL_BATCH_RUNNER)
    return options


class _OptionParser(_BeamArgumentParser):
    """Beam's option parser, reporting a bad value as one line (a :class:`CommandError`)."""

    def error(self, message: str) -> NoReturn:
        raise CommandError(message)


def _option_classes(base: Any) -> Iterable[Any]:
    cls: Any
    for cls in base.__subclasses__():
        yield cls
        yield from _option_classes(cls)


def chosen_sinks(registry: Registry, names: Iterable[str], environment: Optional[str] = None,
                 tags: Sequence[str] = ()) -> List[Sink]:
    """The sinks to run: those named, or all, deployed in ``environment`` with ``tags``
    (``sinks.selection``); a :class:`CommandError` names the known ones."""
    if not registry.sinks:
        raise CommandError("the definitions declare no sink (decorate a function with @sink)")
    unknown = [name for name in names if name not in registry.sinks]
    if unknown:
        raise CommandError(f"--sink: no sink named '{unknown[0]}' (sinks: {', '.join(sorted(registry.sinks))})")
    named = selected_sinks(registry, list(names))
    try:
        return select_sinks(named, environment, tags)
    except KeyError as error:
        raise CommandError(str(error.args[0])) from None


def _options(args: argparse.Namespace, beam_args: List[str]) -> Tuple[PipelineOptions, str, Optional[ReadDirectory]]:
    """Pipeline options for the input, what to call the input, and the live directory source if any."""
    if args.replay_dead_letters is not None:
        return (pipeline_options(beam_args, args.runner, args.streaming),
                f"the dead letters in {args.replay_dead_letters}", None)
    if is_stream_url(args.input):
        return pipeline_options(beam_args, args.runner, streaming=True), args.input, None
    if args.follow:
        # Real-time timers on a local runner need the BundleBasedDirectRunner (with its clock).
        options = pipeline_options(beam_args, args.runner or LOCAL_STREAMING_RUNNER, streaming=False)
        refused = unsupported_runner(options.view_as(StandardOptions).runner)
        if refused:
            raise CommandError(refused)
        if not os.path.isdir(args.input):
            raise CommandError(f"--input {args.input}: with --follow, a directory to watch")
        return options, f"files arriving in {args.input}", ReadDirectory(
            args.input, stop_after=args.stop_after, raw=args.resolver is not None)
    files = check_input(args.input, args.input_format)
    return pipeline_options(beam_args, args.runner, args.streaming), f"{files} file(s)", None


def bundled_input(options: PipelineOptions, sinks: Sequence[Sink]) -> Optional[str]:
    """An id for a file input that ``ReadUpdates`` reads in bundles of ``RECORDS_PER_BUNDLE``
    records, and ``Assemble`` over ``sinks`` is told of: when the FnApiRunner runs the job in this
    process (which otherwise reads it in one bundle) and the sinks' windows allow it
    (``reads_in_bundles``); None otherwise."""
    if in_process.runs_in_process(options) and reads_in_bundles(sinks):
        return uuid.uuid4().hex
    return None


def _read(pipeline: beam.Pipeline, args: argparse.Namespace, live: Optional[ReadDirectory],
          raw: bool, input_id: Optional[str]) -> Tuple[beam.PCollection, List[beam.PCollection]]:
    """The input's records (raw messages with ``raw``, else feature updates) and its dead letters;
    a file input in bundles when ``input_id`` names it."""
    assert args.input is not None
    if live is None and not is_stream_url(args.input):
        read = pipeline | "ReadUpdates" >> ReadUpdates(
            args.input, args.input_format, raw=raw, records_per_bundle=RECORDS_PER_BUNDLE if input_id else None,
            input_id=input_id)
        return read.updates, [read[DEAD_LETTERS]]
    if live is not None:
        watched = pipeline | "WatchDirectory" >> live
        return watched.updates, [watched[DEAD_LETTERS]]
    messages = pipeline | "ReadStream" >> read_stream(args.input)
    if raw:
        return messages, []
    parsed = messages | "ParseJson" >> beam.Map(json_record).with_outputs(DEAD_LETTERS, main="updates")
    return parsed.updates, [parsed[DEAD_LETTERS]]


def _replayed_updates(pipeline: beam.Pipeline, letters: DeadLetters) -> Tuple[beam.PCollection, beam.PCollection]:
    """The updates of the read and parse dead letters (a line is read again), and the read's dead letters."""
    lines = (pipeline
             | "ReplayLines" >> beam.Create(letters.lines, reshuffle=False)
             | "ReadLines" >> beam.Map(lambda line: json_record(line[0].encode("utf-8"), line[1], line[2]))
             .with_outputs(DEAD_LETTERS, main="updates"))
    updates = pipeline | "ReplayUpdates" >> beam.Create(letters.updates, reshuffle=False)
    return (updates, lines.updates) | "Updates" >> beam.Flatten(), lines[DEAD_LETTERS]


def _check_integrations(chosen: List[Sink], database_url: Optional[str]) -> None:
    """Every database URL the run will use, checked before anything runs."""
    if database_url:
        return   # checked with the other flags
    for sink in chosen:
        if sink.spec.integration is not None:
            where = f"sink {sink.spec.name}: {type(sink.spec.integration).__name__}"
            try:
                url = sink.spec.integration.url
            except ValueError:
                raise CommandError(f"{where}: the port must be a number from 1 to 65535") from None
            check_url(url, where)


def run_job(registry: Registry, args: argparse.Namespace, beam_args: List[str]) -> int:
    """Builds and runs the job; prints the summary; returns the exit code."""
    chosen = chosen_sinks(registry, args.sink or (), args.environment, args.tag or ())
    if args.resolver and args.resolver not in registry.resolvers:
        raise CommandError(f"--resolver: no stream resolver named '{args.resolver}' "
                           f"(resolvers: {', '.join(sorted(registry.resolvers)) or 'none'})")
    resolver = registry.resolvers[args.resolver] if args.resolver else None
    _check_integrations(chosen, args.database_url)
    replay = None
    if args.replay_dead_letters is not None:
        replay = read_dead_letters(args.replay_dead_letters, {sink.spec.name: sink for sink in chosen})
    options, where, live = _options(args, beam_args)
    is_live = live is not None or (args.input is not None and is_stream_url(args.input))
    clock = LiveClock() if live is not None else None
    input_id = bundled_input(options, chosen) if replay is None and not is_live else None
    settings = JobSettings(
        sink_names=[s.spec.name for s in chosen], dead_letters=args.dead_letters,
        num_shards=args.num_shards, write_shards=args.write_shards,
        create_tables=True if args.create_tables else None, database_url=args.database_url,
        retry=options.view_as(SinkOptions).retry_policy(), write_retry=write_retry(args, is_live),
        clock=clock, input_id=input_id, **clock_settings(args))
    try:
        pipeline = beam.Pipeline(options=options)
    except ValueError as error:   # Beam refuses the runner it was asked for
        raise CommandError(f"--runner: {str(error).splitlines()[0]}") from None
    try:
        if replay is not None:
            records, unreadable = _replayed_updates(pipeline, replay)
            dead_letters = [unreadable, *replay_branches(
                pipeline, replay, {sink.spec.name: sink for sink in chosen},
                source_from_url(settings.database_url) if settings.database_url else None,
                dict(num_shards=settings.num_shards, retry=settings.retry, clock=settings.clock,
                     write_retry=settings.write_retry, write_shards=settings.write_shards,
                     create_tables=settings.create_tables, validate=True))]
        else:
            records, dead_letters = _read(pipeline, args, live, raw=resolver is not None, input_id=input_id)
        if progress.wanted() and replay is None:
            total = None if is_live else progress.records_in(args.input, args.input_format)
            records = records | "Progress" >> beam.ParDo(progress.ShowProgress(total))
        if resolver is not None:
            resolved = records | ResolveMessages(resolver)
            records = resolved.updates
            dead_letters.append(resolved[DEAD_LETTERS])
        try:
            build_job(records, registry, settings, extra_dead_letters=dead_letters)
        except SchemaMismatchError as error:
            raise CommandError(str(error).replace("pass create_tables=True", "pass --create-tables")) from error
        except sqlalchemy.exc.DBAPIError as error:
            first = str(error.orig if error.orig is not None else error).strip().splitlines()
            raise CommandError(f"cannot use the database: {first[0] if first else type(error).__name__}") from error
    except BaseException:
        if live is not None:
            live.stop()   # it listens for SIGTERM/SIGINT from the moment it is built
        raise
    print(f"running {len(chosen)} sink(s) on {where} with {options.view_as(StandardOptions).runner}",
          file=sys.stderr)
    started = time.monotonic()
    try:
        with in_process.settings(options):
            if clock is not None:
                with clock.capturing():
                    result = pipeline.run()
            else:
                result = pipeline.run()
            state = result.wait_until_finish()
    except Exception as error:
        cannot_write = table_write_error(error)
        if cannot_write is None:
            raise
        raise CommandError(cannot_write) from error   # the table or the login, not the data: one line
    finally:
        if live is not None:
            live.stop()
        if clock is not None:
            clock.release()
    if live is not None and str(state).endswith("DONE"):
        live.commit()   # every output of the files read is committed: mark them done
    if replay is not None and str(state).endswith("DONE"):
        # What failed again is in new dead-letter files already: these are done with.
        mark_replayed(replay, args.replay_dead_letters)
        print(f"replayed {replay.replayed:,} dead letter(s) from {len(replay.files)} file(s), moved to "
              f"{os.path.join(args.replay_dead_letters, 'replayed')}/"
              + (f"; {len(replay.kept):,} not replayable, written to the dead letters again" if replay.kept else ""))
    elapsed = time.monotonic() - started
    print(summary_table(result, settings.sink_names))
    stored = _rows_stored(chosen, settings)
    if stored:
        print("tables now hold: " + ", ".join(f"{table} {rows:,} rows" for table, rows in stored))
    if options.view_as(StandardOptions).runner in ("BundleBasedDirectRunner", "DirectRunner"):
        print("note: the DirectRunner reports the metrics of only some bundles; counts above may be low")
    # Records read, which the parser's dead letters are among; updates parsed when no file was read.
    values = counters(result)
    count = max(values.get("sinks.source", {}).get("updates_read", 0),
                values.get("sinks.assemble", {}).get("updates", 0))
    print(f"{count:,} updates in {elapsed:.1f} s ({count / max(elapsed, 1e-9):,.0f}/s)")
    if args.show_rows:
        print(first_rows(chosen, settings, args.show_rows))
    letters = _dead_letters_since(settings.dead_letters, time.time() - elapsed - 1)
    if letters:
        print(f"{sum(letters.values()):,} dead letter(s) written under {os.path.abspath(settings.dead_letters)}/ "
              f"({', '.join(f'{stage}: {n:,}' for stage, n in sorted(letters.items()))})")
    if not str(state).endswith("DONE"):
        return 1
    if letters.get("write"):
        print(f"NOT WRITTEN: {letters['write']:,} row(s) were given up on by their writers and are only in the "
              "dead letters (see the write dead letters' errors)")
        return ROWS_NOT_WRITTEN
    return 0


def _dead_letters_since(directory: str, since: float) -> Counter:
    """Records per stage in the dead-letter files this run wrote (counted from the files:
    metrics may miss some)."""
    stages: Counter = Counter()
    if not os.path.isdir(directory):
        return stages
    for entry in os.scandir(directory):
        if entry.name.endswith(".jsonl") and entry.stat().st_mtime >= since:
            with open(entry.path, "rb") as handle:
                for line in handle:
                    try:
                        stages[json.loads(line).get("stage") or "unknown"] += 1
                    except ValueError:
                        stages["unknown"] += 1
    return stages


def _tables(chosen: List[Sink], settings: JobSettings) -> Iterable[Tuple[Any, Any]]:
    """Each integration sink's table and the source it is written to."""
    for sink in chosen:
        spec = sink.spec
        if spec.integration is not None and spec.output_model is not None:
            source = source_from_url(settings.database_url) if settings.database_url else spec.integration
            yield getattr(spec.output_model, "__table__"), source


def _rows_stored(chosen: List[Sink], settings: JobSettings) -> List[Tuple[str, int]]:
    """How many rows each table written holds now (an upsert of a key already there adds none);
    empty when a database cannot be asked."""
    found = []
    try:
        for table, source in _tables(chosen, settings):
            engine = source.create_engine()
            try:
                with engine.connect() as connection:
                    total = connection.execute(sqlalchemy.select(sqlalchemy.func.count()).select_from(table)).scalar()
            finally:
                engine.dispose()
            found.append((table.name, int(total or 0)))
    except sqlalchemy.exc.DBAPIError:
        return []
    return found


def first_rows(chosen: List[Sink], settings: JobSettings, limit: int) -> str:
    """The first ``limit`` rows of each table the integration sinks wrote, as text."""
    blocks = []
    for table, source in _tables(chosen, settings):
        engine = source.create_engine()
        try:
            with engine.connect() as connection:
                total = connection.execute(sqlalchemy.select(sqlalchemy.func.count()).select_from(table)).scalar()
                rows = connection.execute(sqlalchemy.select(table).limit(limit)).all()
        finally:
            engine.dispose()
        lines = [f"{table.name} ({total:,} rows, first {len(rows)}):", "  " + " | ".join(table.columns.keys())]
        lines += ["  " + " | ".join(show_value(value) for value in row) for row in rows]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
