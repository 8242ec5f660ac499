"""The collector's thresholds, raised where inputs are assembled; never lowered."""
import gc

import pytest

from transforms import collector


@pytest.fixture
def thresholds():
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_relax_raises_each_threshold_and_lowers_none(thresholds):
    gc.set_threshold(700, 10, 10)
    collector.relax()
    assert gc.get_threshold() == collector.THRESHOLDS
    gc.set_threshold(10 * collector.THRESHOLDS[0], 10, 1000)
    collector.relax()
    assert gc.get_threshold() == (10 * collector.THRESHOLDS[0], collector.THRESHOLDS[1], 1000)


def test_relax_leaves_a_disabled_collector(thresholds):
    gc.set_threshold(0, 10, 10)
    collector.relax()
    assert gc.get_threshold() == (0, 10, 10)


def test_the_assemble_stage_relaxes_the_collector_in_its_worker(thresholds):
    from datetime import timedelta

    from transforms.assemble.assemble import _ParseFn
    from transforms.assemble.parse import UpdateParser
    gc.set_threshold(700, 10, 10)
    _ParseFn(UpdateParser({}), {}, "clock", timedelta(days=1)).setup()
    assert gc.get_threshold() == collector.THRESHOLDS
