"""The options of ``run`` and ``generate``, each checked before anything runs.

Sink call options are read like any Beam option (``--sink_retry_attempts 5``); the rest are
the command's own flags. Every check raises :class:`CommandError` with one line naming the
option and what it accepts.
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
from datetime import datetime, timedelta, timezone
from typing import Optional

import sqlalchemy
from apache_beam.options.pipeline_options import PipelineOptions
from sqlalchemy.engine import URL

from pipelines.errors import CommandError
from sinks.durations import INFINITY, parse_duration
from transforms.call import RetryPolicy
from transforms.sql import WriteRetry

# A bounded run gives up on a write after this long; a live run (``--follow``, a stream) never does.
BATCH_WRITE_DEADLINE = WriteRetry.deadline


class SinkOptions(PipelineOptions):
    """``--sink_retry_attempts``, ``--sink_retry_base_delay``, ``--sink_timeout``."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--sink_retry_attempts", type=int, default=RetryPolicy.attempts,
            help="calls of a failing sink function before its updates are dead-lettered (at least 1)")
        parser.add_argument(
            "--sink_retry_base_delay", type=float, default=RetryPolicy.base_delay,
            help="seconds before the first retry; doubled for each further retry")
        parser.add_argument(
            "--sink_timeout", type=float, default=None,
            help="seconds a sink function may run before the call counts as failed (default: no limit)")

    def retry_policy(self) -> RetryPolicy:
        """The call retry policy these options ask for; :class:`CommandError` if one is out of range."""
        if self.sink_retry_attempts < 1:
            raise CommandError(f"--sink_retry_attempts {self.sink_retry_attempts}: must be at least 1 "
                               "(1 calls a sink once, with no retry)")
        _at_least(self.sink_retry_base_delay, 0, "--sink_retry_base_delay")
        if self.sink_timeout is not None and not self.sink_timeout > 0:
            raise CommandError(f"--sink_timeout {self.sink_timeout:g}: must be a positive number of seconds "
                               "(leave it out for no limit)")
        return RetryPolicy(attempts=self.sink_retry_attempts, base_delay=self.sink_retry_base_delay,
                           timeout=self.sink_timeout)


