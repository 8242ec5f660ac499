"""``@stream``: Chalk's stream resolvers, functions that turn a raw message into feature updates.

    @stream(source="transfers")
    def transfer_events(message: TransferEvent) -> Features[Transfer.id, Transfer.status]:
        return Transfer(id=message.id, status=message.state)

The parameter's annotation says what the function receives: ``dict`` (a parsed JSON
object), ``str`` or ``bytes`` (the raw record), or a pydantic model (validated from
the JSON). It returns feature-class instances, dicts of feature names (or features)
to values, a list of those, or None; :func:`to_updates` turns any of these into
feature updates.
"""
from __future__ import annotations

import inspect
import json
import typing
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from sinks.errors import DefinitionError, located
from sinks.features import Ref, info, is_feature_class
from sinks.sink import DecoratedFunction


@dataclass(frozen=True)
class StreamSpec:
    name: str
    source: Any
    message_type: Any          # dict, str, bytes or a pydantic model class
    filename: str
    line: int


class StreamResolver(DecoratedFunction):
    """A function decorated with ``@stream``: call it as the function; read ``.spec``."""

    spec: StreamSpec

    def message(self, record: Any) -> Any:
        """The argument the function takes for a raw record (bytes, text or parsed JSON)."""
        kind = self.spec.message_type
        if kind is bytes:
            return record if isinstance(record, bytes) else str(record).encode("utf-8")
        if kind is str:
            return record.decode("utf-8") if isinstance(record, bytes) else record
        value = json.loads(record) if isinstance(record, (bytes, str)) else record
        if kind is dict or kind is Any:
            if not isinstance(value, dict):
                raise ValueError(f"expected a JSON object, got {type(value).__name__}")
            return value
        return kind.model_validate(value)

    def __repr__(self) -> str:
        return f"<stream resolver {self.spec.name!r}>"


def stream(fn: Optional[Callable[..., Any]] = None, /, *, source: Any = None,
           name: Optional[str] = None) -> Any:
    """Declare a stream resolver: a function of one raw message returning feature updates."""
    def decorate(function: Callable[..., Any]) -> StreamResolver:
        from sinks.registry import current_registry
        resolver = StreamResolver(function, _spec(function, source, name))
        current_registry().add_resolver(resolver)
        return resolver

    return decorate if fn is None else decorate(fn)


def _spec(fn: Callable[..., Any], source: Any, name: Optional[str]) -> StreamSpec:
    filename, line = fn.__code__.co_filename, fn.__code__.co_firstlineno
    title = f"stream resolver '{fn.__module__}.{fn.__qualname__}'"
    parameters = list(inspect.signature(fn).parameters.values())
    if len(parameters) != 1:
        raise DefinitionError(located(filename, line, f"{title}: takes exactly one parameter, the message"))
    try:
        hints = typing.get_type_hints(fn)
    except Exception as error:
        raise DefinitionError(located(filename, line, f"{title}: cannot read its annotations: {error}")) from error
    kind = hints.get(parameters[0].name, dict)
    if kind not in (dict, str, bytes, Any) and not hasattr(kind, "model_validate"):
        raise DefinitionError(located(
            filename, line, f"{title}, parameter '{parameters[0].name}': annotate it dict, str, bytes "
                            f"or a pydantic model, not {kind!r}"))
    return StreamSpec(name or fn.__name__, source, kind, filename, line)


def to_updates(result: Any) -> List[Dict[str, Any]]:
    """Feature updates from what a resolver returned (instances, dicts, lists of them, None)."""
    if result is None:
        return []
    if isinstance(result, (list, tuple)):
        return [update for item in result for update in to_updates(item)]
    if is_feature_class(type(result)):
        namespace = info(type(result)).namespace
        return [{f"{namespace}.{attr}": value for attr, value in vars(result).items()}]
    if isinstance(result, dict):
        return [{(key.fqn if isinstance(key, Ref) else key): value for key, value in result.items()}]
    raise TypeError(f"a stream resolver returns feature-class instances or dicts, not {type(result).__name__}")
