"""What ``feature(...)`` and ``@features(...)`` declare besides a feature's type: Chalk's keywords,
kept on the ``Feature`` (``Feature.options``, ``Feature.default``, ``Feature.constraints``) and on the
class (``FeatureClassInfo.options``), and checked against the feature's type when it resolves."""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, List, Optional, Tuple, Union

from sinks.errors import DefinitionError

if TYPE_CHECKING:
    from sinks.features import Feature


class _NoDefault:
    """The default of a feature that declares none (``None`` is a default a feature may declare)."""

    def __repr__(self) -> str:
        return "NO_DEFAULT"

    def __reduce__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()


@dataclass(frozen=True)
class Constraints:
    """``feature(min=, max=, min_length=, max_length=, strict=)``: the values a feature accepts.

    With ``strict=True`` an update that breaks them is refused (a dead letter whose reason is
    :meth:`violations`); without, the breaks are only counted."""

    min: Any = None
    max: Any = None
    min_length: Optional[int] = None
    max_length: Optional[int] = None
    strict: bool = False

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.min, self.max, self.min_length, self.max_length))

    def violations(self, value: Any) -> List[str]:
        """What ``value`` breaks, one phrase each (empty when it is within every limit, or null)."""
        if value is None:
            return []
        found = []
        if self.min is not None and value < self.min:
            found.append(f"{value!r} is below min={self.min!r}")
        if self.max is not None and value > self.max:
            found.append(f"{value!r} is above max={self.max!r}")
        if self.min_length is not None and len(value) < self.min_length:
            found.append(f"length {len(value)} is below min_length={self.min_length}")
        if self.max_length is not None and len(value) > self.max_length:
            found.append(f"length {len(value)} is above max_length={self.max_length}")
        return found


@dataclass(frozen=True)
class FeatureOptions:
    """Everything ``feature(...)`` was given; checked against the feature's type when it resolves."""

    primary: bool = False
    description: Optional[str] = None
    owner: Optional[str] = None
    tags: Tuple[str, ...] = ()
    name: Optional[str] = None
    version: Optional[int] = None
    default_version: int = 1
    max_staleness: Optional[Any] = None
    etl_offline_to_online: Optional[bool] = None
    default: Any = NO_DEFAULT
    constraints: Constraints = Constraints()
    dtype: Any = None
    extra: Tuple[Tuple[str, Any], ...] = ()


def feature(*, description: Optional[str] = None, owner: Optional[str] = None,
            tags: Union[None, str, List[str], Tuple[str, ...]] = None, name: Optional[str] = None,
            version: Optional[int] = None, default_version: int = 1, primary: Optional[bool] = None,
            max_staleness: Any = None, etl_offline_to_online: Optional[bool] = None,
            default: Any = NO_DEFAULT, min: Any = None, max: Any = None,
            min_length: Optional[int] = None, max_length: Optional[int] = None, strict: bool = False,
            dtype: Any = None, cache_nulls: bool = True, cache_defaults: bool = True,
            offline_ttl: Any = None, deprecated: bool = False, store_online: bool = True,
            store_offline: bool = True, validations: Any = None, encoder: Any = None,
            decoder: Any = None) -> Any:
    """Options for one feature, given as its default: ``uuid: str = feature(primary=True)``.

    Chalk's keywords. ``default`` fills a feature an entity never received; ``min``/``max``
    (values) and ``min_length``/``max_length`` (strings, bytes, lists, sets) with ``strict=True``
    refuse an update that breaks them, without it they are counted; ``primary`` and ``description``
    as before. ``name``, ``version``, ``owner``, ``tags``, ``max_staleness``, ``dtype`` and the
    caching and storage keywords describe the feature (``explain`` shows them); a sink pipeline
    has no online store or cache for them to act on.
    """
    given = {"cache_nulls": cache_nulls, "cache_defaults": cache_defaults, "offline_ttl": offline_ttl,
             "deprecated": deprecated, "store_online": store_online, "store_offline": store_offline,
             "validations": validations, "encoder": encoder, "decoder": decoder}
    unchanged = {"cache_nulls": True, "cache_defaults": True, "deprecated": False, "store_online": True,
                 "store_offline": True}
    extra = tuple((key, value) for key, value in given.items() if value is not unchanged.get(key))
    return FeatureOptions(
        primary=bool(primary), description=description, owner=owner, tags=tags_of("feature", tags),
        name=name, version=version, default_version=default_version, max_staleness=max_staleness,
        etl_offline_to_online=etl_offline_to_online, default=default,
        constraints=Constraints(min, max, min_length, max_length, strict), dtype=dtype, extra=extra)


