"""``python -m pipelines run | explain | generate`` (also installed as ``feature-sinks``)."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

USAGE_ERROR = 2
FORMATS = ("jsonl", "parquet", "csv")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the sinks of a set of definitions over an input",
                              description="Any further --option is passed to Beam (e.g. --direct_num_workers 2).")
    run.add_argument("--definitions", required=True, help="a definitions file or module")
    run.add_argument("--input", required=True, help="a file or glob of feature updates")
    run.add_argument("--input-format", choices=FORMATS, help="default: from the file names")
    run.add_argument("--sink", action="append", help="run only this sink (repeatable)")
    run.add_argument("--environment", help="run only the sinks deployed in this environment (@sink(environment=))")
    run.add_argument("--tag", action="append", help="run only untagged sinks and those all of whose tags match "
                                                    "(repeatable; key or key:value, as in Chalk)")
    run.add_argument("--resolver", help="a @stream resolver of the definitions that turns each record into updates")
    run.add_argument("--dead-letters", default="dead_letters",
                     help="directory for dead-letter files (default dead_letters/)")
    run.add_argument("--num-shards", type=int, default=1, help="buffers per paced sink (default 1)")
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
    args, beam_args = _parser().parse_known_args(argv)
    # Beam logs import-time notices (optional GCP clients) at WARNING: a command line shows
    # errors only, and everything with --verbose. (A no-op where logging is set up already.)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR)
    import sinks
    from pipelines.explain import explain, graph_dot
    from pipelines.generate import generate

    if beam_args and args.command != "run":
        print(f"error: unknown option(s): {' '.join(beam_args)}", file=sys.stderr)
        return USAGE_ERROR
    try:
        registry = sinks.load(args.definitions)
        if args.command == "explain":
            print(explain(registry))
            if args.dot:
                with open(args.dot, "w", encoding="utf-8") as handle:
                    handle.write(graph_dot(registry))
            return 0
        if args.command == "generate":
            count = generate(registry, args.entities, args.out, days=args.days, seed=args.seed)
            print(f"wrote {count:,} updates to {args.out}", file=sys.stderr)
            return 0
        from pipelines.run import run_job
        return run_job(registry, args, beam_args)
    except Exception as error:  # one clear line for anything a user can cause; tracebacks on request
        if args.verbose:
            raise
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return USAGE_ERROR if _user_error(error) else 1


def _user_error(error: Exception) -> bool:
    from sqlalchemy.exc import DBAPIError

    import sinks
    from pipelines.run import OptionError
    from pipelines.sources import SourceError
    return isinstance(error, (sinks.DefinitionError, KeyError, SourceError, OptionError, DBAPIError,
                              ValueError, OSError))


def _one_line(error: Exception) -> str:
    from sqlalchemy.exc import DBAPIError
    if isinstance(error, DBAPIError):
        first = str(error.orig).strip().splitlines()[0] if error.orig is not None else str(error)
        return f"cannot use the database: {first}"
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return str(text).strip().splitlines()[0] if str(text).strip() else type(error).__name__


def console() -> None:
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
