"""Sources of feature updates: JSONL, Parquet and CSV files (globs), read file by file, streaming.

Each record is one feature update (``{"user.uuid": "u1", "user.full_name": "Ann"}``).
CSV and Parquet cells that are empty or null are left out of the update (a partial
update), since those formats cannot tell "no value" from "unchanged". A record that
cannot be read (bad JSON, invalid UTF-8, a CSV row with too many cells) goes to the
``dead_letters`` output with its file and line. JSONL and CSV files may be compressed
(``.gz``, ``.bz2``, ``.zst``, ``.deflate``); a CSV file's lines may end in ``\n``, ``\r\n``
or ``\r``.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import re
from typing import Any, Dict, Generator, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.core import RestrictionProvider

from transforms.assemble import clock
from transforms.dead_letters import DEAD_LETTERS, dead_letter

FORMATS = ("jsonl", "parquet", "csv")
UPDATES = "updates"
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".csv": "csv"}


class SourceError(ValueError):
    """An input that cannot be read at all (no file matches, unknown format)."""


def format_of(path: str, given: Optional[str] = None) -> str:
    """The format of ``path``: as given, or from its suffix (``.gz``/``.bz2`` ignored)."""
    if given:
        if given not in FORMATS:
            raise SourceError(f"--input-format {given!r}: expected one of {', '.join(FORMATS)}")
        return given
    name = path.lower()
    for compressed in (".gz", ".bz2", ".zst", ".deflate"):
        name = name.removesuffix(compressed)
    for suffix, found in _SUFFIXES.items():
        if name.endswith(suffix):
            return found
    raise SourceError(f"{path}: cannot tell its format from its name; pass --input-format "
                      f"({', '.join(FORMATS)})")


def check_input(pattern: str, given_format: Optional[str] = None) -> int:
    """Raises :class:`SourceError` unless ``pattern`` matches files of a known format; returns how many."""
    matched = FileSystems.match([pattern])[0].metadata_list
    if not matched:
        raise SourceError(f"no input file matches {pattern!r}")
    for metadata in matched:
        format_of(metadata.path, given_format)
    return len(matched)


def unreadable(path: Optional[str], line: Optional[int], error: Exception, text: Any) -> TaggedOutput:
    return TaggedOutput(DEAD_LETTERS, dead_letter("read", None, error, {"file": path, "line": line, "text": text}))


# JSON's escape of a UTF-16 surrogate (``\\ud800``): json.loads joins a pair into one character but
# keeps a lone one, which is no character at all (UTF-8 cannot hold it, so no database can).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class LoneSurrogateError(ValueError):
    """A JSON string holding half of a UTF-16 surrogate pair."""


def json_record(raw: bytes, path: Optional[str] = None, line: Optional[int] = None) -> Any:
    """A JSONL line as its value, or a dead letter saying why it cannot be read."""
    try:
        value = json.loads(raw.decode("utf-8"))
        if _SURROGATE_ESCAPE.search(raw):   # rare: only then is the value walked
            try:
                json.dumps(value, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError as error:
                raise LoneSurrogateError(
                    f"a string holds a lone surrogate ({error.object[error.start]!r}): half of a UTF-16 pair "
                    "is not a character, and no text column can store it") from None
        return value
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        return unreadable(path, line, error, raw[:2000].decode("utf-8", "replace"))


# Records read from a file in one bundle, for a run on the FnApiRunner in this process. That runner
# runs a stage's whole input as one bundle, and a keyed stateful step holds a state handle for each
# key it meets until its bundle ends (~0.9 KB each, and the value it wrote). The reader hands the
# rest of its file back to the runner after this many records, a checkpoint of a splittable DoFn,
# and the runner reads it in a new bundle. Measured on the bank job, 200,000 users with two updates
# each: peak RSS 742 MB in one bundle, 439 MB in bundles of 50,000; 1,000,000 users: 2,754 MB in one
# bundle, 1,169 MB in bundles of 100,000, 1,325 MB in bundles of 200,000 (``bench/soak.py
# --distinct``), which keeps a file of fewer records than that in one bundle.
RECORDS_PER_BUNDLE = 200_000

# Records claimed together (see ``_ReadFileInBundlesFn.process``).
CLAIMED_TOGETHER = 1000

# A file's reader starts where its restriction starts, in positions its format defines: a text
# file's byte offsets (of its uncompressed stream), a Parquet file's row numbers. Each record is
# claimed at its last position, so the rest of the file, split off after it, starts at the next one.
END = 2**63 - 1


class _ResumableTracker(OffsetRestrictionTracker):
    """Splits a file only where its reader stops by itself (a checkpoint, ``fraction_of_remainder``
    0): a CSV record may span lines and a compressed file has no offsets of its own, so a split at
    any other position could fall inside a record."""

    def try_split(self, fraction_of_remainder: float) -> Any:
        return super().try_split(0) if fraction_of_remainder == 0 else None


class _FilePositions(RestrictionProvider):
    def initial_restriction(self, path: str) -> OffsetRange:
        return OffsetRange(0, END)

    def create_tracker(self, restriction: OffsetRange) -> _ResumableTracker:
        return _ResumableTracker(restriction)

    def restriction_size(self, path: str, restriction: OffsetRange) -> int:
        return 1     # every file weighs the same: the reader splits a file only at its own checkpoints


class _Lines:
    """The lines of a text file, read a block at a time, counting where the next line starts
    (``offset``, in bytes) and how many lines come before it (``line``). A CSV file's lines end at
    ``\n``, ``\r\n`` or a bare ``\r`` (``any_line_end``), as Python's csv module reads them (old
    spreadsheets end lines in ``\r``); a JSONL file's at ``\n``."""

    # Blocks, not ``readline``: Beam's compressed files build a buffer per line there, and take no
    # size limit, so a file of ``\r`` line ends would come back as one line.
    BLOCK = 1 << 20

    def __init__(self, handle: Any, any_line_end: bool) -> None:
        self.handle, self.offset, self.line = handle, 0, 0
        self.any_line_end = any_line_end
        # Read after the last line given out, in blocks: a line longer than a block is joined
        # once its end comes, not copied again with each block (a 100 MB line: 100 copies).
        self._held: List[bytes] = []
        self._moved = False

    def __iter__(self) -> Iterator[bytes]:
        while True:
            self._moved = False
            for lines in self._runs():
                for raw in lines:
                    self.offset += len(raw)
                    self.line += 1
                    yield raw
                    if self._moved:     # the lines after this one were read from before the move
                        break
                if self._moved:
                    break
            else:
                return

    def move_to(self, offset: int, line: Optional[int]) -> None:
        """Moves to ``offset``, the start of a line after the next one, before which come ``line``
        lines (None: counted here)."""
        if line is None:
            line = self._count_to(offset)
        self.handle.seek(offset)
        self.offset, self.line, self._held, self._moved = offset, line, [], True

    def _count_to(self, offset: int) -> int:
        self.handle.seek(self.offset)
        self._held = []
        counted, position = self.line, self.offset
        for lines in self._runs():
            for raw in lines:
                if position >= offset:
                    return counted
                position += len(raw)
                counted += 1
        return counted

    def _runs(self) -> Iterator[List[bytes]]:
        """The whole lines each block read from the handle completes, the file's last one too."""
        while True:
            block = self.handle.read(self.BLOCK)
            if block and not self._ends_a_line(block):
                self._held.append(block)
                continue
            lines, rest = self._split(b"".join(self._held) + block, at_end=not block)
            self._held = [rest] if rest else []
            yield lines
            if not block:
                return

    def _ends_a_line(self, block: bytes) -> bool:
        return b"\n" in block or (self.any_line_end and b"\r" in block)

    def _split(self, data: bytes, at_end: bool) -> Tuple[List[bytes], bytes]:
        """The whole lines of ``data`` (with their ends), and what the next block may complete: a
        line without its end, or a ``\r`` that may be the first half of ``\r\n``."""
        lines = data.splitlines(keepends=True) if self.any_line_end else io.BytesIO(data).readlines()
        if at_end or not lines or lines[-1].endswith(b"\n"):
            return lines, b""
        return lines, lines.pop()


