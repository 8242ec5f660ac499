"""A local unbounded source: JSONL files arriving in a directory, read as they come.

Beam's DirectRunner takes live input through one door: a ``TestStream`` whose
events come from a ``TestStreamService`` (the interactive runner's mechanism;
``PeriodicImpulse`` failed there when measured, so a polling splittable DoFn is no option).
:class:`DirectoryEvents` is such a service's reader: every ``poll`` seconds it reads
the files that appeared in the directory since the last look (``*.jsonl``, in name
order; write a file elsewhere and rename it in, so it is never read half-written),
and sends their records, the processing time that passed and the watermark (the
wall clock). So ``debounce`` and ``max_delay`` timers fire in real time, and sinks
fire while files keep arriving. The stream ends (watermark to infinity, which
flushes every buffer) after ``stop_after`` seconds, or when a file named ``STOP``
appears. Read files are renamed ``*.jsonl.done``.
"""
from __future__ import annotations

import os
import time
from typing import Any, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam import coders
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.test_stream_service import TestStreamServiceController
from apache_beam.utils.timestamp import MAX_TIMESTAMP

STOP_FILE = "STOP"
Event = beam_runner_api_pb2.TestStreamPayload.Event


class DirectoryEvents:
    """The event reader behind a live ``TestStream``: files in ``directory`` become elements."""

    def __init__(self, directory: str, poll: float = 0.2, stop_after: Optional[float] = None,
                 coder: coders.Coder = coders.FastPrimitivesCoder()) -> None:
        self.directory = directory
        self.poll = poll
        self.stop_after = stop_after
        self.coder = coder

    def read_multiple(self, tags: List[Tuple[str, Any]]) -> Iterator[Event]:
        started = last = time.monotonic()
        while True:
            records = self._new_records()
            now = time.time()
            if records:
                yield self._elements(records, now)
            elapsed = time.monotonic()
            yield Event(processing_time_event=Event.AdvanceProcessingTime(
                advance_duration=int((elapsed - last) * 1_000_000)))
            last = elapsed
            yield Event(watermark_event=Event.AdvanceWatermark(new_watermark=int(now * 1_000_000)))
            if self._stopping(elapsed - started):
                # One last look, so a file renamed in just before the stop is not left behind.
                records = self._new_records()
                if records:
                    yield self._elements(records, time.time())
                yield Event(watermark_event=Event.AdvanceWatermark(new_watermark=MAX_TIMESTAMP.micros))
                return
            time.sleep(self.poll)

    def _stopping(self, running: float) -> bool:
        return (self.stop_after is not None and running >= self.stop_after) or os.path.exists(
            os.path.join(self.directory, STOP_FILE))

    def _elements(self, records: List[Any], now: float) -> Event:
        at = int(now * 1_000_000)
        return Event(element_event=Event.AddElements(elements=[
            beam_runner_api_pb2.TestStreamPayload.TimestampedElement(
                encoded_element=self.coder.encode(record), timestamp=at) for record in records]))

    def _new_records(self) -> List[bytes]:
        names = sorted(name for name in os.listdir(self.directory) if name.endswith(".jsonl"))
        records: List[bytes] = []
        for name in names:
            path = os.path.join(self.directory, name)
            with open(path, "rb") as handle:
                records.extend(line.rstrip(b"\r\n") for line in handle if line.strip())
            os.rename(path, path + ".done")
        return records


class ReadDirectory(beam.PTransform):
    """Raw JSONL lines (bytes) from files arriving in ``directory``, live, on the DirectRunner.

    The event service runs in this process for as long as the pipeline does; call
    :meth:`stop` after the run.
    """

    def __init__(self, directory: str, stop_after: Optional[float] = None, poll: float = 0.2) -> None:
        super().__init__()
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"{directory}: no such directory to watch")
        self.service = TestStreamServiceController(DirectoryEvents(directory, poll, stop_after))

    def expand(self, begin: beam.pvalue.PBegin) -> beam.PCollection:
        self.service.start()
        return begin | TestStream(coder=coders.FastPrimitivesCoder(), endpoint=self.service.endpoint)

    def stop(self) -> None:
        self.service.stop()
