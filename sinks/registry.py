"""Registries of feature classes and sinks, and ``load()`` for definitions files."""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import os
import re
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Tuple, Union

from sinks.errors import DefinitionError, located
from sinks.features import info, is_feature_class
from sinks.shipped import ModuleSource, already_loaded, ship

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
    file. A file is that file, never another module of the same name; inside
    package folders it keeps its package's dotted name. A file's objects carry
    its source when pickled, so workers that cannot import it get it anyway
    (``sinks.shipped``). Errors in the file are raised as
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
    """The module of a definitions file: that file, whatever modules of the same name exist."""
    name, root = _package_name(path)
    if root is not None and not _taken(name.split(".")[0], root / name.split(".")[0] / "__init__.py"):
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        module = importlib.import_module(name)
        if Path(module.__file__ or "").resolve() == path:
            ship(module, ModuleSource(name, str(path), path.read_text(encoding="utf-8")))
            return module
    source = ModuleSource(path.stem, str(path), path.read_text(encoding="utf-8"))
    known = already_loaded(source)
    if known is not None:
        return known
    name = path.stem
    if _taken(name, path):
        # A file named like a module already imported or importable (email.py, queue.py, sinks.py)
        # gets a name of its own: loading it under the taken name would return the other module.
        name = _free_name(f"_definitions_{name}")
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))   # its sibling modules import; it shadows nothing
    return execute_source(dataclasses.replace(source, name=name))


def _package_name(path: Path) -> Tuple[str, Optional[Path]]:
    """The dotted name of a file inside package folders, and the folder above the top package."""
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts), folder if len(parts) > 1 else None


def _taken(name: str, path: Path) -> bool:
    """Whether ``name`` is, or would import as, a module other than the file ``path``."""
    known = sys.modules.get(name)
    if known is not None:
        return Path(getattr(known, "__file__", None) or "").resolve() != path
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and Path(spec.origin or "").resolve() != path


def _free_name(base: str) -> str:
    name, number = base, 1
    while name in sys.modules:
        number += 1
        name = f"{base}_{number}"
    return name


def execute_source(source: ModuleSource) -> ModuleType:
    """Runs a definitions file's source as module ``source.name`` (registered while it runs, as an
    import would, so dataclasses and string annotations resolve) and ships it with its pickles."""
    module = ModuleType(source.name)
    module.__file__ = source.filename
    sys.modules[source.name] = module
    try:
        exec(compile(source.source, source.filename, "exec", dont_inherit=True), module.__dict__)  # noqa: S102 - the user's definitions
    except BaseException:
        del sys.modules[source.name]
        raise
    ship(module, source)
    return module


def _pointing_at_user_code(error: BaseException) -> DefinitionError:
    if isinstance(error, SyntaxError) and error.filename:
        return DefinitionError(located(error.filename, error.lineno, f"SyntaxError: {error.msg}"))
    message = str(error) if isinstance(error, DefinitionError) else f"{type(error).__name__}: {error}"
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if not f.filename.startswith(_PACKAGE_DIR) and not f.filename.startswith("<frozen")]
    if not frames or _LOCATED.match(message):
        return error if isinstance(error, DefinitionError) else DefinitionError(message)
    return DefinitionError(located(frames[-1].filename, frames[-1].lineno, message))
