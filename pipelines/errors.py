"""The one error type that means "the command is wrong" (exit status 2, one line).

Raised by the command line about what it was given: a missing input, an unknown sink or
option, a bad option value, a database it cannot reach. Anything else that escapes a
command is a bug, reported as an internal error (exit status 1).
"""
from __future__ import annotations


class CommandError(Exception):
    """A mistake in the command; its message is the one line the user sees."""
