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


@pytest.mark.parametrize("stem", ["email", "queue", "sinks"])
def test_a_file_named_like_another_module_loads_that_file(tmp_path, stem):
    path = tmp_path / f"{stem}.py"
    path.write_text(GOOD)
    registry = sinks.load(path)
    assert list(registry.sinks) == ["priced"]
    assert registry.sink("priced").spec.filename == str(path)
    assert sys.modules[stem].__name__ == stem   # the other module is left as it was
    assert sinks.load(path).sink("priced") is registry.sink("priced")   # loaded once


MODEL_DEFS = GOOD + """
from sqlalchemy import Float, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sinks import SQLiteSource


class Base(DeclarativeBase):
    pass


class Price(Base):
    __tablename__ = "prices"
    item_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    price: Mapped[float] = mapped_column(Float)


@sink(integration=SQLiteSource())
def stored(item_id: Item.id, price: Item.price) -> Price:
    return Price(item_id=item_id, price=price)


from sinks import stream


@stream(source="items")
def item_events(message: dict):
    return Item(id=message["id"], price=message["cents"] / 100)
"""

WORKER = """\
import sys
from apache_beam.internal import pickler
stored, priced, feature, model, resolver = pickler.loads(sys.stdin.buffer.read())
update = resolver(resolver.message(b'{"id": "i2", "cents": 250}'))
assert type(update) is stored.spec.root and update.price == 2.5, update
row = stored("i1", 2.5)
assert type(row) is model and row.price == 2.5, row
assert feature.owner is stored.spec.root and feature.name == "price"
assert model is stored.spec.output_model
print(priced("i1", 4.0), stored.spec.name, type(stored).__name__, model.__table__.name)
"""


def test_definitions_from_a_file_reach_a_process_that_cannot_import_it(tmp_path):
    """What a worker does: unpickle sinks, features, models and resolvers of a file not on its path."""
    import os
    import subprocess
    from pathlib import Path

    from apache_beam.internal import pickler
    folder = tmp_path / "defs"
    folder.mkdir()
    path = folder / "worker_defs.py"
    path.write_text(MODEL_DEFS)
    registry = sinks.load(path)
    stored = registry.sink("stored")
    payload = pickler.dumps((stored, registry.sink("priced"), stored.spec.root.price, stored.spec.output_model,
                             registry.resolver("item_events")))
    project = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": project}
    done = subprocess.run([sys.executable, "-c", WORKER], input=payload, capture_output=True, env=env,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().split() == ["4.0", "stored", "Sink", "prices"]


def test_a_sink_made_inside_a_function_of_a_file_still_pickles_by_value(tmp_path):
    from apache_beam.internal import pickler
    text = GOOD + ("\n\ndef make():\n    @sink(name='inner')\n    def inner(item_id: Item.id):\n"
                   "        return item_id\n    return inner\n")
    path = tmp_path / "inner_defs.py"
    path.write_text(text)
    sinks.load(path)
    inner = sys.modules["inner_defs"].make()
    assert pickler.loads(pickler.dumps(inner))("i9") == "i9"
