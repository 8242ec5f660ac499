"""Feature classes: ``@features``, ``feature()``, ``Primary``, ``FeatureTime`` and relations.

A feature class declares one namespace of features::

    @features
    class User:
        uuid: Primary[str]
        full_name: str
        email: Optional[str]
        ts: FeatureTime
        account: "Account"                  # has-one, joined by Account.user_id
        transfers: "DataFrame[Transfer]"    # has-many, joined by Transfer.user_id

Class attributes become :class:`Feature` objects (``User.uuid``), and
attribute access and subscripts build references (:class:`Ref`) that sinks
name as parameter annotations: ``User.account.title``,
``User.transfers[Transfer.status == "successful", after(days_ago=60)]``.

Annotations are resolved lazily, so classes may refer to each other in any
order and ``from __future__ import annotations`` works.
"""
from __future__ import annotations

import re
import sys
import types
import typing
import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from sinks.errors import DefinitionError, FeatureNotFoundError, located
from sinks.filters import And, Comparison, Filter, IsIn, IsNull, Not, TimeWindow
from sinks.options import NO_DEFAULT, ClassOptions, FeatureOptions, check_feature_options, tags_of


class UnresolvedAnnotation(DefinitionError, NameError):
    """An annotation names a class that is not defined (yet, while a file is being read)."""


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self) -> str:
        return self.name.upper()


PRIMARY = _Marker("primary")
FEATURE_TIME = _Marker("feature_time")

# ``ts: FeatureTime`` marks the feature that carries a row's event time.
FeatureTime = Annotated[datetime, FEATURE_TIME]


class Primary:
    """``uuid: Primary[str]`` makes ``uuid`` the primary key instead of ``id``."""

    def __class_getitem__(cls, item: Any) -> Any:
        return Annotated[item, PRIMARY]


@dataclass(frozen=True)
class Relation:
    many: bool
    join: Callable[[], Filter]


def has_one(join: Callable[[], Filter]) -> Any:
    """A has-one relation joined explicitly: ``has_one(lambda: Account.user_id == User.uuid)``."""
    return Relation(many=False, join=join)


def has_many(join: Callable[[], Filter]) -> Any:
    """A has-many relation joined explicitly: ``has_many(lambda: Transfer.user_id == User.uuid)``."""
    return Relation(many=True, join=join)


@dataclass(frozen=True)
class Join:
    """Equalities between features of the owner class and of the related class.

    ``pairs`` holds ``(owner_feature, related_feature)`` tuples; the key may
    sit on either side (``Account.user_id == User.uuid`` or
    ``User.account_id == Account.id``).
    """

    pairs: Tuple[Tuple["Feature", "Feature"], ...]

    def __repr__(self) -> str:
        return " & ".join(f"{left!r} == {right!r}" for left, right in self.pairs)


def _caller_location(depth: int) -> Tuple[Optional[str], Optional[int]]:
    frame = sys._getframe(depth + 1)
    return frame.f_code.co_filename, frame.f_lineno


def _no_such_feature(cls: type, name: str, depth: int) -> FeatureNotFoundError:
    filename, line = _caller_location(depth + 1)
    known = ", ".join(info(cls).features)
    return FeatureNotFoundError(located(
        filename, line, f"{cls.__name__} has no feature '{name}' (its features: {known})"))


