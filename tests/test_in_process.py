"""``pipelines.in_process``: the collector's thresholds and the state cache of an in-process run."""
from __future__ import annotations

import gc
from typing import List

import apache_beam as beam
import pytest
from apache_beam import coders
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.worker import statecache
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from pipelines import in_process
from transforms import collector


class _Count(beam.DoFn):
    SEEN = ReadModifyWriteStateSpec("seen", coders.VarIntCoder())

    def process(self, element, seen=beam.DoFn.StateParam(SEEN)):
        count = (seen.read() or 0) + 1
        seen.write(count)
        yield element[0], count


def _cache_sizes_of_a_run(options: PipelineOptions, monkeypatch) -> List[int]:
    """The sizes of the state caches Beam's worker made while running a small stateful job."""
    sizes: List[int] = []
    original = statecache.StateCache.__init__

    def recording(self, max_weight, *args, **kwargs):
        sizes.append(max_weight)
        original(self, max_weight, *args, **kwargs)

    monkeypatch.setattr(statecache.StateCache, "__init__", recording)
    with in_process.settings(options):
        with beam.Pipeline(options=options) as pipeline:
            counted = pipeline | beam.Create([("a", 1), ("b", 2), ("a", 3)]) | beam.ParDo(_Count())
            assert_that(counted, equal_to([("a", 1), ("a", 2), ("b", 1)]))
    return sizes


def test_an_in_process_run_has_no_state_cache_and_the_settings_are_restored(monkeypatch):
    before = gc.get_threshold()
    sizes = _cache_sizes_of_a_run(PipelineOptions(["--runner", "FnApiRunner"]), monkeypatch)
    assert sizes and set(sizes) == {0}     # Beam's worker read the constant the settings set
    assert gc.get_threshold() == before
    default = _cache_sizes_of_a_run(PipelineOptions(["--runner", "FnApiRunner", "--direct_num_workers", "2",
                                                     "--direct_running_mode", "multi_threading"]), monkeypatch)
    assert default and 0 not in default    # worker threads: Beam's own cache, settings untouched


@pytest.mark.parametrize("arguments, expected", [
    (["--runner", "FnApiRunner"], True),
    (["--runner", "FnApiRunner", "--direct_running_mode", "in_memory"], True),
    (["--runner", "FnApiRunner", "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"], False),
    (["--runner", "PrismRunner"], False),
    (["--runner", "BundleBasedDirectRunner"], False),
])
def test_only_the_in_memory_fnapi_runner_is_tuned(arguments, expected):
    assert in_process.runs_in_process(PipelineOptions(arguments)) is expected


def test_thresholds_apply_inside_only():
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)      # CPython's defaults (an earlier test's workers may have raised them)
    try:
        with in_process.settings(PipelineOptions(["--runner", "FnApiRunner"])):
            assert gc.get_threshold() == collector.THRESHOLDS
        assert gc.get_threshold() == (700, 10, 10)
        with in_process.settings(PipelineOptions(["--runner", "PrismRunner"])):
            assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*saved)
