"""``python -m pipelines explain --definitions examples/bank.py``."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import sinks
from pipelines.explain import explain


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines")
    commands = parser.add_subparsers(dest="command", required=True)
    explain_parser = commands.add_parser("explain", help="print each sink's compiled plan")
    explain_parser.add_argument("--definitions", required=True, help="a definitions file or module")
    explain_parser.add_argument("--verbose", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    try:
        registry = sinks.load(args.definitions)
    except sinks.DefinitionError as error:
        if args.verbose:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(explain(registry))
    return 0


if __name__ == "__main__":
    sys.exit(main())
