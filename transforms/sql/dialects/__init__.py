"""One class per database, registered by SQLAlchemy dialect name.

Adding a database is one file in this package: a subclass of
:class:`~transforms.sql.dialects.base.SQLDialect` decorated with
``@register``; every module here is imported with the package.
A database without a class of its own gets the generic fallback (appends only).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Dict, Type, TypeVar

from transforms.sql.dialects.base import SQLDialect, WriteMode

_REGISTRY: Dict[str, Type[SQLDialect]] = {}
_D = TypeVar("_D", bound=Type[SQLDialect])


def register(cls: _D) -> _D:
    """Class decorator: ``cls`` serves every dialect name in ``cls.names``."""
    for name in cls.names:
        _REGISTRY[name] = cls
    return cls


def dialect_for(name: str) -> Type[SQLDialect]:
    """The class for a SQLAlchemy dialect name (``postgresql``, ``mysql``...), else the fallback."""
    return _REGISTRY.get(name, SQLDialect)


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


__all__ = ["SQLDialect", "WriteMode", "dialect_for", "register"]
