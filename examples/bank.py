"""The seed's bank example: users, their account and their transfers, and four sinks.

Run it with ``./run_local.sh``; read it as a tour of ``@sink``.
"""
from __future__ import annotations

from collections import deque
from typing import Optional

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sinks import DataFrame, FeatureTime, PostgreSQLSource, Primary, after, features, sink


@features
class User:
    uuid: Primary[str]
    full_name: str
    email: Optional[str]
    ts: FeatureTime
    account: Account
    transfers: DataFrame[Transfer]


@features
class Account:
    id: str
    user_id: User.uuid
    title: str
    balance: float
    ts: FeatureTime


@features
class Transfer:
    id: str
    user_id: User.uuid
    status: str
    amount: float
    created_at: FeatureTime


class Base(DeclarativeBase):
    pass


class UserRecord(Base):
    """One row per update of a user's name or account title (appended)."""

    __tablename__ = "user_records"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(64))
    full_name: Mapped[str] = mapped_column(String(256))
    title: Mapped[str] = mapped_column(String(256))


class UserTxnAggregate(Base):
    """One row per user: successful transfers in the last 60 days (upserted)."""

    __tablename__ = "user_txn_aggregates"
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    total: Mapped[float] = mapped_column(Float)


# What the two custom sinks "sent": the latest notifications of this process, kept bounded.
notifications: deque = deque(maxlen=1000)


@sink
def send_user_update(uid: User.uuid, title: User.account.title, name: User.full_name) -> None:
    """A per-row custom sink: called once per update of any of its inputs."""
    notifications.append((uid, title, name))


@sink(buffer_size=100, debounce="100ms", max_delay="1s")
def batch_user_updates(users: DataFrame[User.uuid, User.account.title]) -> None:
    """A batch sink: called with up to 100 buffered updates at a time."""
    notifications.append(("batch", users.count()))


@sink(integration=PostgreSQLSource())
def user_data_export(uid: User.uuid, name: User.full_name, title: User.account.title) -> UserRecord:
    """Appends one row per update to ``user_records``."""
    return UserRecord(uuid=uid, full_name=name, title=title)


@sink(integration=PostgreSQLSource(), upsert=True)
def aggregate_user_transactions(
    uid: User.uuid,
    txns: User.transfers[Transfer.status == "successful", after(days_ago=60)],
) -> UserTxnAggregate:
    """Upserts each user's count and sum of successful transfers in the last 60 days."""
    return UserTxnAggregate(user_id=uid, count=txns.count(), total=txns[Transfer.amount].sum())
