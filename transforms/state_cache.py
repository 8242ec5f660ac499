"""Beam's state cache, sized cheaply for the plain values this project keeps in state.

Beam's SDK worker caches state in a ``StateCache`` that weighs every value it stores (each
write, and each read that misses) with ``statecache.get_deep_size``, which calls objsize;
objsize first lists the globals of every loaded module, to leave shared objects out. With
Beam, SQLAlchemy and pyarrow loaded that listing alone took ~0.25 ms per call on a quiet
machine and ~3 ms under load, 22-50% of a whole bank job. The values this project's stateful
DoFns keep are lists of bytes, ints and small tuples (pickled entities, counters, buffered
updates): their size is the sum of ``sys.getsizeof`` over what they contain, which is what
objsize finds for them too, minus the module scan.

``install()`` swaps ``statecache.get_deep_size`` for :func:`state_size`; values of any other
kind are still weighed by Beam's function. It runs when ``transforms`` is imported, which
every worker does when it unpickles one of the project's DoFns, so a remote runner's
workers get it as the local one does. It checks Beam's version and that the cache still
reaches the function through that module global; otherwise it leaves Beam alone.
tests/test_state_cache.py fails when Beam's internals move.
"""
from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Optional

import apache_beam
from apache_beam.runners.worker import statecache

TESTED_BEAM_VERSIONS = ("2.77.",)
_ATOMS = frozenset({bytes, str, int, float, bool, type(None)})
_LOGGER = logging.getLogger(__name__)

_beam_size: Callable[..., int] = statecache.get_deep_size


def plain_size(value: Any) -> Optional[int]:
    """Deep size in bytes of a value made only of lists, tuples, dicts and atoms (bytes, str,
    numbers, None), each object counted once; None for a value holding anything else."""
    seen = set()
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        kind = type(item)
        if kind in _ATOMS:
            continue
        if kind is list or kind is tuple:
            stack.extend(item)
        elif kind is dict:
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            return None
    return total


def state_size(*values: Any) -> int:
    """The weight Beam's state cache gives a value: :func:`plain_size` when it applies, else Beam's own."""
    if len(values) == 1:
        size = plain_size(values[0])
        if size is not None:
            return size
    return _beam_size(*values)


def supported() -> bool:
    """Whether this Beam is one whose state cache was checked to weigh values through
    ``statecache.get_deep_size`` (the tests check it for the Beam installed)."""
    return apache_beam.__version__.startswith(TESTED_BEAM_VERSIONS) and callable(
        getattr(statecache, "get_deep_size", None))


def install() -> bool:
    """Makes Beam's state cache weigh values with :func:`state_size`; True if it now does."""
    if statecache.get_deep_size is state_size:
        return True
    if not supported():
        _LOGGER.warning("Beam %s is not one this project's state-cache sizing was checked against; "
                        "leaving Beam's sizing as it is", apache_beam.__version__)
        return False
    statecache.get_deep_size = state_size
    return True
