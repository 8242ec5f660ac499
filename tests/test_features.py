"""Feature classes, relations and references."""
from datetime import datetime
from typing import Optional

import pytest

from sinks import (
    DataFrame, DefinitionError, FeatureNotFoundError, FeatureTime, Primary, after, before, feature,
    features, has_many, has_one,
)
from sinks.features import info
from sinks.filters import And, Comparison, IsIn, Not, Or, TimeWindow


def test_namespace_is_snake_case_unless_named():
    @features
    class UserAccount:
        id: str

    @features(name="people")
    class Person:
        id: str

    @features
    class HTTPRequest:
        id: str

    assert info(UserAccount).namespace == "user_account"
    assert UserAccount.id.fqn == "user_account.id"
    assert Person.id.fqn == "people.id"
    assert info(HTTPRequest).namespace == "http_request"


def test_primary_key_is_id_by_default():
    @features
    class User:
        id: str
        name: str

    assert info(User).primary is User.id


def test_primary_key_by_annotation_or_option():
    @features
    class User:
        id: str
        uuid: Primary[str]

    @features
    class Card:
        number: str = feature(primary=True)

    assert info(User).primary is User.uuid
    assert info(Card).primary is Card.number
    assert User.uuid.type is str


def test_two_primary_keys_is_an_error():
    with pytest.raises(DefinitionError, match=r"two primary keys: User\.a and User\.b"):
        @features
        class User:
            a: Primary[str]
            b: str = feature(primary=True)


def test_no_primary_key_is_an_error():
    with pytest.raises(DefinitionError, match="User has no primary key"):
        @features
        class User:
            name: str


def test_feature_time_marker_and_default_ts():
    @features
    class Transfer:
        id: str
        created_at: FeatureTime

    @features
    class Login:
        id: str
        ts: datetime

    @features
    class Plain:
        id: str

    assert info(Transfer).feature_time is Transfer.created_at
    assert Transfer.created_at.type is datetime
    assert info(Login).feature_time is Login.ts
    assert info(Plain).feature_time is None


def test_two_feature_times_is_an_error():
    with pytest.raises(DefinitionError, match="two FeatureTime features"):
        @features
        class Event:
            id: str
            a: FeatureTime
            b: FeatureTime


def test_optional_features_may_be_null():
    @features
    class User:
        id: str
        email: Optional[str]
        phone: "str | None"
        name: str

    assert User.email.optional and User.email.type is str
    assert User.phone.optional and User.phone.type is str
    assert not User.name.optional


def test_implicit_joins_from_foreign_keys(bank):
    User, Account, Transfer = bank
    assert User.account.kind == "has_one" and User.account.related is Account
    assert User.transfers.kind == "has_many" and User.transfers.related is Transfer
    assert User.account.join.pairs == ((User.uuid, Account.user_id),)
    assert User.transfers.join.pairs[0][0] is User.uuid
    assert User.transfers.join.pairs[0][1] is Transfer.user_id
    assert Account.user_id.foreign_key is User.uuid
    assert Account.user_id.type is str


def test_join_where_the_root_holds_the_key():
    @features
    class Identity:
        id: str
        full_name: str

    @features
    class User:
        id: str
        identity_id: Identity.id
        identity: Identity

    assert User.identity.join.pairs == ((User.identity_id, Identity.id),)


def test_explicit_and_composite_joins():
    @features
    class User:
        id: str
        region: str
        account: "Account" = has_one(lambda: Account.user_id == User.id)
        orders: "DataFrame[Order]" = has_many(
            lambda: (User.id == Order.user_id) & (Order.region == User.region))

    @features
    class Account:
        id: str
        user_id: str

    @features
    class Order:
        id: str
        user_id: str
        region: str

    assert User.account.join.pairs == ((User.id, Account.user_id),)
    pairs = User.orders.join.pairs
    assert [(a.name, b.name) for a, b in pairs] == [("id", "user_id"), ("region", "region")]
    assert all(a.owner is User and b.owner is Order for a, b in pairs)


def test_non_equality_join_names_both_features():
    @features
    class User:
        id: str
        account: "Account" = has_one(lambda: Account.user_id != User.id)

    @features
    class Account:
        id: str
        user_id: str

    with pytest.raises(DefinitionError, match=r"equalities.*Account\.user_id != User\.id"):
        User.account.join


def test_ambiguous_implicit_join_names_both_features():
    @features
    class User:
        id: str
        transfers: "DataFrame[Transfer]"

    @features
    class Transfer:
        id: str
        sender_id: User.id
        receiver_id: User.id

    with pytest.raises(DefinitionError, match=r"ambiguous.*Transfer\.sender_id and Transfer\.receiver_id"):
        User.transfers.join


def test_missing_join_is_an_error():
    @features
    class User:
        id: str
        account: "Account"

    @features
    class Account:
        id: str

    with pytest.raises(DefinitionError, match="no join from User to Account"):
        User.account.join


def test_classes_may_refer_forward_and_back(bank):
    User, Account, Transfer = bank
    assert User.account.title.fqn == "user.account.title"


