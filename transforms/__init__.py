"""Beam building blocks that sinks compile into: pacing, calling user functions, SQL writes.

Importing the package loads nothing: a reusable block (``transforms.sql``,
``transforms.buffer``) is taken alone, without the sink runtime that ``CallSink`` and
``DeliverSink`` need, which load when first named here.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"Buffer": "transforms.buffer", "CallSink": "transforms.call", "DEAD_LETTERS": "transforms.call",
         "DeliverSink": "transforms.deliver", "RESULTS": "transforms.call", "RetryPolicy": "transforms.call"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'transforms' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
