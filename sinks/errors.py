"""Errors raised while reading feature classes and sink definitions."""
from __future__ import annotations

from typing import Optional


class DefinitionError(ValueError):
    """A feature class or sink definition is invalid.

    The message starts with ``file:line:`` and names the sink (or feature
    class) and the parameter, so an editor can jump to the mistake.
    """


class FeatureNotFoundError(AttributeError, DefinitionError):
    """``SomeClass.attr`` names no feature of ``SomeClass``."""


def located(filename: Optional[str], line: Optional[int], message: str) -> str:
    """Prefix ``message`` with ``file:line:`` when the location is known."""
    if filename is None:
        return message
    return f"{filename}:{line or 0}: {message}"
