"""Registries of feature classes and sinks, and ``load()`` for definitions files."""
from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Dict, Iterator, List, Union

from sinks.errors import DefinitionError, located
from sinks.features import info, is_feature_class

if TYPE_CHECKING:
    from sinks.sink import Sink
    from sinks.stream import StreamResolver

_PACKAGE_DIR = str(Path(__file__).resolve().parent)
_LOCATED = re.compile(r"^\S+:\d+: ")


class Registry:
    """The feature classes (by namespace) and sinks (by name) of one set of definitions."""

    def __init__(self) -> None:
        self.feature_classes: Dict[str, type] = {}
        self.sinks: Dict[str, "Sink"] = {}
        self.resolvers: Dict[str, "StreamResolver"] = {}

    def add_feature_class(self, cls: type) -> None:
        namespace = info(cls).namespace
        known = self.feature_classes.get(namespace)
        if known is not None and known is not cls and _origin(known) != _origin(cls):
            raise DefinitionError(
                f"two feature classes use namespace '{namespace}': {_origin(known)} and {_origin(cls)}; "
                "rename one or pass @features(name=...)")
        self.feature_classes[namespace] = cls

    def add_sink(self, sink: "Sink") -> None:
        spec = sink.spec
        known = self.sinks.get(spec.name)
        if known is not None and known is not sink and known.spec.location != spec.location:
            raise DefinitionError(located(
                spec.filename, spec.line,
                f"sink '{spec.name}' is defined twice: first at {known.spec.location}; "
                "sink names must be unique (pass name=... to one of them)"))
        self.sinks[spec.name] = sink

    def add_resolver(self, resolver: "StreamResolver") -> None:
        self.resolvers[resolver.spec.name] = resolver

    def resolver(self, name: str) -> "StreamResolver":
        try:
            return self.resolvers[name]
        except KeyError:
            raise KeyError(f"no stream resolver named '{name}' "
                           f"(resolvers: {', '.join(sorted(self.resolvers)) or 'none'})") from None

    def classes_by_name(self) -> Dict[str, type]:
        return {cls.__name__: cls for cls in self.feature_classes.values()}

    def sink(self, name: str) -> "Sink":
        try:
            return self.sinks[name]
        except KeyError:
            raise KeyError(
                f"no sink named '{name}' (sinks: {', '.join(sorted(self.sinks)) or 'none'})") from None

    def validate(self) -> None:
        """Resolve every annotation and join, raising the first definition error."""
        for cls in self.feature_classes.values():
            info(cls).validate()
            info(cls).check_joins()

    @contextlib.contextmanager
    def activate(self) -> Iterator["Registry"]:
        """Make this the registry that ``@features`` and ``@sink`` add to, within the block."""
        _active.append(self)
        try:
            yield self
        finally:
            _active.remove(self)

    def __repr__(self) -> str:
        return (f"Registry(feature_classes={sorted(self.feature_classes)}, "
                f"sinks={sorted(self.sinks)})")


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


_active: List[Registry] = [Registry()]


def current_registry() -> Registry:
    """The registry definitions add themselves to: the innermost active one."""
    return _active[-1]


def load(target: Union[str, os.PathLike, ModuleType]) -> Registry:
    """Import a definitions module or file and return its feature classes and sinks.

    ``target`` is a module, a dotted module name, or a path to a ``.py``
    file (imported under its package's dotted name when its folder is a
    package, so workers can import it too). Errors in the file are raised as
    :class:`DefinitionError` pointing at the file and line.
    """
    from sinks.sink import Sink
    from sinks.stream import StreamResolver
    registry = Registry()
    with registry.activate():
        try:
            module = _import(target)
            for value in list(vars(module).values()):
                if isinstance(value, Sink):
                    registry.add_sink(value)
                elif isinstance(value, StreamResolver):
                    registry.add_resolver(value)
                elif is_feature_class(value):
                    registry.add_feature_class(value)
            for sink in registry.sinks.values():
                registry.add_feature_class(sink.spec.root)
            registry.validate()
        except Exception as error:
            raise _pointing_at_user_code(error) from error
    return registry


def _import(target: Union[str, os.PathLike, ModuleType]) -> ModuleType:
    if isinstance(target, ModuleType):
        return target
    text = os.fspath(target)
    path = Path(text)
    if text.endswith(".py") or os.sep in text or path.exists():
        if not path.is_file():
            raise DefinitionError(f"{text}: no such definitions file")
        return _import_file(path.resolve())
    return importlib.import_module(text)


def _import_file(path: Path) -> ModuleType:
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return importlib.import_module(".".join(parts))


def _pointing_at_user_code(error: BaseException) -> DefinitionError:
    if isinstance(error, SyntaxError) and error.filename:
        return DefinitionError(located(error.filename, error.lineno, f"SyntaxError: {error.msg}"))
    message = str(error) if isinstance(error, DefinitionError) else f"{type(error).__name__}: {error}"
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if not f.filename.startswith(_PACKAGE_DIR) and not f.filename.startswith("<frozen")]
    if not frames or _LOCATED.match(message):
        return error if isinstance(error, DefinitionError) else DefinitionError(message)
    return DefinitionError(located(frames[-1].filename, frames[-1].lineno, message))
