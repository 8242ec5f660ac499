"""The collector's young threshold, raised where inputs are assembled; never lowered."""
import gc

import pytest

from transforms import collector


@pytest.fixture
def thresholds():
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_relax_raises_the_young_threshold_and_keeps_the_others(thresholds):
    gc.set_threshold(700, 10, 10)
    collector.relax()
    assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, 10, 10)


@pytest.mark.parametrize("young", [0, 10 * collector.YOUNG_THRESHOLD])
def test_relax_leaves_a_higher_threshold_or_a_disabled_collector(thresholds, young):
    gc.set_threshold(young, 10, 10)
    collector.relax()
    assert gc.get_threshold() == (young, 10, 10)


def test_the_assemble_stage_relaxes_the_collector_in_its_worker(thresholds):
    from datetime import timedelta

    from transforms.assemble.assemble import _ParseFn
    from transforms.assemble.parse import UpdateParser
    gc.set_threshold(700, 10, 10)
    _ParseFn(UpdateParser({}), {}, "clock", timedelta(days=1)).setup()
    assert gc.get_threshold()[0] == collector.YOUNG_THRESHOLD
