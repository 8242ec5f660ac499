"""``@sink``: Chalk's decorator, parsed and checked when the function is defined.

A sink's parameters name the features it reads::

    @sink
    def send_user_update(uid: User.uuid, title: User.account.title): ...

    @sink(buffer_size=100, debounce="100ms", max_delay="1s")
    def batch_sink(users: DataFrame[User.uuid, User.account.title]): ...

    @sink(integration=PostgreSQLSource(), upsert=True)
    def aggregate(uid: User.uuid, txns: User.transfers[after(days_ago=60)]) -> UserTxnAggregate: ...

The decorated object still calls the function unchanged, so sinks unit-test
like plain functions, and carries the parsed :class:`SinkSpec` as ``.spec``.
"""
from __future__ import annotations

import collections.abc
import functools
import inspect
import os
import sys
import typing
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from sinks.dataframe import DataFrame
from sinks.durations import INFINITY, Duration, parse_duration
from sinks.errors import DefinitionError, located
from sinks.features import Ref, _unwrap, windows_of, as_feature, info, is_feature_class
from sinks.filters import Filter
from sinks.integrations import SQLSource
from sinks.values import literal_error, type_name as _type_name
from sinks.shipped import reduce_by_source


@dataclass(frozen=True)
class SinkInput:
    """One parameter of a sink and the feature it reads."""

    parameter: str
    ref: Ref
    optional: bool

    @property
    def is_has_many(self) -> bool:
        return self.ref._steps[-1].kind == "has_many"


@dataclass(frozen=True)
class SinkSpec:
    """Everything ``@sink`` learned about a sink; pacing durations are ``timedelta``s."""

    name: str
    module: str
    qualname: str
    filename: str
    line: int
    inputs: Tuple[SinkInput, ...]
    is_batch: bool
    root: type
    is_async: bool
    buffer_size: Optional[int] = None
    debounce: Optional[timedelta] = None
    max_delay: Optional[timedelta] = None
    upsert: bool = False
    integration: Optional[SQLSource] = None
    output_model: Optional[type] = None
    owner: Optional[str] = None
    tags: Tuple[str, ...] = ()
    environment: Tuple[str, ...] = ()
    machine_type: Optional[str] = None

    @property
    def location(self) -> str:
        return f"{self.filename}:{self.line}"

    @property
    def keeps_latest_only(self) -> bool:
        """Whether only an entity's latest call matters: an upsert sink called per row, each of
        whose rows replaces the entity's row before it."""
        return self.upsert and not self.is_batch


class DecoratedFunction:
    """A user's function wrapped by a decorator: calls it unchanged, carries its parsed ``.spec``."""

    def __init__(self, fn: Callable[..., Any], spec: Any) -> None:
        self.fn = fn
        self.spec = spec
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __reduce__(self) -> Any:
        # A module-level function pickles as a reference, so workers import the user's module
        # (with its source when it was loaded from a file: sinks.shipped); others (defined inside
        # functions) travel by value.
        by_source = reduce_by_source(self)
        if by_source is not None:
            return by_source
        module = sys.modules.get(self.fn.__module__)
        if module is not None and getattr(module, self.fn.__qualname__, None) is self:
            return self.fn.__qualname__
        return type(self), (self.fn, self.spec)


class Sink(DecoratedFunction):
    """A function decorated with ``@sink``: call it as the function; read ``.spec``."""

    spec: SinkSpec

    def __repr__(self) -> str:
        return f"<sink {self.spec.name!r} ({self.spec.module}.{self.spec.qualname})>"


def sink(fn: Optional[Callable[..., Any]] = None, /, *,
         environment: Union[None, str, Sequence[str]] = None,
         tags: Union[None, str, Sequence[str]] = None,
         machine_type: Optional[str] = None,
         buffer_size: Optional[int] = None,
         debounce: Optional[Duration] = None,
         max_delay: Optional[Duration] = None,
         upsert: bool = False,
         integration: Optional[SQLSource] = None,
         owner: Optional[str] = None,
         name: Optional[str] = None) -> Any:
    """Declare a sink: a function called with the features its parameters name.

    Per-row sinks take feature parameters (``uid: User.uuid``); batch sinks
    take exactly one ``DataFrame[...]``. ``buffer_size``, ``debounce`` and
    ``max_delay`` pace the calls (see README, "Pacing"). With ``integration``
    the function returns SQLAlchemy mapped rows that are written to that
    database, appended or, with ``upsert=True``, upserted by primary key.
    Every mistake raises :class:`DefinitionError` naming file, line, sink and
    parameter.
    """
    options = dict(environment=environment, tags=tags, machine_type=machine_type,
                   buffer_size=buffer_size, debounce=debounce, max_delay=max_delay,
                   upsert=upsert, integration=integration, owner=owner, name=name)

    def decorate(function: Callable[..., Any]) -> Sink:
        from sinks.registry import current_registry
        decorated = Sink(function, _Parser(function).parse(options))
        current_registry().add_sink(decorated)
        return decorated

    return decorate if fn is None else decorate(fn)


