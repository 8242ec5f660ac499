"""Chalk's definitions surface (issue 21): the keywords, joins and spellings real Chalk files use."""
from datetime import date, timedelta
from typing import List, Optional

import pytest

from sinks import DataFrame, DefinitionError, after, before, feature, features, has_many, sink
from sinks.features import info
from sinks.options import Constraints


def test_features_takes_chalks_keywords():
    @features(owner="risk@bank.example", tags=["pii", "team:risk"], max_staleness="1d",
              etl_offline_to_online=True, name="customers", singleton=False)
    class Customer:
        """People who hold accounts."""
        id: str
        email: str = feature(tags="contact", owner="growth@bank.example")

    options = info(Customer).options
    assert info(Customer).namespace == "customers"
    assert (options.owner, options.tags, options.description) == (
        "risk@bank.example", ("pii", "team:risk"), "People who hold accounts.")
    assert Customer.email.owner_email == "growth@bank.example"
    assert Customer.id.owner_email == "risk@bank.example"
    assert Customer.email.tags == ("pii", "team:risk", "contact")
    assert Customer.id.max_staleness == "1d" and Customer.id.etl_offline_to_online is True


def test_features_refuses_a_bad_max_staleness():
    with pytest.raises(DefinitionError, match="max_staleness='soon'"):
        features(max_staleness="soon")


def test_feature_takes_chalks_keywords_and_keeps_default_and_limits():
    @features
    class Account:
        id: str = feature(primary=True, description="the account number")
        balance: float = feature(default=0.0, min=-1000, max=1_000_000, strict=True, version=2,
                                 max_staleness="30d", dtype="float64", name="balance_usd",
                                 cache_nulls=False, etl_offline_to_online=False)
        nickname: Optional[str] = feature(min_length=1, max_length=20)
        kind: str = "checking"
        tags: List[str] = feature(max_length=5)

    assert info(Account).primary is Account.id and Account.id.description == "the account number"
    assert Account.balance.has_default and Account.balance.default == 0.0
    assert Account.balance.constraints == Constraints(min=-1000, max=1_000_000, strict=True)
    assert Account.balance.version == 2 and Account.balance.dtype == "float64"
    assert Account.balance.options.name == "balance_usd"
    assert ("cache_nulls", False) in Account.balance.options.extra
    assert Account.kind.default == "checking" and not Account.nickname.has_default
    assert Account.nickname.constraints.violations("") == ["length 0 is below min_length=1"]
    assert Account.balance.constraints.violations(-5000.0) == ["-5000.0 is below min=-1000"]
    assert Account.balance.constraints.violations(None) == [] and not Account.id.constraints


@pytest.mark.parametrize("declaration, message", [
    ("amount: float = feature(default='zero')", "default 'zero' is a str, not float"),
    ("amount: float = feature(min='0')", "min '0' is a str, not float"),
    ("amount: float = feature(min=10, max=1)", "min=10 is above max=1"),
    ("amount: float = feature(min_length=1)", "min_length applies to str"),
    ("name: str = feature(max_length=-1)", "max_length=-1 must be a non-negative int"),
    ("opened: date = feature(max_staleness='often')", "max_staleness='often'"),
    ("amount: int = 1.5", "default 1.5 is a float, not int"),
])
def test_feature_options_are_checked_against_the_type(declaration, message):
    namespace = {"features": features, "feature": feature, "date": date}
    with pytest.raises(DefinitionError, match=message):
        exec(f"@features\nclass Bad:\n    id: str\n    {declaration}\n", namespace)


def test_has_one_joined_by_the_other_sides_has_many_lambda():
    @features
    class Author:
        id: str
        books: "DataFrame[Book]" = has_many(lambda: Book.author_id == Author.id)

    @features
    class Book:
        id: str
        author_id: str
        author: Author

    assert Book.author.join.pairs == ((Book.author_id, Author.id),)

    @sink
    def shelf(book: Book.id, author: Book.author.id):
        pass
    assert shelf.spec.inputs[1].ref.fqn == "book.author.id"


def test_has_many_joined_by_the_parents_key_annotated_with_the_childs_column():
    @features
    class Tradeline:
        id: str
        user_id: str

    @features
    class Borrower:
        id: Tradeline.user_id
        tradelines: DataFrame[Tradeline]

    assert Borrower.tradelines.join.pairs == ((Borrower.id, Tradeline.user_id),)
    assert info(Borrower).primary is Borrower.id and Borrower.id.type is str


@pytest.mark.parametrize("subscript, advice", [
    ('Shopper.purchases[Purchase.kind in {"a", "b"}]', r"is_in\(\[\.\.\.\]\) instead of `x in"),
    ('Shopper.purchases[Purchase.kind in ["a", "b"]]', r"is_in\(\[\.\.\.\]\)"),
    ("Shopper.purchases[Purchase.kind is None]", r"== None \(or != None\) instead of `x is None`"),
])
def test_unoverloadable_syntax_says_what_to_write(subscript, advice):
    @features
    class Purchase:
        id: str
        shopper_id: "Shopper.id"
        kind: Optional[str]

    @features
    class Shopper:
        id: str
        purchases: DataFrame[Purchase]

    with pytest.raises(DefinitionError, match=advice) as raised:
        eval(subscript, {"Shopper": Shopper, "Purchase": Purchase})
    assert "\n" not in str(raised.value)


