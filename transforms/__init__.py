"""Beam building blocks that sinks compile into: pacing, calling user functions, SQL writes."""
from transforms import state_cache
from transforms.buffer import Buffer
from transforms.call import DEAD_LETTERS, RESULTS, CallSink, RetryPolicy
from transforms.deliver import DeliverSink

# Here, so that every process that unpickles one of these DoFns (a remote runner's workers too)
# weighs their state cheaply: see transforms/state_cache.py.
state_cache.install()

__all__ = ["Buffer", "CallSink", "DEAD_LETTERS", "DeliverSink", "RESULTS", "RetryPolicy"]