class _Parser:
    """Reads one sink function, raising errors that point at it."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        if not callable(fn) or not hasattr(fn, "__code__"):
            raise DefinitionError(f"@sink decorates a function, not {fn!r}")
        self.fn = fn
        self.filename = _display_path(fn.__code__.co_filename)
        self.line = fn.__code__.co_firstlineno
        self.title = f"sink '{fn.__module__}.{fn.__qualname__}'"

    def error(self, message: str, parameter: Optional[str] = None) -> DefinitionError:
        where = f"{self.title}, parameter '{parameter}'" if parameter else self.title
        return DefinitionError(located(self.filename, self.line, f"{where}: {message}"))

    def parse(self, options: dict) -> SinkSpec:
        inputs, is_batch = self.inputs()
        roots = {id(i.ref._root): i for i in inputs}
        if len(roots) > 1:
            first, second = list(roots.values())[:2]
            raise self.error(
                f"all parameters must read one root feature class; '{first.parameter}' reads "
                f"{first.ref._root.__name__} and '{second.parameter}' reads {second.ref._root.__name__}",
                second.parameter)
        integration, upsert = options["integration"], options["upsert"]
        if integration is not None and not isinstance(integration, SQLSource):
            raise self.error(
                f"integration={integration!r} is not a SQL source; use PostgreSQLSource(), "
                "MySQLSource(), SQLiteSource() or another of sinks' SQL sources", "integration")
        if not isinstance(upsert, bool):
            raise self.error(f"upsert={upsert!r} must be True or False", "upsert")
        if upsert and integration is None:
            raise self.error("upsert=True needs integration=, the database to upsert into", "upsert")
        if integration is not None:
            try:
                integration.require()
            except DefinitionError as error:
                raise self.error(str(error), "integration") from None
            if upsert and not integration.upserts:
                raise self.error(f"{type(integration).__name__} has no upsert here (only appends); "
                                 "drop upsert=True or write to PostgreSQL, MySQL or SQLite", "upsert")
        return SinkSpec(
            name=self.name(options["name"]),
            module=self.fn.__module__,
            qualname=self.fn.__qualname__,
            filename=self.filename,
            line=self.line,
            inputs=tuple(inputs),
            is_batch=is_batch,
            root=inputs[0].ref._root,
            is_async=inspect.iscoroutinefunction(self.fn),
            buffer_size=self.buffer_size(options["buffer_size"]),
            debounce=self.duration("debounce", options["debounce"]),
            max_delay=self.duration("max_delay", options["max_delay"]),
            upsert=upsert,
            integration=integration,
            output_model=self.output_model() if integration is not None else None,
            owner=self.text("owner", options["owner"]),
            tags=self.texts("tags", options["tags"]),
            environment=self.texts("environment", options["environment"]),
            machine_type=self.text("machine_type", options["machine_type"]),
        )

    def name(self, value: Optional[str]) -> str:
        if value is None:
            return self.fn.__name__
        if not isinstance(value, str) or not value:
            raise self.error(f"name={value!r} must be a non-empty string", "name")
        return value

    def annotation(self, parameter: str, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return eval(value, self.fn.__globals__)  # noqa: S307 - the user's own annotation
        except Exception as error:
            raise self.error(
                f"cannot evaluate annotation {value!r}: {type(error).__name__}: {error}",
                parameter) from error

    def inputs(self) -> Tuple[List[SinkInput], bool]:
        signature = inspect.signature(self.fn, eval_str=False)
        annotations = getattr(self.fn, "__annotations__", {})
        parameters = list(signature.parameters.values())
        if not parameters:
            raise self.error("a sink needs at least one parameter annotated with a feature, "
                             "e.g. uid: User.uuid")
        resolved = []
        for p in parameters:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise self.error("*args and **kwargs cannot name features", p.name)
            if p.name not in annotations:
                raise self.error(
                    "has no annotation; annotate it with a feature, e.g. uid: User.uuid", p.name)
            resolved.append((p.name, self.annotation(p.name, annotations[p.name])))
        frames = [(n, a) for n, a in resolved if _is_dataframe(a)]
        if frames:
            if len(resolved) > 1:
                raise self.error(
                    "a batch sink takes exactly one parameter, a DataFrame[...]; "
                    f"'{frames[0][0]}' is a DataFrame beside {len(resolved) - 1} other parameter(s)",
                    next(n for n, a in resolved if n != frames[0][0]))
            return self.batch_columns(*frames[0]), True
        return [self.scalar_input(n, a) for n, a in resolved], False

    def scalar_input(self, parameter: str, annotation: Any) -> SinkInput:
        ref, optional, _ = _unwrap(annotation)
        if not isinstance(ref, Ref):
            raise self.error(
                f"annotation {annotation!r} is not a feature; use a feature such as User.uuid, "
                "Optional[User.email] or User.transfers[...]", parameter)
        self.check_leaf(parameter, ref, allow_has_many=True)
        return SinkInput(parameter, ref, optional)

    def batch_columns(self, parameter: str, frame: Any) -> List[SinkInput]:
        columns = []
        for column in frame.__columns__:
            column = self.annotation(parameter, column)
            if is_feature_class(column):
                columns += [Ref(column, (f,)) for f in self.resolved(parameter, column)]
            elif isinstance(column, Ref):
                self.check_leaf(parameter, column, allow_has_many=False)
                columns.append(column)
            else:
                raise self.error(
                    f"DataFrame column {column!r} is not a feature; list features such as "
                    "DataFrame[User.uuid, User.account.title]", parameter)
        if not columns:
            raise self.error("DataFrame[...] names no features", parameter)
        return [SinkInput(parameter, ref, ref._steps[-1].optional) for ref in columns]

    def resolved(self, parameter: str, cls: type) -> List[Any]:
        try:
            return info(cls).scalars
        except DefinitionError as error:
            raise self.error(str(error), parameter) from error

    def check_leaf(self, parameter: str, ref: Ref, allow_has_many: bool) -> None:
        leaf = ref._steps[-1]
        try:
            kind = leaf.kind
            info(ref._root).validate()
            for step in ref._steps[:-1]:
                step.join
            if kind in ("has_one", "has_many"):
                leaf.join
        except DefinitionError as error:
            raise self.error(str(error), parameter) from error
        if kind == "has_one":
            raise self.error(
                f"{ref!r} is a has-one relation to {leaf.related.__name__}; name one of its "
                f"features, e.g. {ref!r}.{next(iter(info(leaf.related).features))}", parameter)
        if kind == "has_many" and not allow_has_many:
            raise self.error(f"{ref!r} is a has-many relation; a DataFrame column must be a "
                             "single value per row", parameter)
        for condition in ref._filters:
            self.check_literals(parameter, condition)

    def check_literals(self, parameter: str, condition: Filter) -> None:
        """A literal of the wrong type would fail where pyarrow compares it, in the running job;
        so would a window measured on a feature that is not a time."""
        for window in windows_of(condition):
            index = as_feature(window.index)
            if index is not None and index.type not in (datetime, date):
                raise self.error(f"{window!r} measures {index!r}, which is {_type_name(index.type)}; "
                                 "index= must be a datetime or date feature", parameter)
        for compared, value in condition.literals():
            feature = as_feature(compared)
            if feature is None:
                continue
            problem = literal_error(Optional[feature.type] if feature.optional else feature.type, value)
            if problem is not None:
                raise self.error(f"filter {condition!r}: {feature!r} is {_type_name(feature.type)}; "
                                 f"the literal {problem}", parameter)

    def buffer_size(self, value: Any) -> Optional[int]:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.error(f"buffer_size={value!r} must be a positive int", "buffer_size")
        return value

    def duration(self, option: str, value: Any) -> Optional[timedelta]:
        if value is None:
            return None
        try:
            parsed = parse_duration(value)
        except ValueError as error:
            raise self.error(f"{option}={value!r}: {error}", option) from None
        if parsed <= timedelta(0):
            raise self.error(f"{option}={value!r} must be longer than zero", option)
        return None if parsed == INFINITY else parsed

    def output_model(self) -> type:
        hint = "return a SQLAlchemy mapped class, list[Model] or Optional[Model]"
        if "return" not in getattr(self.fn, "__annotations__", {}):
            raise self.error(f"an integration sink must annotate what it returns: {hint}", "return")
        annotation = self.annotation("return", self.fn.__annotations__["return"])
        model, _, _ = _unwrap(annotation)
        if typing.get_origin(model) in (list, collections.abc.Sequence):
            (model,) = typing.get_args(model) or (None,)
        if not _is_mapped(model):
            raise self.error(f"returns {annotation!r}, which is not a SQLAlchemy mapped class: {hint}",
                             "return")
        return model

    def text(self, option: str, value: Any) -> Optional[str]:
        if value is not None and not isinstance(value, str):
            raise self.error(f"{option}={value!r} must be a string", option)
        return value

    def texts(self, option: str, value: Any) -> Tuple[str, ...]:
        if value is None:
            return ()
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
            raise self.error(f"{option}={value!r} must be a string or a list of strings", option)
        return tuple(values)


def _is_dataframe(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, DataFrame)


def _is_mapped(model: Any) -> bool:
    if not isinstance(model, type):
        return False
    import sqlalchemy
    return sqlalchemy.inspect(model, raiseerr=False) is not None


def _display_path(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:
        return filename
    return filename if relative.startswith("..") else relative
