"""A progress line on stderr for a person watching a long run: updates read, rate, time left.

Only when stderr is a terminal: a log file or a pipe gets the summary alone.
"""
from __future__ import annotations

import glob
import sys
import time
from typing import Any, Iterable, Optional, TextIO

import apache_beam as beam

from pipelines.sources import format_of


def wanted(stream: TextIO = sys.stderr) -> bool:
    """Progress is for a person: print it only to a terminal."""
    return stream.isatty()


def records_in(pattern: str, given_format: Optional[str] = None) -> Optional[int]:
    """How many records the local input files hold, or None when that is not cheap to know
    (compressed or remote files)."""
    total = 0
    paths = glob.glob(pattern)
    if not paths:
        return None
    for path in paths:
        kind = format_of(path, given_format)
        if path.endswith((".gz", ".bz2", ".zst", ".deflate")):
            return None
        if kind == "parquet":
            import pyarrow.parquet as pq
            total += pq.ParquetFile(path).metadata.num_rows
            continue
        with open(path, "rb") as handle:
            lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
        total += lines - 1 if kind == "csv" else lines
    return total


def progress_line(count: int, elapsed: float, total: Optional[int]) -> str:
    """``read 12,000 of 40,000 updates (3,000/s), about 9 s left``."""
    rate = count / max(elapsed, 1e-9)
    if total is None or total <= 0:
        return f"read {count:,} updates ({rate:,.0f}/s)"
    left = max(total - count, 0) / max(rate, 1e-9)
    return f"read {count:,} of {total:,} updates ({rate:,.0f}/s), about {left:,.0f} s left"


class ShowProgress(beam.DoFn):
    """Passes updates through; every ``every`` seconds prints a :func:`progress_line` to stderr."""

    def __init__(self, total: Optional[int] = None, every: float = 5.0) -> None:
        self.total = total
        self.every = every

    def setup(self) -> None:
        self._count, self._start = 0, time.monotonic()
        self._next = self._start + self.every

    def process(self, update: Any) -> Iterable[Any]:
        self._count += 1
        # The clock is read once per 1,024 updates: a progress line must not slow the run.
        if self._count & 1023 == 0 and time.monotonic() >= self._next:
            print(progress_line(self._count, time.monotonic() - self._start, self.total),
                  file=sys.stderr, flush=True)
            self._next = time.monotonic() + self.every
        yield update