class Ref:
    """A path from a root feature class to one feature, with filters for has-many paths.

    ``User.account.title`` is ``Ref(User, (User.account, Account.title))``;
    its ``fqn`` is ``user.account.title``, the column name it gets in a
    ``DataFrame``.

    A user's feature may have any name, so a path ending in a has-one relation
    resolves a name among the related class's features first (``Trip.driver.name``
    is Driver's ``name``, whatever Ref or Feature call ``name``); the path's own
    state lives in underscore slots (``_root``, ``_steps``...), which no feature
    can be called, and code that may meet such a path reads those.
    """

    def __init__(self, root: type, steps: Tuple["Feature", ...],
                 filters: Tuple[Filter, ...] = (), projection: Tuple["Ref", ...] = ()) -> None:
        self._root = root
        self._steps = steps
        self._filters = filters
        self._projection = projection

    def __getattribute__(self, name: str) -> Any:
        if name[0] != "_":
            child = object.__getattribute__(self, "_child")(name)
            if child is not None:
                return child
        return object.__getattribute__(self, name)

    def _child(self, name: str) -> Optional["Ref"]:
        """The path one step further when this path ends in a has-one relation with a feature ``name``."""
        try:
            related = self.__dict__["_has_one"]
        except KeyError:
            leaf = self._steps[-1]
            try:
                related = leaf._related if leaf.kind == "has_one" else None
            except DefinitionError:
                return None   # its class is not defined yet: nothing can be shadowed by it
            self.__dict__["_has_one"] = related
        if related is None:
            return None
        target = info(related).features.get(name)
        return None if target is None else Ref(self._root, self._steps + (target,))

    @property
    def root(self) -> type:
        return self._root

    @property
    def steps(self) -> Tuple["Feature", ...]:
        return self._steps

    @property
    def filters(self) -> Tuple[Filter, ...]:
        return self._filters

    @property
    def projection(self) -> Tuple["Ref", ...]:
        return self._projection

    @property
    def leaf(self) -> "Feature":
        return self._steps[-1]

    @property
    def fqn(self) -> str:
        return ".".join([info(self._root).namespace] + [step.name for step in self._steps])

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        leaf = self._steps[-1]
        if leaf is not self and len(self._steps) == 1 and not self._filters and not self._projection:
            # ``Trip.driver`` stands for the feature itself: its options (``kind``, ``related``...)
            # read through, after the related class's features (``__getattribute__``).
            return getattr(leaf, name)
        if leaf.kind == "has_many":
            raise DefinitionError(
                f"{self!r} is a has-many relation: select its features with a subscript, "
                f"e.g. {self!r}[{leaf.related.__name__}.{name}]")
        if leaf.kind != "has_one":
            raise _no_such_feature_of_scalar(self, name)
        related = leaf.related
        target = info(related).features.get(name)
        if target is None:
            raise _no_such_feature(related, name, 1)
        return Ref(self._root, self._steps + (target,))

    def __getitem__(self, items: Any) -> "Ref":
        leaf = self._steps[-1]
        if leaf.kind != "has_many":
            raise DefinitionError(f"{self!r} is not a has-many relation and takes no subscript")
        related = leaf.related
        filters, projection = list(self._filters), list(self._projection)
        for item in items if isinstance(items, tuple) else (items,):
            if isinstance(item, Filter):
                _check_filter(self, related, item)
                filters.append(item)
            elif isinstance(item, Ref):
                _check_related_ref(self, related, item)
                projection.append(as_feature(item) or item)
            elif isinstance(item, bool):
                raise DefinitionError(_bool_subscript(self, related, item))
            else:
                raise DefinitionError(
                    f"{self!r}[{item!r}]: a subscript takes filters such as "
                    f"{related.__name__}.x == 1 or after(days_ago=60), or features of {related.__name__}")
        return Ref(self._root, self._steps, tuple(filters), tuple(projection))

    # Comparisons build filters, as in Chalk; identity stays the hash.
    __hash__ = object.__hash__

    def __eq__(self, other: Any) -> Filter:  # type: ignore[override]
        return _compare(self, "==", other)

    def __ne__(self, other: Any) -> Filter:  # type: ignore[override]
        return _compare(self, "!=", other)

    def __lt__(self, other: Any) -> Filter:
        return _compare(self, "<", other)

    def __le__(self, other: Any) -> Filter:
        return _compare(self, "<=", other)

    def __gt__(self, other: Any) -> Filter:
        return _compare(self, ">", other)

    def __ge__(self, other: Any) -> Filter:
        return _compare(self, ">=", other)

    def is_in(self, values: Any) -> IsIn:
        return IsIn(as_feature(self) or self, values)

    # ``User.email | None`` spells Optional[User.email] in a sink signature.
    def __or__(self, other: Any) -> Any:
        if other is None:
            return Optional[self]  # type: ignore[index]
        return NotImplemented

    __ror__ = __or__

    def __repr__(self) -> str:
        text = ".".join([self._root.__name__] + [step.name for step in self._steps])
        parts = [repr(f) for f in self._filters] + [repr(p) for p in self._projection]
        return f"{text}[{', '.join(parts)}]" if parts else text


