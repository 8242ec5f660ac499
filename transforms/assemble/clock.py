"""The stream's clock as the assemble stage sees it, per pipeline.

"Now" for a time window is the stream's event-time clock, the watermark, but never
later than the data: at the end of a bounded input (or a drain) the watermark jumps
to +infinity, and a window evaluated there would be empty. So each ``Assemble`` has a
data clock, the greatest valid event time its parser has seen, and a window timer
that comes due past it (or past an explicit ``as_of``) does not fire.

Beam gives a DoFn no way to read another key's data, nor the watermark, so the data
clock travels beside the pipeline: the parser keeps it in its process and, at the end
of each bundle, publishes it to a small file per process in the temporary directory,
where the state stage of every worker process of the same machine reads it (the
FnApiRunner with several worker processes splits a bounded input between them, and
fires their timers in bundles of their own). Workers on other machines have their own
share of the input's clock; ``as_of`` makes the end of a bounded run exact there.
"""
from __future__ import annotations

import glob
import os
import tempfile
from typing import Dict, Optional

from transforms.assemble.messages import NEVER

# Assemble's id → the greatest event time its parser has accepted in this process.
_DATA_CLOCKS: Dict[str, int] = {}


def _path(clock_id: str, pid: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"feature-sinks-clock-{clock_id}-{pid}")


def advance(clock_id: str, time: int) -> None:
    """The parser accepted an update with event time ``time``."""
    if time > _DATA_CLOCKS.get(clock_id, NEVER):
        _DATA_CLOCKS[clock_id] = time


def publish(clock_id: str) -> None:
    """Shares this process's data clock with the other worker processes of this machine."""
    time = _DATA_CLOCKS.get(clock_id)
    if time is None:
        return
    path = _path(clock_id, os.getpid())
    partial = f"{path}.partial"
    with open(partial, "w") as handle:
        handle.write(str(time))
    os.replace(partial, path)


def withdraw(clock_id: str) -> None:
    """This process is done with the pipeline: its published clock goes."""
    try:
        os.remove(_path(clock_id, os.getpid()))
    except FileNotFoundError:
        pass


# An input's id → how many of its files a reader in this process stopped reading part-way, the
# rest deferred to a later bundle (``pipelines.sources``). The FnApiRunner delivers the timers a
# bundle set before the next bundle's input, so an end-of-input timer can fire while such a rest is
# still to be read.
_DEFERRED_READS: Dict[str, int] = {}


def read_deferred(input_id: str) -> None:
    """A reader of ``input_id`` left the rest of a file for a later bundle."""
    _DEFERRED_READS[input_id] = _DEFERRED_READS.get(input_id, 0) + 1


def read_resumed(input_id: str) -> None:
    """A reader of ``input_id`` started on the rest of a file it had deferred."""
    left = _DEFERRED_READS.get(input_id, 0) - 1
    if left > 0:
        _DEFERRED_READS[input_id] = left
    else:
        _DEFERRED_READS.pop(input_id, None)


def input_read(input_id: Optional[str]) -> bool:
    """Whether nothing of input ``input_id`` waits to be read in this process (always, without an id:
    its reader reads each file in one go)."""
    return input_id is None or input_id not in _DEFERRED_READS


def latest(clock_id: str, as_of: Optional[int]) -> int:
    """The latest instant a window may be evaluated at: ``as_of`` when given, else the data clock
    of every worker process of this machine."""
    if as_of is not None:
        return as_of
    found = _DATA_CLOCKS.get(clock_id, NEVER)
    for path in glob.glob(_path(glob.escape(clock_id), 0)[:-1] + "*[0-9]"):
        try:
            with open(path) as handle:
                found = max(found, int(handle.read()))
        except (OSError, ValueError):
            continue    # a process withdrawing its clock, or writing it
    return found
