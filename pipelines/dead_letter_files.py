"""Dead letters as JSONL files, one record per failure, readable by the owner only.

Each bundle that has dead letters appends them to a file of its own under the
directory (``dead-letters-<random>.jsonl``), so concurrent workers never share a
file; the directory is created ``0700`` and every file ``0600``.
"""
from __future__ import annotations

import os
import uuid
from typing import Any, Dict, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.dead_letters import to_json


class _AppendFn(beam.DoFn):
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.written = Metrics.counter("sinks.dead_letters", "written")

    def start_bundle(self) -> None:
        self._file: Optional[Any] = None

    def process(self, letter: Dict[str, Any]) -> None:
        if self._file is None:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            path = os.path.join(self.directory, f"dead-letters-{uuid.uuid4().hex[:16]}.jsonl")
            self._file = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w",
                                   encoding="utf-8")
        self._file.write(to_json(letter) + "\n")
        self.written.inc()

    def finish_bundle(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class WriteDeadLetters(beam.PTransform):
    """Append dead-letter records to owner-only JSONL files under ``directory``."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = directory

    def expand(self, letters: beam.PCollection) -> beam.PCollection:
        return letters | "Append" >> beam.ParDo(_AppendFn(self.directory))