def as_feature(ref: Any) -> Optional["Feature"]:
    """The feature a one-step path stands for (``Trip.driver`` is the feature ``driver``), else None."""
    if isinstance(ref, Feature):
        return ref
    if isinstance(ref, Ref) and len(ref._steps) == 1 and not ref._filters and not ref._projection:
        return ref._steps[0]
    return None


def _compare(ref: Ref, op: str, value: Any) -> Filter:
    """``ref <op> value`` over features (never one-step paths), so filters hold what joins and plans hold;
    ``== None`` and ``!= None`` mean is-null and is-not-null, as in Chalk."""
    left = as_feature(ref) or ref
    if value is None and op in ("==", "!="):
        return IsNull(left) if op == "==" else Not(IsNull(left))
    right = as_feature(value) or value
    return Comparison(left, op, right)


def _bool_subscript(relation: Ref, related: type, item: bool) -> str:
    return (f"{relation!r}[{item!r}]: Python evaluated this filter to {item} before the subscript saw it; "
            f"`in` and `is` cannot be overloaded: write {related.__name__}.x.is_in([...]) instead of "
            f"`x in (...)`, and {related.__name__}.x == None (or != None) instead of `x is None`")


def _no_such_feature_of_scalar(ref: Ref, name: str) -> FeatureNotFoundError:
    filename, line = _caller_location(2)
    return FeatureNotFoundError(located(
        filename, line, f"{ref!r} is a scalar feature; it has no feature '{name}'"))


def _check_related_ref(relation: Ref, related: type, ref: Ref) -> None:
    if ref._root is not related or len(ref._steps) != 1:
        raise DefinitionError(
            f"{relation!r}[...]: {ref!r} is not a feature of {related.__name__}")


def _check_filter(relation: Ref, related: type, item: Filter) -> None:
    for ref in item.refs():
        _check_related_ref(relation, related, ref)
    for window in windows_of(item):
        window.time_ref(related)


def windows_of(item: Filter) -> Iterator[TimeWindow]:
    """Every ``after()``/``before()`` inside a filter expression."""
    if isinstance(item, TimeWindow):
        yield item
    for child in ("left", "right", "inner"):
        if hasattr(item, child):
            yield from windows_of(getattr(item, child))


