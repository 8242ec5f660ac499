"""Beam building blocks that sinks compile into: pacing, calling user functions, SQL writes."""
from transforms.buffer import Buffer
from transforms.call import DEAD_LETTERS, RESULTS, CallSink, RetryPolicy
from transforms.deliver import DeliverSink

__all__ = ["Buffer", "CallSink", "DEAD_LETTERS", "DeliverSink", "RESULTS", "RetryPolicy"]