class _ReadFileFn(beam.DoFn):
    """Reads the records of each file."""

    def __init__(self, given_format: Optional[str], raw: bool) -> None:
        self.given_format = given_format
        self.raw = raw
        self.read = Metrics.counter("sinks.source", "updates_read")
        self.unreadable = Metrics.counter("sinks.source", "dead_letters")

    def setup(self) -> None:
        # (path, offset) → lines before it, where this process stopped reading a text file: its
        # rest resumes here without counting the lines again.
        self._lines_before: Dict[Tuple[str, int], int] = {}

    def process(self, path: str) -> Iterable[Any]:
        for _, _, record in self._records(path, 0):
            self._count(record)
            yield record

    def _count(self, record: Any) -> None:
        (self.unreadable if isinstance(record, TaggedOutput) else self.read).inc()

    def _records(self, path: str, start: int) -> Generator[Tuple[int, Optional[int], Any], None, None]:
        """The records of ``path`` from position ``start``, each with its last position and, in a
        text file, how many lines come before the next one."""
        kind = format_of(path, self.given_format)
        compression = CompressionTypes.UNCOMPRESSED if kind == "parquet" else CompressionTypes.AUTO
        with FileSystems.open(path, compression_type=compression) as handle:
            if kind == "parquet":
                for last, record in self._parquet(handle, start):
                    yield last, None, record
                return
            lines = _Lines(handle, any_line_end=kind == "csv")
            for last, record in (self._jsonl if kind == "jsonl" else self._csv)(path, lines, start):
                yield last, lines.line, record

    def _resume(self, path: str, lines: _Lines, offset: int) -> None:
        """Moves ``lines`` to ``offset``, a line's start, knowing how many lines come before it."""
        if offset > lines.offset:
            # Stopped in this process: the lines before are known; in another, they are counted.
            lines.move_to(offset, self._lines_before.pop((path, offset), None))

    def _bad(self, path: str, line: int, error: Exception, text: Any) -> TaggedOutput:
        return unreadable(path, line, error, text)

    def _jsonl(self, path: str, lines: _Lines, start: int) -> Iterable[Tuple[int, Any]]:
        self._resume(path, lines, start)
        for raw in lines:
            if not raw.strip():
                continue
            yield lines.offset - 1, raw.rstrip(b"\r\n") if self.raw else json_record(raw, path, lines.line)

    def _csv(self, path: str, lines: _Lines, start: int) -> Iterable[Tuple[int, Any]]:
        reader = csv.reader(raw.decode("utf-8") for raw in lines)
        last = -1
        try:
            header = next(reader, None)
            if header is None:
                return
            self._resume(path, lines, start)
            first_line, last = lines.line + 1, lines.offset - 1
            for row in reader:
                number, first_line, last = first_line, lines.line + 1, lines.offset - 1
                if not row:
                    continue
                if len(row) > len(header):
                    yield last, self._bad(path, number, ValueError("more cells than header columns"),
                                          row[len(header):])
                    continue
                yield last, {name: value for name, value in zip(header, row) if value != ""}
        except (UnicodeDecodeError, csv.Error) as error:
            # The rest of the file cannot be told into records: one dead letter says where it stops.
            yield max(lines.offset - 1, last + 1), self._bad(path, lines.line, error, "")

    @staticmethod
    def _parquet(handle: Any, start: int) -> Iterable[Tuple[int, Dict[str, Any]]]:
        import pyarrow.parquet as pq
        parquet = pq.ParquetFile(handle)
        first = 0
        groups: List[int] = []
        for group in range(parquet.num_row_groups):
            rows = parquet.metadata.row_group(group).num_rows
            if groups or first + rows > start:
                groups.append(group)
            else:
                first += rows
        number = first
        for batch in parquet.iter_batches(batch_size=10_000, row_groups=groups):
            for row in batch.to_pylist():
                if number >= start:
                    yield number, {name: value for name, value in row.items() if value is not None}
                number += 1


