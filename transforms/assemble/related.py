"""``RelatedRows``: a has-many input as the assemble stage emits it, and its ``DataFrame``.

The state stage hands on the rows it holds and the firing's time; the sink's
filters, time window and projection are applied when the sink is
called (``CallSink``), so the keyed stage stays cheap.
"""
from __future__ import annotations

from typing import Any, Dict, List

from sinks.dataframe import DataFrame, related_frame
from sinks.features import Ref
from transforms.assemble.parse import moment


class RelatedRows:
    """The related rows an entity holds for one has-many input, and the firing's time ``now`` (µs)."""

    __slots__ = ("rows", "now")

    def __init__(self, rows: List[Dict[str, Any]], now: int) -> None:
        self.rows, self.now = rows, now

    def __reduce__(self) -> Any:
        return RelatedRows, (self.rows, self.now)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, RelatedRows) and (self.rows, self.now) == (other.rows, other.now)

    def __repr__(self) -> str:
        return f"RelatedRows({self.rows!r}, now={moment(self.now).isoformat()})"

    def frame(self, ref: Ref) -> DataFrame:
        """The ``DataFrame`` a sink parameter annotated ``ref`` receives: every scalar feature of
        the related class, filtered (windows end at ``now``) and projected as ``ref`` says."""
        return related_frame(self.rows, ref, moment(self.now))