def test_windows_take_every_chalk_keyword():
    window = after(years_ago=1, months_ago=2, weeks_ago=1, days_ago=1, hours_ago=1, minutes_ago=1,
                   seconds_ago=1, milliseconds_ago=1, microseconds_ago=1)
    assert window.ago == timedelta(days=365 + 60 + 7 + 1, hours=1, minutes=1, seconds=1, milliseconds=1,
                                   microseconds=1)
    assert before(years_ago=2).ago == timedelta(days=730)
    with pytest.raises(DefinitionError, match="further back than a timedelta"):
        after(years_ago=10**9)


def test_feature_options_pickle_with_their_no_default_marker():
    import pickle

    from sinks.options import NO_DEFAULT, FeatureOptions
    assert pickle.loads(pickle.dumps(FeatureOptions())).default is NO_DEFAULT
    assert pickle.loads(pickle.dumps(feature(default=None, min=1))).constraints == Constraints(min=1)


# -- feature() at run time: defaults fill, limits refuse (strict) or count -----------------------

def _assemble(sinks_, updates):
    """``updates`` through Assemble on the FnApiRunner: (sink outputs by name, dead letters, counters)."""
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from transforms.assemble import Assemble
    from transforms.dead_letters import DEAD_LETTERS

    _SEEN.clear()
    pipeline = beam.Pipeline(runner=FnApiRunner())
    outputs = pipeline | beam.Create(updates, reshuffle=False) | Assemble(sinks_)
    for name, collection in outputs.items():
        _SEEN[name] = []
        collection | f"Collect[{name}]" >> beam.Map(_seen, name)
    result = pipeline.run()
    result.wait_until_finish()
    counted = {c.key.metric.name: c.committed for c in result.metrics().query()["counters"]
               if c.key.metric.namespace == "sinks.assemble"}
    return {k: v for k, v in _SEEN.items() if k != DEAD_LETTERS}, _SEEN.get(DEAD_LETTERS, []), counted


_SEEN: dict = {}


def _seen(element, name):
    _SEEN[name].append(element)


def test_a_default_fills_a_feature_its_entity_never_received(registry):
    @features
    class Paper:
        id: str
        title: str
        kind: str = "paperback"
        pages: Optional[int] = feature(default=100)

    @sink
    def shelf(pid: Paper.id, title: Paper.title, kind: Paper.kind, pages: Optional[Paper.pages]) -> None:
        pass

    found, letters, _ = _assemble([shelf], [
        {"paper.id": "p1", "paper.title": "Dune"},                              # neither sent: defaults
        {"paper.id": "p2", "paper.title": "Emma", "paper.kind": "hardback", "paper.pages": None},   # null stays
    ])
    assert not letters
    assert sorted((update for _, update in found["shelf"]), key=lambda u: u["pid"]) == [
        {"pid": "p1", "title": "Dune", "kind": "paperback", "pages": 100},
        {"pid": "p2", "title": "Emma", "kind": "hardback", "pages": None},
    ]


def test_a_default_fills_a_feature_a_related_row_never_received(registry):
    @features
    class Shelf:
        id: str
        books: "DataFrame[Book]"

    @features
    class Book:
        id: str
        shelf_id: Shelf.id
        kind: Optional[str] = "paperback"
        tags: list[str] = feature(default=[])

    @sink
    def stock(sid: Shelf.id, books: Shelf.books, paperbacks: Shelf.books[Book.kind == "paperback"]) -> None:
        pass

    found, letters, _ = _assemble([stock], [
        {"shelf.id": "s1"},
        {"book.id": "b1", "book.shelf_id": "s1"},                                  # never sent: defaults
        {"book.id": "b2", "book.shelf_id": "s1", "book.kind": None, "book.tags": ["x"]},   # null stays
    ])
    assert not letters
    last = [update for _, update in found["stock"]][-1]
    books = sorted(last["books"].frame(stock.spec.inputs[1].ref).to_pylist(), key=lambda row: row["book.id"])
    assert [(row["book.kind"], row["book.tags"]) for row in books] == [("paperback", []), (None, ["x"])]
    assert last["paperbacks"].frame(stock.spec.inputs[2].ref).count() == 1


def test_a_strict_limit_refuses_an_update_and_a_loose_one_counts_it(registry):
    @features
    class Parcel:
        id: str
        weight: float = feature(min=0, max=30, strict=True)
        label: str = feature(max_length=5)

    @sink
    def post(pid: Parcel.id, weight: Parcel.weight, label: Parcel.label) -> None:
        pass

    found, letters, counted = _assemble([post], [
        {"parcel.id": "a", "parcel.weight": 2.5, "parcel.label": "ok"},
        {"parcel.id": "b", "parcel.weight": 31, "parcel.label": "ok"},          # strict: refused
        {"parcel.id": "c", "parcel.weight": 1, "parcel.label": "far too long"},    # loose: counted, kept
    ])
    assert sorted(update["pid"] for _, update in found["post"]) == ["a", "c"]
    (letter,) = letters
    assert "'parcel.weight' = 31.0: 31.0 is above max=30 (strict)" in letter["error"]
    assert counted["constraint_violations"] == 1
