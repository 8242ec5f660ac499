"""Definitions loaded from a file travel inside the pickles that refer to them.

A worker (Dataflow, Flink, a portable worker pool, the FnApiRunner's worker processes) unpickles
sinks, feature classes and output models by module name, but a file given to ``--definitions`` is
on the launcher's path only. So an object of such a module pickles as "attribute ``qualname`` of
the module built from this source": the first one unpickled in a process executes the source once
(as the launcher did) and registers the module under the launcher's name; the others, and every
by-name reference that follows, find it there. Where the module is already loaded from the same
source (the launcher itself, the in-process FnApiRunner) nothing is executed again, so identity holds.
"""
from __future__ import annotations

import copyreg
import hashlib
import sys
import threading
from dataclasses import dataclass, field
from functools import reduce
from types import ModuleType
from typing import Any, Callable, Dict, Optional, Tuple

_lock = threading.RLock()


@dataclass(frozen=True)
class ModuleSource:
    """The source of one definitions module, as the launcher loaded it."""

    name: str
    filename: str
    source: str
    digest: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.digest:
            object.__setattr__(self, "digest", hashlib.sha256(self.source.encode()).hexdigest())

    def __reduce__(self) -> Any:
        return _module, (self.name, self.filename, self.source, self.digest)


# Module name → source, for the modules loaded from files in this process.
_shipped: Dict[str, ModuleSource] = {}


def ship(module: ModuleType, source: ModuleSource) -> None:
    """Make ``module``'s objects carry ``source`` when pickled."""
    module.__dict__["__definitions_digest__"] = source.digest
    _shipped[source.name] = source
    for value in list(vars(module).values()):
        if isinstance(value, type) and value.__module__ == module.__name__:
            pickle_classes_by_source(type(value))


def already_loaded(source: ModuleSource) -> Optional[ModuleType]:
    """The module loaded earlier in this process from the same file and source, if any."""
    for known in _shipped.values():
        if known.filename == source.filename and known.digest == source.digest:
            module = sys.modules.get(known.name)
            if module is not None and module.__dict__.get("__definitions_digest__") == source.digest:
                return module
    return None


def reduce_by_source(obj: Any) -> Optional[Tuple[Callable[..., Any], Tuple[Any, ...]]]:
    """The pickle reduction of a module-level object of a shipped module, or None for others."""
    source = _shipped.get(getattr(obj, "__module__", ""))
    if source is None:
        return None
    module = sys.modules.get(source.name)
    try:
        reachable = module is not None and _lookup(module, obj.__qualname__) is obj
    except Exception:   # noqa: BLE001 - any failure to look it up means "not reachable by name"
        reachable = False
    if not reachable:
        return None   # defined in a function, or replaced: the pickler copies it by value as before
    return _attribute, (source, obj.__qualname__)


def pickle_classes_by_source(metaclass: type) -> None:
    """Classes of this metaclass defined in shipped modules pickle with their module's source.

    Class pickling cannot be hooked on the class itself; a reducer registered for its metaclass is
    consulted for classes the pickler would otherwise save by name, and keeps that for the others."""
    if metaclass is not type and metaclass not in copyreg.dispatch_table:
        copyreg.pickle(metaclass, _reduce_class)


def _reduce_class(cls: type) -> Any:
    return reduce_by_source(cls) or cls.__qualname__


def _attribute(module: ModuleType, qualname: str) -> Any:
    # ``module`` was pickled as its ModuleSource, which unpickles to the module itself.
    return _lookup(module, qualname)


def _lookup(module: ModuleType, qualname: str) -> Any:
    return reduce(getattr, qualname.split("."), module)


def _module(name: str, filename: str, source: str, digest: str) -> ModuleType:
    with _lock:
        module = sys.modules.get(name)
        if module is not None and module.__dict__.get("__definitions_digest__") == digest:
            return module
        from sinks.registry import Registry, execute_source
        with Registry().activate():
            return execute_source(ModuleSource(name, filename, source, digest))
