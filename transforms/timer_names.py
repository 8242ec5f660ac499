"""Timer names of a step's own: ``with_timers_named``.

Beam gives each timer of a stateful DoFn the name of its ``TimerSpec``, which is a class
attribute, so every step made from one DoFn class has timers named alike. The FnApiRunner keeps
the timers a bundle set in buffers named after the timer alone, for the whole pipeline (Beam
2.77, ``fn_api_runner/execution.py``: ``timer_buffers[b"timers:" + name]``), and collecting one
step's timers clears the others'. Measured on the FnApiRunner: with two paced sinks in one job,
one of them lost its end-of-input flush in each of 6 runs (50 of 150 updates never delivered,
which sink varying), and the routing step's timer, named like the pacing buffer's, was lost in 4
of 8 runs. ``with_timers_named`` gives a DoFn's timers names of the step's own. It copies the
DoFn's class with new ``TimerSpec``s, which Beam's internals tie to ``process`` and the
``on_timer`` callbacks (``_TimerDoFnParam``, ``_attached_callback``); tests/test_buffer.py fails
if that stops working.
"""
from __future__ import annotations

import copy
import types
from typing import Any, Dict

import apache_beam as beam
from apache_beam.transforms.core import _TimerDoFnParam
from apache_beam.transforms.userstate import TimerSpec


def with_timers_named(dofn: beam.DoFn, suffix: str) -> beam.DoFn:
    """A copy of ``dofn`` whose every timer is named ``<its name>-<suffix>``: ``suffix`` names the
    step (a sink's name, a class's label), the same in every run, so that a job updated in place
    finds its timers again."""
    cls = type(dofn)
    if not any(isinstance(getattr(cls, attr), TimerSpec) for attr in dir(cls)):
        return dofn
    renamed: Dict[int, TimerSpec] = {}
    namespace: Dict[str, Any] = {}
    for attr in dir(cls):
        spec = getattr(cls, attr)
        if isinstance(spec, TimerSpec):
            name = spec.name[len(spec.prefix):]        # TimerSpec adds its prefix ("ts-") to the name given
            renamed[id(spec)] = namespace[attr] = TimerSpec(f"{name}-{suffix}", spec.time_domain)
    callbacks = {spec._attached_callback.__name__: spec for spec in
                 (getattr(cls, attr) for attr in dir(cls)) if isinstance(spec, TimerSpec) and spec._attached_callback}
    for name in ("process", *callbacks):
        method = getattr(cls, name)
        defaults = tuple(beam.DoFn.TimerParam(renamed[id(d.timer_spec)])
                         if isinstance(d, _TimerDoFnParam) and id(d.timer_spec) in renamed else d
                         for d in method.__defaults__ or ())
        twin = types.FunctionType(method.__code__, method.__globals__, method.__name__, defaults, method.__closure__)
        twin.__kwdefaults__, twin.__qualname__ = method.__kwdefaults__, method.__qualname__
        namespace[name] = twin
    for name, spec in callbacks.items():
        renamed[id(spec)]._attached_callback = namespace[name]
    named = copy.copy(dofn)
    named.__class__ = type(cls.__name__, (cls,), namespace)
    return named