class Feature(Ref):
    """One feature declared on a feature class: ``User.uuid``."""

    def __init__(self, owner: type, name: str, annotation: Any, default: Any) -> None:
        super().__init__(owner, ())
        self._steps = (self,)
        self.owner = owner
        self.name = name
        self._annotation = annotation
        self._default = default
        self._resolving = False
        self._resolved = False
        self._join: Optional[Join] = None
        self.kind = ""
        self.type: Any = None
        self.optional = False
        self.primary = False
        self.is_feature_time = False
        self.foreign_key: Optional[Feature] = None
        self._related: Optional[type] = None
        options = default if isinstance(default, FeatureOptions) else FeatureOptions(
            default=NO_DEFAULT if default is None or isinstance(default, Relation) else default)
        self.options = options
        self.description = options.description
        self.version = options.version
        self.dtype = options.dtype
        self.constraints = options.constraints

    @property
    def owner_email(self) -> Optional[str]:
        """Chalk's ``owner=`` (of the feature, else of its class); ``owner`` is the class."""
        return self.options.owner or info(self.owner).options.owner

    @property
    def tags(self) -> Tuple[str, ...]:
        """The class's tags, then the feature's own."""
        return info(self.owner).options.tags + tuple(
            t for t in self.options.tags if t not in info(self.owner).options.tags)

    @property
    def max_staleness(self) -> Any:
        return self.options.max_staleness if self.options.max_staleness is not None else \
            info(self.owner).options.max_staleness

    @property
    def etl_offline_to_online(self) -> Optional[bool]:
        own = self.options.etl_offline_to_online
        return own if own is not None else info(self.owner).options.etl_offline_to_online

    @property
    def has_default(self) -> bool:
        """Whether the feature declares a default (``x: int = 0`` or ``feature(default=0)``)."""
        return self.options.default is not NO_DEFAULT

    @property
    def default(self) -> Any:
        """The value an entity that never received this feature has (None without a default)."""
        return None if self.options.default is NO_DEFAULT else self.options.default

    def __reduce__(self) -> Any:
        # Unpickle to the feature of the (importable) class, keeping identity.
        return feature_of, (self.owner, self.name)

    def __get__(self, instance: Any, owner: type) -> Any:
        """``Trip.driver``: a has-one feature, read from its class, is the path to it, whose
        attributes are the related class's features first (``Trip.driver.name``)."""
        if instance is not None or object.__getattribute__(self, "_resolving"):
            return self
        try:
            if self.kind != "has_one":
                return self
        except DefinitionError:
            return self   # read while the file is loading, before the related class exists
        path = self.__dict__.get("_path")
        if path is None:
            path = self.__dict__["_path"] = Ref(self.owner, (self,))
        return path

    @property
    def related(self) -> type:
        """The class a has-one or has-many feature points at."""
        self.resolve()
        if self._related is None:
            raise DefinitionError(f"{self!r} is a scalar feature, not a relation")
        return self._related

    @property
    def join(self) -> Join:
        """How a relation's rows match the owner's (explicit, or from a foreign key)."""
        if self._join is None:
            relation = self._default if isinstance(self._default, Relation) else None
            self._join = _explicit_join(self, relation) if relation else _implicit_join(self)
        return self._join

    def __getattribute__(self, name: str) -> Any:
        # Resolve on first read of anything that depends on the annotation.
        if (name in _LAZY and not object.__getattribute__(self, "_resolved")
                and not object.__getattribute__(self, "_resolving")):
            object.__getattribute__(self, "resolve")()
        return object.__getattribute__(self, name)

    def resolve(self) -> None:
        """Evaluate the annotation; raises ``NameError`` while a referenced class is undefined."""
        if self._resolved:
            return
        if self._resolving:
            raise DefinitionError(f"{self!r}: its annotation refers back to itself")
        self._resolving = True
        try:
            self._resolve()
            self._resolved = True
        except DefinitionError:
            raise
        except NameError as error:
            raise UnresolvedAnnotation(
                f"{self!r}: its annotation {self._annotation!r} names something undefined: {error}"
            ) from error
        except Exception as error:
            raise DefinitionError(
                f"{self!r}: cannot read its annotation {self._annotation!r}: "
                f"{type(error).__name__}: {error}") from error
        finally:
            self._resolving = False

    def _resolve(self) -> None:
        annotation, optional, markers = _unwrap(_evaluate(self.owner, self._annotation))
        self.optional = optional
        self.primary = PRIMARY in markers or (
            isinstance(self._default, FeatureOptions) and self._default.primary)
        self.is_feature_time = FEATURE_TIME in markers
        relation = self._default if isinstance(self._default, Relation) else None
        many_of = _dataframe_class(self.owner, annotation)
        if is_feature_class(annotation) and not (relation and relation.many):
            self.kind, self._related = "has_one", annotation
        elif many_of is not None and not (relation and not relation.many):
            self.kind, self._related = "has_many", many_of
        elif relation is not None:
            expected = "DataFrame[SomeClass]" if relation.many else "a feature class"
            raise DefinitionError(
                f"{self!r}: a {'has_many' if relation.many else 'has_one'} relation must be "
                f"annotated with {expected}, not {annotation!r}")
        elif (key := as_feature(annotation)) is not None:
            self.kind, self.foreign_key = "scalar", key
            self.type = key.type
        elif isinstance(annotation, Ref):
            raise DefinitionError(
                f"{self!r}: a foreign key must name a feature of another class, not the path {annotation!r}")
        else:
            self.kind, self.type = "scalar", annotation
        if (self.primary or self.is_feature_time) and self.kind != "scalar":
            raise DefinitionError(f"{self!r}: a relation cannot be a primary key or FeatureTime")
        if self.kind == "scalar":
            check_feature_options(self, self.options)


