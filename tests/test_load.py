"""``sinks.load``: definitions files and modules, and errors that point at the user's line."""
import sys

import pytest

import sinks
from sinks import DefinitionError


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    sys.modules.pop(path.stem, None)
    return path


GOOD = """\
from sinks import features, sink

@features
class Item:
    id: str
    price: float

@sink
def priced(item_id: Item.id, price: Item.price):
    return price
"""


def test_load_a_file(tmp_path):
    registry = sinks.load(_write(tmp_path, "shop_defs.py", GOOD))
    assert list(registry.sinks) == ["priced"]
    assert list(registry.feature_classes) == ["item"]
    assert registry.sink("priced")("i1", 2.0) == 2.0


def test_load_a_module_by_name():
    registry = sinks.load("examples.bank")
    assert "aggregate_user_transactions" in registry.sinks


def test_unknown_sink_lists_the_known_ones(tmp_path):
    registry = sinks.load(_write(tmp_path, "shop_defs2.py", GOOD))
    with pytest.raises(KeyError, match="no sink named 'nope' .*priced"):
        registry.sink("nope")


def test_missing_file():
    with pytest.raises(DefinitionError, match="no_such_defs.py: no such definitions file"):
        sinks.load("no_such_defs.py")


def test_import_error_points_at_the_users_line(tmp_path):
    path = _write(tmp_path, "broken_defs.py", "import os\n\nx = 1 / 0\n")
    with pytest.raises(DefinitionError, match=r"broken_defs\.py:3: ZeroDivisionError"):
        sinks.load(path)


def test_syntax_error_points_at_the_users_line(tmp_path):
    path = _write(tmp_path, "syntax_defs.py", "from sinks import sink\n\ndef f(:\n")
    with pytest.raises(DefinitionError, match=r"syntax_defs\.py:3: SyntaxError"):
        sinks.load(path)


def test_feature_error_points_at_the_users_line(tmp_path):
    text = GOOD + "\n@sink\ndef bad(x: Item.nope):\n    pass\n"
    path = _write(tmp_path, "nope_defs.py", text)
    with pytest.raises(DefinitionError, match=r"nope_defs\.py:13: Item has no feature 'nope'"):
        sinks.load(path)


def test_class_error_points_at_the_users_line(tmp_path):
    text = "from sinks import features, Primary\n\n@features\nclass A:\n    a: Primary[str]\n    b: Primary[str]\n"
    path = _write(tmp_path, "two_keys_defs.py", text)
    with pytest.raises(DefinitionError, match=r"two_keys_defs\.py:3: A has two primary keys"):
        sinks.load(path)


def test_undefined_class_in_annotation_is_reported_at_load(tmp_path):
    text = ("from __future__ import annotations\nfrom sinks import features\n\n"
            "@features\nclass A:\n    id: str\n    b: Bee\n")
    path = _write(tmp_path, "undefined_defs.py", text)
    with pytest.raises(DefinitionError, match=r"A\.b: .*'Bee'"):
        sinks.load(path)


def test_duplicate_sink_names_in_one_file(tmp_path):
    text = GOOD + "\n@sink(name='priced')\ndef again(item_id: Item.id):\n    pass\n"
    path = _write(tmp_path, "dup_defs.py", text)
    with pytest.raises(DefinitionError, match=r"dup_defs\.py:12: sink 'priced' is defined twice"):
        sinks.load(path)
