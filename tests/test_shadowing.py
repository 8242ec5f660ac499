"""A user's feature may be named like anything the project's own objects expose (issue 17, defect 6)."""
import sys

import sinks
from sinks import DataFrame, Feature, Ref, features
from sinks.features import FeatureClassInfo, FeaturesMeta, info


def _project_names():
    """Every public attribute a reference path can meet: of Ref, Feature (class and instance), the
    feature classes' metaclass, a feature class's info, and DataFrame (a has-many's annotation)."""

    @features
    class Probe:
        id: str

    names = set()
    for obj in (Ref, Feature, FeaturesMeta, type, FeatureClassInfo, DataFrame, info(Probe).features["id"],
                info(Probe)):
        names.update(n for n in dir(obj) if not n.startswith("_"))
    names.update(n for n in vars(info(Probe).features["id"]) if not n.startswith("_"))
    names.update(["name", "kind", "type", "owner", "description"])   # the ones the issue names
    return sorted(names - {"id"})


NAMES = _project_names()


def _definitions(names):
    body = "\n".join(f"    {n}: str" for n in names)
    return f"""\
from __future__ import annotations
from sinks import DataFrame, features, sink

@features
class Maker:
    id: str
{body}

@features
class Driver:
    id: str
    maker_id: Maker.id
    maker: Maker
{body}

@features
class Trip:
    id: str
    driver_id: Driver.id
    driver: Driver
""" + "".join(f"""
@sink
def read_{n}(trip: Trip.id, value: Trip.driver.{n}, made: Trip.driver.maker.{n}):
    return value
""" for n in names)


def test_the_probe_covers_the_names_the_issue_lists():
    assert {"name", "kind", "type", "owner", "description", "root", "steps", "leaf", "fqn", "join",
            "related", "filters", "is_in", "mro"} <= set(NAMES)


def test_every_project_attribute_name_is_a_usable_feature_name(tmp_path):
    path = tmp_path / "shadow_defs.py"
    path.write_text(_definitions(NAMES))
    sys.modules.pop("shadow_defs", None)
    registry = sinks.load(path)
    Trip, Driver, Maker = (registry.classes_by_name()[n] for n in ("Trip", "Driver", "Maker"))
    for name in NAMES:
        assert getattr(Driver, name) is info(Driver).features[name], name
        ref = getattr(Trip.driver, name)
        assert isinstance(ref, Ref) and ref.fqn == f"trip.driver.{name}", name
        assert getattr(Trip.driver.maker, name).fqn == f"trip.driver.maker.{name}", name
        spec = registry.sink(f"read_{name}").spec
        assert [i.ref.fqn for i in spec.inputs] == ["trip.id", f"trip.driver.{name}", f"trip.driver.maker.{name}"]
        assert [s.name for s in spec.inputs[2].ref._steps] == ["driver", "maker", name]


def test_a_has_one_without_such_features_still_reads_as_its_feature():
    @features
    class Account:
        id: str
        user_id: "User.id"

    @features
    class User:
        id: str
        account: Account

    assert User.account.kind == "has_one" and User.account.related is Account
    assert User.account.join.pairs == ((User.id, Account.user_id),)