def duration_argument(text: str) -> timedelta:
    """A command-line duration: whole seconds (``30``) or Chalk's grammar (``"100ms"``, ``"1h30m"``)."""
    try:
        return parse_duration(int(text) if text.strip().isdigit() else text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def as_of_argument(text: str) -> datetime:
    """``--as-of``: ``now`` (the wall clock when the command starts) or an ISO 8601 time, UTC
    unless it names its offset."""
    if text.strip().lower() == "now":
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use ISO 8601 like 2024-03-01T12:00:00Z, or 'now'") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def clock_settings(args: argparse.Namespace) -> dict:
    """The window clock's settings the command line gives (``JobSettings`` keeps its defaults for
    the rest): ``--allowed-lateness``, ``--as-of``, ``--max-clock-skew`` (``infinity``: no check)."""
    settings: dict = {}
    if args.allowed_lateness is not None:
        settings["allowed_lateness"] = args.allowed_lateness
    if args.as_of is not None:
        settings["as_of"] = args.as_of
    if args.max_clock_skew is not None:
        settings["max_clock_skew"] = None if args.max_clock_skew == INFINITY else args.max_clock_skew
    return settings


def check_run_arguments(args: argparse.Namespace) -> None:
    """The flags of ``run`` that argparse cannot check alone."""
    if (args.input is None) == (args.replay_dead_letters is None):
        raise CommandError("run: give --input, or --replay-dead-letters DIR (not both)")
    if args.replay_dead_letters is not None:
        if args.follow or args.resolver:
            raise CommandError("--replay-dead-letters: not with --follow or --resolver (it reads the dead "
                               "letters' own inputs: feature updates, sink inputs and rows)")
        if not os.path.isdir(args.replay_dead_letters):
            raise CommandError(f"--replay-dead-letters {args.replay_dead_letters}: no such directory")
    if args.stop_after is not None:
        if not args.follow:
            raise CommandError("--stop-after: only with --follow (a bounded input stops when it is read)")
        if not args.stop_after > 0:
            raise CommandError(f"--stop-after {args.stop_after:g}: must be a positive number of seconds")
    _at_least(args.show_rows, 0, "--show-rows")
    _at_least(args.num_shards, 1, "--num-shards")
    _at_least(args.write_shards, 1, "--write-shards")
    if args.write_deadline is not None:
        _at_least(args.write_deadline, 0, "--write-deadline")
    if args.database_url:
        check_database_url(args.database_url, "--database-url")
    from pipelines.sources import is_stream_url
    if args.as_of is not None and (args.follow or (args.input is not None and is_stream_url(args.input))):
        raise CommandError("--as-of: only for a bounded input (a live run's windows follow its event-time clock)")
    check_writable_directory(args.dead_letters, "--dead-letters")


def check_generate_arguments(args: argparse.Namespace) -> None:
    _at_least(args.entities, 1, "--entities")
    _at_least(args.days, 1, "--days")
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        raise CommandError(f"--out {args.out}: no such directory {folder}")
    from pipelines.sources import SourceError, format_of
    try:
        format_of(args.out)
    except SourceError:
        raise CommandError(f"--out {args.out}: name the file .jsonl, .csv or .parquet (its format)") from None


def write_retry(args: argparse.Namespace, live: bool) -> WriteRetry:
    """How long a failing write is retried: ``--write-deadline`` seconds, 0 for ever; by default
    for ever on a live input (an outage must not lose a stream's rows) and
    :data:`BATCH_WRITE_DEADLINE` on a bounded one."""
    seconds = args.write_deadline if args.write_deadline is not None else (0 if live else BATCH_WRITE_DEADLINE)
    return WriteRetry(deadline=seconds or math.inf)


def check_database_url(text: str, option: str) -> URL:
    """``text`` parsed as a database URL, or a :class:`CommandError` a person can act on."""
    try:
        url = sqlalchemy.make_url(text)
    except ValueError as error:
        if "int()" in str(error):
            raise CommandError(f"{option}: the port must be a number from 1 to 65535") from None
        raise CommandError(f"{option}: not a database URL (like postgresql+psycopg2://user@host:5432/db): "
                           f"{error}") from None
    except sqlalchemy.exc.ArgumentError:
        raise CommandError(f"{option}: not a database URL (like postgresql+psycopg2://user@host:5432/db)") from None
    check_url(url, option)
    from pipelines.build import source_from_url
    try:
        source_from_url(text)
    except ValueError as error:
        raise CommandError(str(error)) from None
    return url


def check_url(url: URL, where: str) -> None:
    """The parts of a parsed URL a driver would reject with a cryptic error."""
    if url.port is not None and not 1 <= url.port <= 65535:
        raise CommandError(f"{where}: port {url.port} is out of range (1 to 65535)")
    charset = url.query.get("charset")
    if charset is not None and url.get_backend_name() in ("mysql", "mariadb"):
        from pymysql.charset import charset_by_name
        if isinstance(charset, tuple) or charset_by_name(charset) is None:
            raise CommandError(f"{where}: unknown character set {charset!r} for MySQL/MariaDB (try utf8mb4)")


def check_writable_directory(directory: str, option: str) -> None:
    """Proves now, not when the first record fails after the work is done, that files can be
    written in ``directory`` (or, while it does not exist, in the folder it will be made in)."""
    existing = os.path.abspath(directory)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    try:
        if not os.path.isdir(existing):
            raise NotADirectoryError(0, f"{existing} is not a directory")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise CommandError(f"{option} {directory}: cannot write there ({error.strerror or error})") from None


def _at_least(value: Optional[float], lowest: float, option: str) -> None:
    if value is not None and not value >= lowest:
        raise CommandError(f"{option} {value:g}: must be at least {lowest:g}")
