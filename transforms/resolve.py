"""``ResolveMessages``: raw messages → a ``@stream`` resolver → feature updates.

A message the resolver cannot take (not JSON, not valid for its pydantic model), a
resolver that raises, or a result that is not feature updates goes to
``dead_letters`` with the reason; the stream goes on.
"""
from __future__ import annotations

from typing import Any, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from sinks.stream import StreamResolver, to_updates
from transforms.dead_letters import DEAD_LETTERS, FirstTracebacks, dead_letter

UPDATES = "updates"


class _ResolveFn(beam.DoFn):
    def __init__(self, resolver: StreamResolver) -> None:
        self.resolver = resolver
        namespace = f"sinks.resolver.{resolver.spec.name}"
        self.resolved = Metrics.counter(namespace, "messages")
        self.failed = Metrics.counter(namespace, "dead_letters")

    def start_bundle(self) -> None:
        self._tracebacks = FirstTracebacks()

    def process(self, record: Any) -> Iterable[Any]:
        try:
            updates = to_updates(self.resolver.fn(self.resolver.message(record)))
        except Exception as error:  # the user's parsing code may raise anything
            self.failed.inc()
            shown = record.decode("utf-8", "replace") if isinstance(record, bytes) else record
            yield TaggedOutput(DEAD_LETTERS, dead_letter(
                "resolve", self.resolver.spec.name, error, shown, with_traceback=self._tracebacks.is_new(error)))
            return
        self.resolved.inc()
        yield from updates


class ResolveMessages(beam.PTransform):
    """Run each raw message through ``resolver``; returns ``updates`` and ``dead_letters``."""

    def __init__(self, resolver: StreamResolver) -> None:
        super().__init__(f"Resolve({resolver.spec.name})")
        self.resolver = resolver

    def expand(self, messages: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return messages | beam.ParDo(_ResolveFn(self.resolver)).with_outputs(DEAD_LETTERS, main=UPDATES)
