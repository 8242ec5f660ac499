"""``RetryPolicy``: how patiently a failing call or write is tried again before its input is
dead-lettered. One type for both; calls and writes differ only in their defaults."""
from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from typing import Optional

UNLIMITED = sys.maxsize
"""``attempts`` for a policy bounded by its ``deadline`` alone (or by nothing)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how patiently, something that failed is tried again.

    ``attempts`` counts every try (1 = no retry). The n-th retry waits
    ``min(max_delay, base_delay * 2**(n-1))`` seconds, give or take 20% jitter (so
    that workers failing together do not return in step). With ``timeout``, a call
    still running after that many seconds has failed (``TimeoutError``; it is left
    to finish on its own thread, as Python cannot stop it). With ``deadline``, no retry
    starts that would end more than ``deadline`` seconds after the first try;
    ``None`` or ``0`` sets no deadline (a write then retries for as long as the
    database is away, the right choice for a streaming job).
    """

    attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 10.0
    timeout: Optional[float] = None
    deadline: Optional[float] = None

    def delay(self, retry: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (retry - 1)) * random.uniform(0.8, 1.2)

    def gives_up(self, attempts: int, elapsed: float) -> bool:
        """True when no retry should follow ``attempts`` tries, the next one due ``elapsed``
        seconds after the first began."""
        if attempts >= self.attempts:
            return True
        return self.deadline is not None and 0 < self.deadline < elapsed
