"""A local unbounded source: JSONL files arriving in a directory, read as they come.

Beam's DirectRunner takes live input through one door: a ``TestStream`` whose
events come from a ``TestStreamService`` (the interactive runner's mechanism;
splittable DoFns that poll cannot run there). :class:`DirectoryEvents` is such a
service's reader: every ``poll`` seconds it reads what the ``*.jsonl`` files of the
directory gained since the last look (in name order), and sends those records, the
processing time that passed and the watermark (the wall clock). So ``debounce`` and
``max_delay`` timers fire in real time, and sinks fire while files keep arriving.

- Only complete lines are read; a file written in place is read again at each poll,
  and is complete once it has not changed for ``settle`` seconds. A last line without
  a newline is read when the stream ends, if its file did not change in the last poll.
- Records travel in events of at most ``EVENT_BYTES``: the runner reads the service
  over gRPC, whose messages stop at 4 MiB (a larger one ends the stream, silently).
  A single line longer than ``MAX_LINE_BYTES`` becomes a dead letter.
- The stream ends (watermark to infinity, which flushes every buffer) after
  ``stop_after`` seconds, when a file named ``STOP`` appears, or on SIGTERM/SIGINT
  (a second one exits at once). Files are renamed ``*.jsonl.done`` only when
  :meth:`ReadDirectory.commit` is called after the pipeline has finished, so every
  output of their records is committed first; a run killed before that reads them
  again when restarted (at-least-once).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple

import apache_beam as beam
from apache_beam import coders
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.test_stream_service import TestStreamServiceController
from apache_beam.utils.timestamp import MAX_TIMESTAMP

from pipelines.sources import UPDATES, json_record, unreadable
from transforms.dead_letters import DEAD_LETTERS

STOP_FILE = "STOP"
EVENT_BYTES = 1 << 20
MAX_LINE_BYTES = 3 << 20
# The runners that serve a TestStream from its event service; Prism and the portable runners
# replay only the events built into the pipeline, so they would read nothing (measured: Prism
# read 0 of 856 records and reported success).
LIVE_RUNNERS = ("DirectRunner", "SwitchingDirectRunner", "BundleBasedDirectRunner")


def unsupported_runner(runner: Any) -> Optional[str]:
    """Why ``runner`` (a name or a runner) cannot run :class:`ReadDirectory`; None when it can."""
    name = runner if isinstance(runner, str) else type(runner).__name__
    if name.rsplit(".", 1)[-1] in LIVE_RUNNERS:
        return None
    return (f"--follow runs on the DirectRunner only (--runner BundleBasedDirectRunner), "
            f"not {name}: that runner would not read the directory")
Event = beam_runner_api_pb2.TestStreamPayload.Event


class LiveRecord(NamedTuple):
    """One line of a watched file; ``data`` is None for a line too long to send (``size`` bytes)."""

    path: str
    line: int
    data: Optional[bytes]
    size: int


@dataclass
class _FileProgress:
    offset: int = 0          # bytes of complete lines already sent
    lines: int = 0
    size: int = -1
    mtime_ns: int = -1
    changed_at: float = 0.0  # monotonic time the file was last seen to change
    complete: bool = False   # stable, and every byte sent


class DirectoryEvents:
    """The event reader behind a live ``TestStream``: lines of files in ``directory`` become elements."""

    def __init__(self, directory: str, poll: float = 0.2, stop_after: Optional[float] = None,
                 settle: float = 1.0, coder: coders.Coder = coders.FastPrimitivesCoder()) -> None:
        self.directory = directory
        self.poll = poll
        self.stop_after = stop_after
        self.settle = settle
        self.coder = coder
        self.stop_requested = threading.Event()
        self.files: Dict[str, _FileProgress] = {}

    def read_multiple(self, tags: List[Tuple[str, Any]]) -> Iterator[Event]:
        started = last = time.monotonic()
        while True:
            now = time.time()
            yield from self._elements(self.read_new_lines(), now)
            elapsed = time.monotonic()
            yield Event(processing_time_event=Event.AdvanceProcessingTime(
                advance_duration=int((elapsed - last) * 1_000_000)))
            last = elapsed
            yield Event(watermark_event=Event.AdvanceWatermark(new_watermark=int(now * 1_000_000)))
            if self._stopping(elapsed - started):
                # One last look, so what arrived just before the stop is not left behind.
                yield from self._elements(self.read_new_lines(final=True), time.time())
                yield Event(watermark_event=Event.AdvanceWatermark(new_watermark=MAX_TIMESTAMP.micros))
                return
            self.stop_requested.wait(self.poll)

    def _stopping(self, running: float) -> bool:
        return (self.stop_requested.is_set()
                or (self.stop_after is not None and running >= self.stop_after)
                or os.path.exists(os.path.join(self.directory, STOP_FILE)))

    def _elements(self, records: List[LiveRecord], now: float) -> Iterator[Event]:
        at = int(now * 1_000_000)
        batch: List[Any] = []
        size = 0
        for record in records:
            encoded = self.coder.encode(tuple(record))
            if batch and size + len(encoded) > EVENT_BYTES:
                yield Event(element_event=Event.AddElements(elements=batch))
                batch, size = [], 0
            batch.append(beam_runner_api_pb2.TestStreamPayload.TimestampedElement(
                encoded_element=encoded, timestamp=at))
            size += len(encoded)
        if batch:
            yield Event(element_event=Event.AddElements(elements=batch))

    def read_new_lines(self, final: bool = False) -> List[LiveRecord]:
        """The complete lines the watched files gained since the last call, in file name order.

        A file read to its end that has not changed for ``settle`` seconds is complete (done once
        the run commits), until it changes again. With ``final`` (the stream ends), a file unchanged
        since the last call is complete, and its last line counts without a newline."""
        records: List[LiveRecord] = []
        names = sorted(name for name in os.listdir(self.directory) if name.endswith(".jsonl"))
        for name in names:
            path = os.path.join(self.directory, name)
            records.extend(self._read_file(path, self.files.setdefault(path, _FileProgress()), final))
        return records

    def _read_file(self, path: str, progress: _FileProgress, final: bool) -> List[LiveRecord]:
        try:
            status = os.stat(path)
            with open(path, "rb") as handle:
                handle.seek(progress.offset)
                data = handle.read()
        except OSError as error:   # gone, or not readable (yet): looked at again next time
            print(f"--follow: cannot read {path} yet: {error}", file=sys.stderr)
            return []
        now = time.monotonic()
        changed = (status.st_size, status.st_mtime_ns) != (progress.size, progress.mtime_ns)
        if changed:
            progress.size, progress.mtime_ns, progress.changed_at = status.st_size, status.st_mtime_ns, now
        stable = not changed and (final or now - progress.changed_at >= self.settle)
        # A last line without a newline may still be being written: it is read only when the
        # stream ends, and only if the file did not change since the previous look.
        end = len(data) if final and stable else data.rfind(b"\n") + 1
        records = []
        for raw in data[:end].splitlines():
            progress.lines += 1
            if raw.strip():
                records.append(_record(path, progress.lines, raw))
        progress.offset += end
        progress.complete = stable and progress.offset == status.st_size
        return records

    def complete_files(self) -> List[str]:
        return [path for path, progress in self.files.items() if progress.complete]


def _record(path: str, line: int, raw: bytes) -> LiveRecord:
    raw = raw.rstrip(b"\r")
    if len(raw) > MAX_LINE_BYTES:
        return LiveRecord(path, line, None, len(raw))
    return LiveRecord(path, line, raw, len(raw))


class _RecordFn(beam.DoFn):
    """A live line as its JSON value (or raw bytes, for a resolver), or a dead letter with file and line."""

    def __init__(self, raw: bool) -> None:
        self.raw = raw

    def process(self, record: Tuple[str, int, Optional[bytes], int]) -> Iterable[Any]:
        path, line, data, size = record
        if data is None:
            yield unreadable(path, line, ValueError(
                f"a line of {size:,} bytes: --follow sends lines of up to {MAX_LINE_BYTES:,} bytes"), "")
        elif self.raw:
            yield data
        else:
            yield json_record(data, path, line)


class ReadDirectory(beam.PTransform):
    """Feature updates (or raw lines, with ``raw``) from files arriving in ``directory``, live, on the
    DirectRunner; outputs ``updates`` and ``dead_letters``.

    The event service runs in this process for as long as the pipeline does, and SIGTERM/SIGINT
    end the stream instead of the process, so buffers drain. Call :meth:`stop` after the run, and
    :meth:`commit` when it succeeded, to mark the files read as done.
    """

    def __init__(self, directory: str, stop_after: Optional[float] = None, poll: float = 0.2,
                 raw: bool = False, settle: float = 1.0) -> None:
        super().__init__()
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"{directory}: no such directory to watch")
        self.events = DirectoryEvents(directory, poll, stop_after, settle)
        self.service = TestStreamServiceController(self.events)
        self.raw = raw
        self._previous_handlers: Dict[int, Any] = {}

    def expand(self, begin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        refused = unsupported_runner(begin.pipeline.options.view_as(StandardOptions).runner)
        if refused:
            raise ValueError(refused)
        self.service.start()
        self._drain_on_signals()
        lines = begin | TestStream(coder=coders.FastPrimitivesCoder(), endpoint=self.service.endpoint)
        return lines | "Records" >> beam.ParDo(_RecordFn(self.raw)).with_outputs(DEAD_LETTERS, main=UPDATES)

    def _drain_on_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for number in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[number] = signal.signal(number, self._on_signal)

    def _on_signal(self, number: int, frame: Any) -> None:
        if self.events.stop_requested.is_set():
            self._restore_handlers()
            signal.raise_signal(number)
            return
        print(f"{signal.Signals(number).name}: ending the input and draining every buffer "
              "(send it again to exit at once)", file=sys.stderr, flush=True)
        self.events.stop_requested.set()

    def _restore_handlers(self) -> None:
        for number, handler in self._previous_handlers.items():
            signal.signal(number, handler)
        self._previous_handlers.clear()

    def stop(self) -> None:
        self.events.stop_requested.set()
        self.service.stop()
        self._restore_handlers()

    def commit(self) -> List[str]:
        """Renames the files read whole to ``*.jsonl.done``; call it once every output is committed."""
        done = []
        for path in self.events.complete_files():
            if os.path.exists(path):
                os.rename(path, path + ".done")
                done.append(path)
        return done
