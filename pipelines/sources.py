"""Sources of feature updates: JSONL, Parquet and CSV files (globs), read file by file, streaming.

Each record is one feature update (``{"user.uuid": "u1", "user.full_name": "Ann"}``).
CSV and Parquet cells that are empty or null are left out of the update (a partial
update), since those formats cannot tell "no value" from "unchanged". A record that
cannot be read (bad JSON, invalid UTF-8, a CSV row with too many cells) goes to the
``dead_letters`` output with its file and line.
"""
from __future__ import annotations

import csv
import io
import json
import re
from typing import Any, Dict, Iterable, Optional

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

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


class _RawReader(io.RawIOBase):
    """A file that has ``read`` alone (Beam's ``CompressedFile``: no line iterator, nothing
    ``io.TextIOWrapper`` needs) as a raw stream, to be buffered."""

    def __init__(self, handle: Any) -> None:
        super().__init__()
        self.handle = handle

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.handle.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class _ReadFileFn(beam.DoFn):
    def __init__(self, given_format: Optional[str], raw: bool) -> None:
        self.given_format = given_format
        self.raw = raw
        self.read = Metrics.counter("sinks.source", "updates_read")
        self.unreadable = Metrics.counter("sinks.source", "dead_letters")

    def process(self, path: str) -> Iterable[Any]:
        kind = format_of(path, self.given_format)
        compression = CompressionTypes.UNCOMPRESSED if kind == "parquet" else CompressionTypes.AUTO
        with FileSystems.open(path, compression_type=compression) as handle:
            if not isinstance(handle, io.IOBase):      # a compressed file
                handle = io.BufferedReader(_RawReader(handle))
            records = {"jsonl": self._jsonl, "csv": self._csv, "parquet": self._parquet}[kind](path, handle)
            for record in records:
                if isinstance(record, TaggedOutput):
                    self.unreadable.inc()
                else:
                    self.read.inc()
                yield record

    def _bad(self, path: str, line: int, error: Exception, text: Any) -> TaggedOutput:
        return unreadable(path, line, error, text)

    def _jsonl(self, path: str, handle: Any) -> Iterable[Any]:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            yield raw.rstrip(b"\r\n") if self.raw else json_record(raw, path, number)

    def _csv(self, path: str, handle: Any) -> Iterable[Any]:
        reader = csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8", errors="strict", newline=""))
        number = 1
        try:
            for number, row in enumerate(reader, 2):
                if None in row:
                    yield self._bad(path, number, ValueError("more cells than header columns"), row[None])
                    continue
                yield {name: value for name, value in row.items() if value not in ("", None)}
        except (UnicodeDecodeError, csv.Error) as error:
            yield self._bad(path, number + 1, error, "")

    def _parquet(self, path: str, handle: Any) -> Iterable[Dict[str, Any]]:
        import pyarrow.parquet as pq
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=10_000):
            for row in batch.to_pylist():
                yield {name: value for name, value in row.items() if value is not None}


class ReadUpdates(beam.PTransform):
    """Feature updates from files matching ``pattern`` (a path or glob; local or any Beam filesystem).

    Returns ``updates`` (dicts) and ``dead_letters`` (records that could not be read).
    Files are read one record at a time, never whole into memory. With ``raw``, JSONL
    lines are handed on as bytes, unparsed, for a stream resolver.
    """

    def __init__(self, pattern: str, input_format: Optional[str] = None, raw: bool = False) -> None:
        super().__init__()
        self.pattern = pattern
        self.input_format = input_format
        self.raw = raw

    def expand(self, begin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        return (
            begin
            | "Match" >> beam.Create([self.pattern])
            | "Paths" >> beam.FlatMap(lambda pattern: [m.path for m in FileSystems.match([pattern])[0].metadata_list])
            | "Spread" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(_ReadFileFn(self.input_format, self.raw)).with_outputs(DEAD_LETTERS, main=UPDATES))


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