_LAZY = frozenset(
    {"kind", "type", "optional", "primary", "is_feature_time", "foreign_key", "_related"})


def _evaluate(owner: type, annotation: Any) -> Any:
    if not isinstance(annotation, str):
        return annotation
    namespace = dict(info(owner).registry.classes_by_name())
    namespace.update(vars(sys.modules[owner.__module__]))
    return eval(annotation, namespace)  # noqa: S307 - annotations are the user's own code


def _unwrap(annotation: Any) -> Tuple[Any, bool, set]:
    """Strip ``Optional[...]`` and ``Annotated[...]``, returning (type, optional, markers)."""
    optional = False
    markers: set = set()
    while True:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is Annotated:
            markers.update(m for m in annotation.__metadata__ if isinstance(m, _Marker))
            annotation = args[0]
        elif origin in (Union, types.UnionType) and type(None) in args:
            rest = [a for a in args if a is not type(None)]
            optional = True
            if len(rest) != 1:
                return Union[tuple(rest)], optional, markers
            annotation = rest[0]
        else:
            return annotation, optional, markers


def _dataframe_class(owner: type, annotation: Any) -> Optional[type]:
    from sinks.dataframe import DataFrame
    if not (isinstance(annotation, type) and issubclass(annotation, DataFrame)):
        return None
    columns = [_evaluate(owner, c) for c in annotation.__columns__]
    if len(columns) == 1 and is_feature_class(columns[0]):
        return columns[0]
    return None


def _explicit_join(relation_feature: Feature, relation: Relation) -> Join:
    owner, related = relation_feature.owner, relation_feature.related
    expression = relation.join()
    comparisons: List[Comparison] = []
    _flatten_and(expression, comparisons, relation_feature)
    pairs = []
    for comparison in comparisons:
        left, right = comparison.ref, comparison.value
        if comparison.op != "==" or not isinstance(right, Feature) or not isinstance(left, Feature):
            raise DefinitionError(
                f"{relation_feature!r}: a join must be equalities between features; "
                f"got {comparison!r}")
        if left.owner is related and right.owner is owner:
            left, right = right, left
        if left.owner is not owner or right.owner is not related:
            raise DefinitionError(
                f"{relation_feature!r}: join {comparison!r} must compare a feature of "
                f"{owner.__name__} with a feature of {related.__name__}")
        pairs.append((left, right))
    return Join(tuple(pairs))


def _flatten_and(expression: Any, out: List[Comparison], relation_feature: Feature) -> None:
    if isinstance(expression, And):
        _flatten_and(expression.left, out, relation_feature)
        _flatten_and(expression.right, out, relation_feature)
    elif isinstance(expression, Comparison):
        out.append(expression)
    else:
        raise DefinitionError(
            f"{relation_feature!r}: a join must be equalities combined with &; got {expression!r}")


