"""Beam's state cache weighs the project's state through ``transforms.state_cache``.

These fail when Beam's internals move (another version, the sizing function renamed, the
cache no longer calling it through its module), which is when the sizing must be rechecked.
"""
import inspect
import pickle
import sys

import apache_beam
from apache_beam.runners.worker import statecache

import transforms.assemble  # noqa: F401  (installs the sizing)
from transforms import state_cache


def test_checked_against_this_beam():
    assert apache_beam.__version__.startswith(state_cache.TESTED_BEAM_VERSIONS), (
        f"Beam {apache_beam.__version__}: recheck transforms/state_cache.py against "
        "apache_beam/runners/worker/statecache.py, then add the version")
    assert state_cache.supported()


def test_installed_when_the_assemble_stage_is_imported():
    assert statecache.get_deep_size is state_cache.state_size


def test_the_cache_weighs_through_the_module_global():
    # StateCache.put and .get call the module's get_deep_size by name.
    assert "get_deep_size(value)" in inspect.getsource(statecache.StateCache.put)
    assert "get_deep_size(value)" in inspect.getsource(statecache.StateCache.get)
    cache = statecache.StateCache(10 ** 6)
    value = [pickle.dumps({"a": 1}), b"x" * 1000]
    cache.put(("key", b"token"), value)
    assert cache._current_weight == state_cache.state_size(value) > 1000
    cache.get(("other", b"token"), lambda key: [b"y" * 500])
    assert cache._current_weight == state_cache.state_size(value) + state_cache.state_size([b"y" * 500])


def test_same_weight_as_beams_for_the_projects_state():
    # Pickled entities (a list of bytes), a cleared state, buffered (key, update) tuples.
    for value in ([pickle.dumps(list(range(100))), b"abc"], [], [(3, ("u1", {"t": "x" * 50}))]):
        assert state_cache.state_size(value) == state_cache._beam_size(value) or (
            # objsize leaves out objects a module global also holds (small ints, interned names)
            0 < state_cache._beam_size(value) <= state_cache.state_size(value))
    blob = [b"z" * 10_000]
    assert state_cache.state_size(blob) == state_cache._beam_size(blob) == sys.getsizeof(blob) + sys.getsizeof(blob[0])


def test_other_values_are_weighed_by_beam():
    class Held:
        def __init__(self):
            self.data = b"q" * 2000

    assert state_cache.plain_size([Held()]) is None
    assert state_cache.state_size([Held()]) == state_cache._beam_size([Held()]) > 2000


def test_shared_objects_count_once():
    shared = b"s" * 1000
    assert state_cache.plain_size([shared, shared]) == sys.getsizeof([shared, shared]) + sys.getsizeof(shared)


def test_a_worker_that_unpickles_a_dofn_gets_it(tmp_path):
    """A remote worker imports nothing of the project until it unpickles a DoFn."""
    import subprocess

    from apache_beam.internal import pickler

    from transforms.deliver import LatestPerEntity
    blob = tmp_path / "dofn"
    blob.write_bytes(pickler.dumps(LatestPerEntity("s")))
    script = ("import sys\nfrom apache_beam.internal import pickler\n"
              "from apache_beam.runners.worker import statecache\n"
              "before = statecache.get_deep_size.__module__\n"
              f"pickler.loads(open({str(blob)!r}, 'rb').read())\n"
              "print(before, statecache.get_deep_size.__module__)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["apache_beam.runners.worker.statecache", "transforms.state_cache"], done.stderr