def test_references_of_any_depth():
    @features
    class User:
        id: str
        account: "Account"

    @features
    class Account:
        id: str
        user_id: User.id
        bank: "Bank"
        bank_id: "Bank.id"

    @features
    class Bank:
        id: str
        name: str

    ref = User.account.bank.name
    assert ref.fqn == "user.account.bank.name"
    assert ref.root is User
    assert [s.name for s in ref.steps] == ["account", "bank", "name"]
    assert ref.leaf is Bank.name


def test_bad_attribute_names_class_and_attribute(bank):
    User, Account, Transfer = bank
    with pytest.raises(FeatureNotFoundError, match=r"test_features\.py:\d+: User has no feature 'nope'"):
        User.nope
    with pytest.raises(FeatureNotFoundError, match="Account has no feature 'nope'"):
        User.account.nope
    with pytest.raises(AttributeError):
        User.uuid.nope


def test_has_many_subscripts_filter_and_project(bank):
    User, Account, Transfer = bank
    ref = User.transfers[Transfer.status == "successful", after(days_ago=60)]
    assert isinstance(ref.filters[0], Comparison) and ref.filters[0].value == "successful"
    assert isinstance(ref.filters[1], TimeWindow)
    chained = ref[Transfer.amount > 10][Transfer.amount]
    assert len(chained.filters) == 3
    assert chained.projection[0].leaf is Transfer.amount
    assert ref.fqn == "user.transfers"


def test_filter_operators(bank):
    User, Account, Transfer = bank
    ops = [Transfer.amount == 1, Transfer.amount != 1, Transfer.amount < 1, Transfer.amount <= 1,
           Transfer.amount > 1, Transfer.amount >= 1]
    assert [f.op for f in ops] == ["==", "!=", "<", "<=", ">", ">="]
    assert isinstance(Transfer.status.is_in(["a", "b"]), IsIn)
    combined = ~((Transfer.amount > 1) & (Transfer.status == "x") | Transfer.status.is_in(["y"]))
    assert isinstance(combined, Not) and isinstance(combined.inner, Or)
    assert isinstance(combined.inner.left, And)


def test_filters_must_name_features_of_the_related_class(bank):
    User, Account, Transfer = bank
    with pytest.raises(DefinitionError, match="Account.title is not a feature of Transfer"):
        User.transfers[Account.title == "x"]
    with pytest.raises(DefinitionError, match="is not a has-many relation"):
        User.account[Account.title == "x"]
    with pytest.raises(DefinitionError, match="subscript takes filters"):
        User.transfers["status"]


def test_time_window_needs_a_feature_time_or_index():
    @features
    class User:
        id: str
        logins: "DataFrame[Login]"

    @features
    class Login:
        id: str
        user_id: User.id
        at: datetime

    with pytest.raises(DefinitionError, match="Login has no FeatureTime"):
        User.logins[after(days_ago=1)]
    window = User.logins[after(days_ago=1, index=Login.at)].filters[0]
    assert window.index.leaf is Login.at


@pytest.mark.parametrize("call, message", [
    (lambda: after("60d"), "keyword arguments only"),
    (lambda: after(days_ago="60"), "days_ago must be a non-negative int"),
    (lambda: before(days_ago=1.5), "days_ago must be a non-negative int"),
    (lambda: after(days_ago=-1), "non-negative"),
    (lambda: after(days=1), "unknown argument"),
    (lambda: after(), "needs a distance"),
])
def test_after_before_reject_what_chalk_misreads(call, message):
    with pytest.raises(DefinitionError, match=message):
        call()


def test_after_sums_chalk_keywords():
    window = after(weeks_ago=1, days_ago=2, hours_ago=3, minutes_ago=4, seconds_ago=5,
                   milliseconds_ago=6, microseconds_ago=7)
    from datetime import timedelta
    assert window.ago == timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5,
                                   milliseconds=6, microseconds=7)
    assert before(days_ago=1).side == "before"


def test_feature_classes_build_instances(bank):
    User, Account, Transfer = bank
    user = User(uuid="u1", full_name="Ann")
    assert user.uuid == "u1" and "Ann" in repr(user)
    with pytest.raises(TypeError, match="no feature"):
        User(nope=1)


def test_namespace_clash_is_an_error():
    @features(name="user")
    class A:
        id: str

    with pytest.raises(DefinitionError, match="two feature classes use namespace 'user'"):
        @features(name="user")
        class B:
            id: str


def test_undefined_annotation_names_the_feature():
    @features
    class User:
        id: str
        account: "Acount"

    with pytest.raises(DefinitionError, match=r"User\.account: .*'Acount'"):
        info(User).validate()


def test_features_pickle_to_the_same_object():
    import pickle
    from examples import bank
    assert pickle.loads(pickle.dumps(bank.User.uuid)) is bank.User.uuid
    ref = pickle.loads(pickle.dumps(bank.User.account.title))
    assert ref.fqn == "user.account.title" and ref.leaf is bank.Account.title