class _ReadFileInBundlesFn(_ReadFileFn):
    """Reads the records of each file from where its restriction starts, and hands the rest of
    the file back to the runner after ``records_per_bundle`` records, to be read in a new bundle.
    Whether the rest of a file of ``input_id`` waits is known in this process
    (``transforms.assemble.clock.input_read``): the end of the input is when none does."""

    def __init__(self, given_format: Optional[str], raw: bool, records_per_bundle: int, input_id: str) -> None:
        super().__init__(given_format, raw)
        self.records_per_bundle = records_per_bundle
        self.input_id = input_id

    def process(self, path: str,  # type: ignore[override]
                tracker: Any = beam.DoFn.RestrictionParam(_FilePositions())) -> Iterable[Any]:
        start = tracker.current_restriction().start
        if start:
            clock.read_resumed(self.input_id)
        records = self._records(path, start)
        left = self.records_per_bundle
        try:
            # Claimed a run of records at a time: each claim takes the tracker's lock and checks
            # the position, work a record need not pay for.
            while True:
                run = list(itertools.islice(records, min(CLAIMED_TOGETHER, left)))
                if not run:
                    break
                last, lines_before, _ = run[-1]
                if not tracker.try_claim(last):
                    return
                for _, _, record in run:
                    self._count(record)
                    yield record
                left -= len(run)
                if not left:
                    if lines_before is not None:
                        self._lines_before[(path, last + 1)] = lines_before
                    clock.read_deferred(self.input_id)
                    tracker.defer_remainder()
                    return
        finally:
            records.close()
        tracker.try_claim(END)


