"""The stream's clock as the assemble stage sees it, per pipeline.

"Now" for a time window is the stream's event-time clock, the watermark, but never
later than the data: at the end of a bounded input (or a drain) the watermark jumps
to +infinity, and a window evaluated there would be empty. So each ``Assemble`` has a
data clock, the greatest valid event time its parser has seen, and a window timer
that comes due past it (or past an explicit ``as_of``) does not fire.

The parser and the state stage are fused into one step, so they run in the same
worker process: the data clock lives in this module, keyed by the ``Assemble`` it
belongs to. On a runner with several workers each worker's data clock is its own
share of the input's; ``as_of`` makes the end of a bounded run exact there.
"""
from __future__ import annotations

from typing import Dict, Optional

from transforms.assemble.messages import NEVER

# Assemble's id → the greatest event time its parser has accepted in this process.
_DATA_CLOCKS: Dict[str, int] = {}


def advance(clock_id: str, time: int) -> None:
    """The parser accepted an update with event time ``time``."""
    if time > _DATA_CLOCKS.get(clock_id, NEVER):
        _DATA_CLOCKS[clock_id] = time


def latest(clock_id: str, as_of: Optional[int]) -> int:
    """The latest instant a window may be evaluated at: ``as_of`` when given, else the data clock."""
    return as_of if as_of is not None else _DATA_CLOCKS.get(clock_id, NEVER)
