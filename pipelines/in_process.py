"""Settings for a job that the FnApiRunner runs inside this process (``run``'s default for a batch).

The FnApiRunner runs each stage's whole input as one bundle, and its SDK worker shares this
process. With many distinct entities (measured on the bank job, 200,000 users with two updates
each, on 2 busy cores):

- Python's cyclic garbage collector walks every live object at each full collection, and the
  live objects grow with the entities held (the runner's state cells, the bundle's state
  handles): the thresholds of ``transforms.collector`` apply to this process for the run;
- The SDK worker's state cache (100 MB by Beam's weights) keeps decoded copies of state that the
  runner holds in this same process anyway; ~2.3x its weight in real memory. Without it: peak RSS
  709 MB instead of 817 MB, 46.3 s instead of 54.7 s; the 10,000-user soak (400,000 updates, few
  entities, all cached) ran at the same rate either way (19,645 and 19,203 updates/s with the
  cache, 19,996 and 19,097 without).

:func:`settings` applies both for the duration of a run and restores them after. Beam's runner
takes its cache size from the module constant ``worker_handlers.STATE_CACHE_SIZE_MB`` when it
starts its worker; tests/test_in_process.py fails if that constant goes away.
"""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import worker_handlers

from transforms import collector

STATE_CACHE_MB = 0


def runs_in_process(options: PipelineOptions) -> bool:
    """Whether ``options`` name the FnApiRunner with its worker in this process."""
    direct = options.view_as(DirectOptions)
    return (options.view_as(StandardOptions).runner == "FnApiRunner"
            and direct.direct_running_mode in (None, "in_memory") and direct.direct_num_workers in (None, 1))


@contextlib.contextmanager
def settings(options: PipelineOptions) -> Iterator[None]:
    """The collector's thresholds and the worker's state cache size for an in-process run of
    ``options`` (nothing changes for another runner), restored on leaving."""
    if not runs_in_process(options):
        yield
        return
    thresholds, cache_mb = gc.get_threshold(), worker_handlers.STATE_CACHE_SIZE_MB
    collector.relax()
    worker_handlers.STATE_CACHE_SIZE_MB = STATE_CACHE_MB
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        worker_handlers.STATE_CACHE_SIZE_MB = cache_mb