class ReadUpdates(beam.PTransform):
    """Feature updates from files matching ``pattern`` (a path or glob; local or any Beam filesystem).

    Returns ``updates`` (dicts) and ``dead_letters`` (records that could not be read).
    Files are read one record at a time, never whole into memory. With ``raw``, JSONL
    lines are handed on as bytes, unparsed, for a stream resolver. With ``records_per_bundle``,
    a file's reader hands the rest of the file back to the runner after that many records, to be
    read in a bundle of its own (see ``RECORDS_PER_BUNDLE``); ``input_id`` then names the input
    for the ``Assemble`` reading it, which must be given the same.
    """

    def __init__(self, pattern: str, input_format: Optional[str] = None, raw: bool = False,
                 records_per_bundle: Optional[int] = None, input_id: Optional[str] = None) -> None:
        super().__init__()
        if records_per_bundle is not None and records_per_bundle < 1:
            raise ValueError(f"records_per_bundle must be positive, not {records_per_bundle}")
        if (records_per_bundle is None) != (input_id is None):
            raise ValueError("records_per_bundle and input_id go together")
        self.pattern = pattern
        self.input_format = input_format
        self.raw = raw
        self.records_per_bundle = records_per_bundle
        self.input_id = input_id

    def expand(self, begin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        read = (_ReadFileFn(self.input_format, self.raw) if self.records_per_bundle is None or self.input_id is None
                else _ReadFileInBundlesFn(self.input_format, self.raw, self.records_per_bundle, self.input_id))
        return (
            begin
            | "Match" >> beam.Create([self.pattern])
            | "Paths" >> beam.FlatMap(lambda pattern: [m.path for m in FileSystems.match([pattern])[0].metadata_list])
            | "Spread" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(read).with_outputs(DEAD_LETTERS, main=UPDATES))


STREAM_SCHEMES = ("pubsub://", "kafka://")


def is_stream_url(url: str) -> bool:
    return url.startswith(STREAM_SCHEMES)


def read_stream(url: str) -> beam.PTransform:
    """Raw messages (bytes) from ``pubsub://projects/P/subscriptions/S`` (or ``.../topics/T``)
    or ``kafka://host:port[,host:port]/topic``, through Beam's own IOs (for Dataflow and Flink;
    Kafka's is Java, expanded when the job is submitted)."""
    scheme, rest = url.split("://", 1)
    if scheme == "pubsub":
        kind = "subscription" if "/subscriptions/" in rest else "topic" if "/topics/" in rest else None
        if kind is None:
            raise SourceError(
                f"{url}: expected pubsub://projects/P/subscriptions/S or pubsub://projects/P/topics/T")
        if kind == "subscription":
            return beam.io.ReadFromPubSub(subscription=rest)
        return beam.io.ReadFromPubSub(topic=rest)
    servers, _, topic = rest.partition("/")
    if not servers or not topic:
        raise SourceError(f"{url}: expected kafka://host:port/topic")
    from apache_beam.io.kafka import ReadFromKafka
    return _KafkaValues(ReadFromKafka(consumer_config={"bootstrap.servers": servers}, topics=[topic]))


class _KafkaValues(beam.PTransform):
    """The values of Kafka records (their keys are not feature updates)."""

    def __init__(self, read: beam.PTransform) -> None:
        super().__init__()
        self.read = read

    def expand(self, begin: beam.pvalue.PBegin) -> beam.PCollection:
        return begin | "ReadFromKafka" >> self.read | "Values" >> beam.Values()