def tags_of(where: str, tags: Any) -> Tuple[str, ...]:
    if tags is None:
        return ()
    values = [tags] if isinstance(tags, str) else tags
    if not isinstance(values, (list, tuple, set)) or not all(isinstance(t, str) for t in values):
        raise DefinitionError(f"{where}(tags={tags!r}): tags are a string or a list of strings")
    return tuple(values)


@dataclass(frozen=True)
class ClassOptions:
    """What ``@features(...)`` was given besides ``name``: descriptions of the class, and defaults
    for its features' ``owner``, ``tags``, ``max_staleness`` and ``etl_offline_to_online``."""

    owner: Optional[str] = None
    tags: Tuple[str, ...] = ()
    description: Optional[str] = None
    max_staleness: Any = None
    etl_offline_to_online: Optional[bool] = None
    singleton: bool = False



def check_feature_options(f: "Feature", options: FeatureOptions) -> None:
    """``feature(...)``'s values against the feature's type: a default or a limit of another type
    would only fail on the first update that needs it."""
    from sinks.durations import parse_duration
    from sinks.values import literal_error, type_name
    declared = Optional[f.type] if f.optional else f.type
    where = f"{f!r} ({type_name(f.type)})"
    if options.default is not NO_DEFAULT:
        problem = literal_error(declared, options.default)
        if problem is not None:
            raise DefinitionError(f"{where}: default {problem}")
    limits = options.constraints
    for key in ("min", "max"):
        value = getattr(limits, key)
        if value is not None and (problem := literal_error(f.type, value)) is not None:
            raise DefinitionError(f"{where}: {key} {problem}")
    if limits.min is not None and limits.max is not None and limits.min > limits.max:
        raise DefinitionError(f"{where}: min={limits.min!r} is above max={limits.max!r}")
    for key in ("min_length", "max_length"):
        value = getattr(limits, key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DefinitionError(f"{where}: {key}={value!r} must be a non-negative int")
        if not _has_length(f.type):
            raise DefinitionError(f"{where}: {key} applies to str, bytes, list and set features")
    if limits.min_length is not None and limits.max_length is not None and limits.min_length > limits.max_length:
        raise DefinitionError(f"{where}: min_length={limits.min_length} is above max_length={limits.max_length}")
    if not isinstance(limits.strict, bool):
        raise DefinitionError(f"{where}: strict={limits.strict!r} must be True or False")
    if options.max_staleness is not None:
        try:
            parse_duration(options.max_staleness)
        except ValueError as error:
            raise DefinitionError(f"{where}: max_staleness={options.max_staleness!r}: {error}") from None
    if options.version is not None and (isinstance(options.version, bool) or not isinstance(options.version, int)
                                        or options.version < 1):
        raise DefinitionError(f"{where}: version={options.version!r} must be a positive int")


def _has_length(kind: Any) -> bool:
    origin = typing.get_origin(kind) or kind
    return isinstance(origin, type) and issubclass(origin, (str, bytes, list, tuple, set, frozenset))


def class_options_text(cls: type) -> str:
    """What ``@features(...)`` declared beyond the namespace, for ``explain`` (empty when nothing)."""
    from sinks.features import info
    options = info(cls).options
    parts = [f"{key} {value}" for key, value in (
        ("owner", options.owner), ("tags", ", ".join(options.tags)), ("max_staleness", options.max_staleness),
        ("etl_offline_to_online", options.etl_offline_to_online), ("singleton", options.singleton or None))
        if value not in (None, "")]
    return "; ".join(parts)


def feature_options_text(f: "Feature") -> str:
    """What ``feature(...)`` declared that a run acts on or shows, for ``explain`` (empty when nothing)."""
    options, limits = f.options, f.constraints
    parts = []
    if f.has_default:
        parts.append(f"default {f.default!r}")
    bounds = [f"{key}={getattr(limits, key)!r}" for key in ("min", "max", "min_length", "max_length")
              if getattr(limits, key) is not None]
    if bounds:
        parts.append(", ".join(bounds) + (" (strict: breaking updates are refused)" if limits.strict
                                          else " (not strict: breaks are counted)"))
    for key, value in (("name", options.name), ("version", options.version), ("dtype", options.dtype),
                       ("owner", options.owner), ("tags", ", ".join(options.tags)),
                       ("max_staleness", options.max_staleness)):
        if value not in (None, ""):
            parts.append(f"{key} {value}")
    return "; ".join(parts)
