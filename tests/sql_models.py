"""Mapped classes that the SQL write tests write to (module level, so they pickle)."""
import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Event(Base):
    """Appended: an autoincrement key the database fills in, a NOT NULL name, awkward types."""

    __tablename__ = "sinks_test_events"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(sa.String(40))
    name: Mapped[str] = mapped_column(sa.Text, nullable=False)
    amount = mapped_column(sa.Numeric(14, 4))
    score = mapped_column(sa.Float)
    flag = mapped_column(sa.Boolean)
    payload = mapped_column(sa.JSON)
    blob = mapped_column(sa.LargeBinary)
    at = mapped_column(sa.DateTime(timezone=True))
    day = mapped_column(sa.Date)
    source: Mapped[str] = mapped_column(sa.String(20), default="stream")


class Total(Base):
    """Upserted on its primary key."""

    __tablename__ = "sinks_test_totals"
    user_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    count: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    total = mapped_column(sa.Numeric(14, 2))
    note = mapped_column(sa.String(20))


class Hostile(Base):
    """Reserved words and quotes as table and column names."""

    __tablename__ = 'sinks test "order"'
    select: Mapped[str] = mapped_column("select", sa.String(40), primary_key=True)
    from_: Mapped[str] = mapped_column("from'; --", sa.Text)


class PgArrays(Base):
    """PostgreSQL only: arrays and JSONB."""

    __tablename__ = "sinks_test_arrays"
    id: Mapped[int] = mapped_column(primary_key=True)
    tags = mapped_column(postgresql.ARRAY(sa.Text))
    grid = mapped_column(postgresql.ARRAY(sa.Integer, dimensions=2))
    doc = mapped_column(postgresql.JSONB)
    span = mapped_column(sa.Interval)


class Account(Base):
    """Upserted: a nullable column and a NOT NULL column, both with server defaults."""

    __tablename__ = "sinks_test_accounts"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.Text, nullable=False)
    status = mapped_column(sa.String(20), server_default="open")
    tier: Mapped[int] = mapped_column(sa.Integer, nullable=False, server_default="1")


class Balance(Base):
    """Upserted with a version: ``updated_at``, flagged in the column's ``info``."""

    __tablename__ = "sinks_test_balances"
    user_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    amount: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    note = mapped_column(sa.String(40))
    updated_at = mapped_column(sa.DateTime(timezone=True), info={"version": True})


UTC = datetime.timezone.utc