def _implicit_join(relation_feature: Feature) -> Join:
    owner, related = relation_feature.owner, relation_feature.related
    # A class related to itself (``Employee.manager_id: Employee.id``) finds each foreign key
    # both ways: a has-one follows the owner's own key (the manager), a has-many the
    # children's (the reports).
    candidates = [] if owner is related and relation_feature.kind == "has_one" else [
        (fk.foreign_key, fk) for fk in info(related).scalars
        if fk.foreign_key is not None and fk.foreign_key.owner is owner]
    # The owner's own column naming the related class's: a has-one's foreign key, or (for a
    # has-many) the owner's primary key annotated with the children's column (``id: Tradeline.user_id``).
    candidates += [
        (fk, fk.foreign_key) for fk in info(owner).scalars
        if fk.foreign_key is not None and fk.foreign_key.owner is related
        and (relation_feature.kind == "has_one" or fk is info(owner).primary)
        and not any(a is fk.foreign_key and b is fk for a, b in candidates)]
    if not candidates:
        inverse = _inverse_joins(relation_feature)
        if len(inverse) == 1:
            return inverse[0][1]
        if inverse:
            raise DefinitionError(
                f"{relation_feature!r}: ambiguous join from {owner.__name__} to {related.__name__}: "
                f"{' and '.join(repr(r) for r, _ in inverse)} all relate {related.__name__} to "
                f"{owner.__name__}; declare the join with a lambda")
    if not candidates:
        declare = "has_many" if relation_feature.kind == "has_many" else "has_one"
        raise DefinitionError(
            f"{relation_feature!r}: no join from {owner.__name__} to {related.__name__}: annotate "
            f"a foreign key (e.g. {owner.__name__.lower()}_id: {owner.__name__}.{info(owner).primary.name} "
            f"on {related.__name__}) or declare {declare}(lambda: ...)")
    if len(candidates) > 1:
        keys = " and ".join(repr(fk) for pair in candidates for fk in pair if fk.foreign_key is not None)
        raise DefinitionError(
            f"{relation_feature!r}: ambiguous join from {owner.__name__} to {related.__name__}: "
            f"{keys} are both foreign keys; declare the join with a lambda")
    return Join((candidates[0],))


def _inverse_joins(relation_feature: Feature) -> List[Tuple[Feature, Join]]:
    """Joins the related class declares with a lambda on a relation back to the owner
    (``Author.books = has_many(lambda: Book.author_id == Author.id)`` joins ``Book.author: Author``),
    turned round, with the relation that declares each."""
    owner, related = relation_feature.owner, relation_feature.related
    found: List[Tuple[Feature, Join]] = []
    for other in info(related).features.values():
        if other is relation_feature or not isinstance(other._default, Relation):
            continue
        if other.kind in ("has_one", "has_many") and other.related is owner:
            pairs = other.join.pairs
            found.append((other, Join(tuple((mine, theirs) for theirs, mine in pairs))))
    return found


class FeatureClassInfo:
    """What ``@features`` learned about one class."""

    def __init__(self, cls: type, namespace: str, registry: Any) -> None:
        self.cls = cls
        self.namespace = namespace
        self.registry = registry
        self.features: Dict[str, Feature] = {}
        self._primary: Optional[Feature] = None
        self._feature_time: Optional[Feature] = None
        self._validated = False
        self.options = ClassOptions()

    @property
    def primary(self) -> Feature:
        self.validate()
        assert self._primary is not None
        return self._primary

    @property
    def feature_time(self) -> Optional[Feature]:
        self.validate()
        return self._feature_time

    @property
    def scalars(self) -> List[Feature]:
        return [f for f in self.features.values() if f.kind == "scalar"]

    def validate(self) -> None:
        """Resolve every feature and check keys and times; joins are checked by ``check_joins``."""
        if self._validated:
            return
        for f in self.features.values():
            f.resolve()
        name = self.cls.__name__
        primaries = [f for f in self.features.values() if f.primary]
        if len(primaries) > 1:
            raise DefinitionError(
                f"{name} has two primary keys: {primaries[0]!r} and {primaries[1]!r}")
        if not primaries and "id" in self.features and self.features["id"].kind == "scalar":
            primaries = [self.features["id"]]
        if not primaries:
            raise DefinitionError(
                f"{name} has no primary key: declare a feature 'id' or mark one Primary[...]")
        times = [f for f in self.features.values() if f.is_feature_time]
        if len(times) > 1:
            raise DefinitionError(f"{name} has two FeatureTime features: {times[0]!r} and {times[1]!r}")
        if not times and "ts" in self.features and self.features["ts"].type is datetime:
            times = [self.features["ts"]]
        self._primary = primaries[0]
        self._feature_time = times[0] if times else None
        self._validated = True

    def check_joins(self) -> None:
        for f in self.features.values():
            if f.kind in ("has_one", "has_many"):
                f.join


