"""Stable shards for entity keys: the same shard in every process and every run."""
from __future__ import annotations

import zlib
from typing import Any


def shard_of(key: Any, num_shards: int) -> int:
    """The shard of ``key`` among ``num_shards``: ``crc32(repr(key)) % num_shards``."""
    if num_shards == 1:
        return 0
    return zlib.crc32(repr(key).encode("utf-8")) % num_shards
