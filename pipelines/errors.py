"""The one error type that means "the command is wrong" (exit status 2, one line).

Raised by the command line about what it was given: a missing input, an unknown sink or
option, a bad option value, a database it cannot reach. Anything else that escapes a
command is a bug, reported as an internal error (exit status 1).
"""
from __future__ import annotations

import re
from typing import Optional

from transforms.sql.errors import TableWriteError


class CommandError(Exception):
    """A mistake in the command; its message is the one line the user sees."""


def table_write_error(error: BaseException) -> Optional[str]:
    """The message of the :class:`~transforms.sql.errors.TableWriteError` behind a failed run,
    if that is what failed it (``sink '…': cannot write to table '…': reason``), without the
    step Beam appends to it. A runner re-raises a DoFn's error as its own, keeping only its
    text when the worker is remote."""
    seen: Optional[BaseException] = error
    while seen is not None and not isinstance(seen, TableWriteError):
        seen = seen.__cause__ or seen.__context__
    text = f"{TableWriteError.__name__}: {seen}" if seen is not None else str(error)
    found = re.search(rf"{TableWriteError.__name__}: (sink .*?)(?: \[while running '.*'\])?$", text, re.MULTILINE)
    return found.group(1) if found else None