def feature_of(cls: type, name: str) -> Feature:
    """The feature ``name`` of a feature class (``Trip.driver`` reads as a path when it is a has-one)."""
    return info(cls).features[name]


def info(cls: type) -> FeatureClassInfo:
    """The :class:`FeatureClassInfo` of a feature class."""
    try:
        return cls.__dict__["__feature_class__"]
    except (KeyError, AttributeError):
        raise TypeError(f"{cls!r} is not a feature class: decorate it with @features") from None


def is_feature_class(obj: Any) -> bool:
    return isinstance(obj, type) and "__feature_class__" in obj.__dict__


class FeaturesMeta(type):
    """Metaclass of feature classes: a misspelt feature fails where it is written."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise _no_such_feature(cls, name, 1)


def _snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _init(self: Any, **values: Any) -> None:
    known = info(type(self)).features
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise TypeError(f"{type(self).__name__} has no feature(s) {', '.join(unknown)}")
    self.__dict__.update(values)


def _repr(self: Any) -> str:
    values = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
    return f"{type(self).__name__}({values})"


def features(cls: Optional[type] = None, *, name: Optional[str] = None, owner: Optional[str] = None,
             tags: Union[None, str, List[str], Tuple[str, ...]] = None, description: Optional[str] = None,
             max_staleness: Any = None, etl_offline_to_online: Optional[bool] = None,
             singleton: bool = False) -> Any:
    """Declare a feature class; its namespace is the snake-cased class name unless ``name=``.

    Chalk's other keywords describe the class (``explain`` shows them): ``owner``, ``tags`` and
    ``description`` (default: the docstring); ``max_staleness`` and ``etl_offline_to_online`` are
    the defaults of its features' own. ``singleton=True`` is accepted, but a class here still
    needs a primary key: updates are keyed by it.
    """
    if max_staleness is not None:
        from sinks.durations import parse_duration
        try:
            parse_duration(max_staleness)
        except ValueError as error:
            raise DefinitionError(f"@features(max_staleness={max_staleness!r}): {error}") from None
    if not isinstance(singleton, bool):
        raise DefinitionError(f"@features(singleton={singleton!r}) must be True or False")
    class_options = ClassOptions(owner, tags_of("features", tags), description, max_staleness,
                                 etl_offline_to_online, singleton)

    def decorate(cls: type) -> type:
        from sinks.registry import current_registry
        body = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
        body.setdefault("__init__", _init)
        body.setdefault("__repr__", _repr)
        annotations = body.get("__annotations__", {})
        new = FeaturesMeta(cls.__name__, cls.__bases__, body)
        registry = current_registry()
        class_info = FeatureClassInfo(new, name or _snake_case(cls.__name__), registry)
        doc = (cls.__doc__ or "").strip() or None
        class_info.options = dataclasses.replace(class_options, description=class_options.description or doc)
        type.__setattr__(new, "__feature_class__", class_info)
        for attr, annotation in annotations.items():
            if attr.startswith("_"):
                continue
            f = Feature(new, attr, annotation, body.get(attr))
            class_info.features[attr] = f
            type.__setattr__(new, attr, f)
        registry.add_feature_class(new)
        try:
            class_info.validate()
        except NameError:
            pass  # a class named in an annotation comes later in the file
        return new

    return decorate if cls is None else decorate(cls)


class Features:
    """``Features[User.uuid, User.full_name]``: a set of features, as a resolver's output type."""

    __refs__: Tuple[Ref, ...] = ()

    def __class_getitem__(cls, items: Any) -> type:
        refs = items if isinstance(items, tuple) else (items,)
        return type(f"Features[{', '.join(map(repr, refs))}]", (cls,), {"__refs__": refs})

