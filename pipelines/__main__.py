"""``python -m pipelines run | explain | generate`` (also installed as ``feature-sinks``).

Exit status: 0 done; 1 an internal error (a bug: one line, the traceback with ``--verbose``);
2 a mistake in the command (one line saying what to change); 3 a run that finished but left
rows unwritten (its writes were abandoned and dead-lettered).
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import List, NoReturn, Optional

from pipelines.errors import CommandError

INTERNAL_ERROR = 1
USAGE_ERROR = 2
FORMATS = ("jsonl", "parquet", "csv")


class _Parser(argparse.ArgumentParser):
    """Reports a bad flag as one line (a :class:`CommandError`), not usage plus a line."""

    def error(self, message: str) -> NoReturn:
        raise CommandError(message)


def _parser() -> argparse.ArgumentParser:
    from pipelines.options import as_of_argument, duration_argument

    parser = _Parser(prog="python -m pipelines", allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the sinks of a set of definitions over an input",
                              description="Any further --option is passed to Beam (e.g. --direct_num_workers 2).")
    run.add_argument("--definitions", required=True, help="a definitions file or module")
    run.add_argument("--input", help="a file or glob of feature updates (required unless --replay-dead-letters)")
    run.add_argument("--replay-dead-letters", metavar="DIR",
                     help="instead of --input: feed the inputs of the dead letters in DIR again (the read, parse, "
                          "call and write stages'); the files replayed move to DIR/replayed/ when the run ends")
    run.add_argument("--input-format", choices=FORMATS, help="default: from the file names")
    run.add_argument("--sink", action="append", help="run only this sink (repeatable)")
    run.add_argument("--environment", help="run only the sinks deployed in this environment (@sink(environment=))")
    run.add_argument("--tag", action="append", help="run only untagged sinks and those all of whose tags match "
                                                    "(repeatable; key or key:value, as in Chalk)")
    run.add_argument("--resolver", help="a @stream resolver of the definitions that turns each record into updates")
    run.add_argument("--dead-letters", default="dead_letters",
                     help="directory for dead-letter files (default dead_letters/)")
    run.add_argument("--num-shards", type=int, default=1,
                     help="pacing buffers per paced sink; an entity always goes to the same one (default 1)")
    run.add_argument("--write-shards", type=int, default=4,
                     help="parallel writers per upsert table; a key always goes to the same one (default 4)")
    run.add_argument("--write-deadline", type=float, metavar="SECONDS",
                     help="give up on a failing write (its rows go to the dead letters) after this long; "
                          "0 retries for ever (default: 300 for a bounded input, for ever with --follow "
                          "or a stream)")
    run.add_argument("--allowed-lateness", type=duration_argument, default=None, metavar="DURATION",
                     help="how far behind an entity's clock an update may arrive and still count, "
                          "as seconds or like 10m (default 0)")
    run.add_argument("--as-of", type=as_of_argument, default=None, metavar="TIME",
                     help="where a bounded run's time windows end: an ISO 8601 time (UTC unless it says) "
                          "or 'now' (default: the input's last event time)")
    run.add_argument("--max-clock-skew", type=duration_argument, default=None, metavar="DURATION",
                     help="an update whose FeatureTime is further than this after the wall clock is a "
                          "dead letter, as seconds or like 1d; 'infinity' turns the check off (default 1d)")
    run.add_argument("--create-tables", action="store_true", help="create missing tables (always on for SQLite)")
    run.add_argument("--database-url", help="write every integration sink to this database instead")
    run.add_argument("--runner", help="Beam runner (default: FnApiRunner, or BundleBasedDirectRunner with --streaming)")
    run.add_argument("--streaming", action="store_true", help="run in streaming mode")
    run.add_argument("--follow", action="store_true",
                     help="--input is a directory: read *.jsonl files as they arrive, live, until --stop-after "
                          "or a file named STOP appears")
    run.add_argument("--stop-after", type=float, metavar="SECONDS", help="with --follow: stop after this long")
    run.add_argument("--show-rows", type=int, default=0, metavar="N",
                     help="print the first N rows of each table written")

    explain_parser = commands.add_parser("explain", help="print each sink's compiled plan")
    explain_parser.add_argument("--definitions", required=True, help="a definitions file or module")
    explain_parser.add_argument("--dot", help="also write the pipeline graph as Graphviz DOT to this file")

    gen = commands.add_parser("generate", help="write deterministic sample updates")
    gen.add_argument("--definitions", required=True, help="a definitions file or module")
    gen.add_argument("--entities", type=int, default=1000, help="entities of each top-level class")
    gen.add_argument("--days", type=int, default=180, help="time span of the updates")
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--out", required=True, help="output file: .jsonl, .csv or .parquet")

    for sub in (run, explain_parser, gen):
        sub.add_argument("--verbose", action="store_true", help="show tracebacks")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    # Beam logs import-time notices (optional GCP clients) at WARNING: a command line shows
    # errors only, and everything with --verbose. Set before the parser imports Beam. (A no-op
    # where logging is set up already.)
    logging.basicConfig(level=logging.DEBUG if "--verbose" in arguments else logging.ERROR)
    try:
        args, beam_args = _parser().parse_known_args(arguments)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    try:
        return _command(args, beam_args)
    except Exception as error:
        if _user_error(error):
            print(f"error: {_one_line(error)}", file=sys.stderr)
            return USAGE_ERROR
        if args.verbose:
            raise
        print(f"internal error: {type(error).__name__}: {_one_line(error)} "
              "(run with --verbose for the traceback)", file=sys.stderr)
        return INTERNAL_ERROR


def _command(args: argparse.Namespace, beam_args: List[str]) -> int:
    import sinks
    from pipelines.options import check_generate_arguments, check_run_arguments

    if beam_args and args.command != "run":
        raise CommandError(f"unknown option(s): {' '.join(beam_args)}")
    if args.command == "run":
        check_run_arguments(args)
    elif args.command == "generate":
        check_generate_arguments(args)
    registry = sinks.load(args.definitions)
    if args.command == "explain":
        from pipelines.explain import explain, graph_dot
        if not registry.sinks:
            raise CommandError(f"{args.definitions} defines no sink (decorate a function with @sink)")
        print(explain(registry))
        if args.dot:
            try:
                with open(args.dot, "w", encoding="utf-8") as handle:
                    handle.write(graph_dot(registry))
            except OSError as error:
                raise CommandError(f"--dot {args.dot}: cannot write it ({error.strerror or error})") from None
        return 0
    if args.command == "generate":
        from pipelines.generate import generate
        count = generate(registry, args.entities, args.out, days=args.days, seed=args.seed)
        print(f"wrote {count:,} updates to {args.out}", file=sys.stderr)
        return 0
    from pipelines.run import run_job
    return run_job(registry, args, beam_args)


def _user_error(error: Exception) -> bool:
    """Errors about the command or the definitions it names; everything else is a bug."""
    from pipelines.sources import SourceError
    from sinks.errors import DefinitionError
    return isinstance(error, (CommandError, DefinitionError, SourceError))


def _one_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def console() -> None:
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
