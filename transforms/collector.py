"""The garbage collector's thresholds, raised in the processes that run the pipeline's stages.

A job allocates a few small objects per update (the parsed features, messages, firings) and keeps
few of them, while Beam's worker and the job's state keep many long-lived ones, which every
middle and full collection walks. Measured on a 2-core machine:

- the bank example's run over 170,339 updates (10,000 users), at CPython's default thresholds
  (700, 10, 10), made 2,815 young, 255 middle and 19 full collections; with a young threshold of
  50,000 it made 403, 35 and 3, and went from 10,900-11,400 to 13,700-14,200 updates/s with the
  same peak RSS (378 MB);
- with 200,000 users of two updates each, full collections grow with the entities held: at the
  default thresholds collection took 15.9 s of a 50.5 s run; at (50,000, 50, 100) 3.0 s of 36.4 s,
  with the same peak RSS (the job's objects form few cycles).

Objects that outlive a young collection are the same either way; only how often the collector
looks changes.
"""
from __future__ import annotations

import gc

# (young, middle, old) generation thresholds.
THRESHOLDS = (50_000, 50, 100)


def relax() -> None:
    """Raises each generation's threshold to ``THRESHOLDS``; one set higher, or a collector
    disabled by a young threshold of 0, is left as it is."""
    current = gc.get_threshold()
    if current[0] > 0:
        gc.set_threshold(*(max(now, wanted) for now, wanted in zip(current, THRESHOLDS)))
