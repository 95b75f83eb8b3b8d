"""Tables, as SQLAlchemy Core metadata (one definition for MySQL/MariaDB and SQLite).

Times are stored as naive UTC DATETIME(6); money as integer minor units plus an ISO
4217 currency code. The ``events`` counters (``sold``, ``held``) are written only by
the event's actor, fenced by ``epoch``; they always equal the sums of the event's
booking rows by status (checked by the tests).

The rows a booking writes (``orders``, ``bookings``) carry no foreign keys: each is
written with its parents in one transaction by the code that owns them (an order's
front end or its event's actor), nothing deletes rows, and the tests check the
references. On MariaDB the checks cost about a tenth of a booking's write throughput
(docs/design.md). The colder tables keep theirs.

A booking's attendees are a JSON column of its row (migration 0004): one row and two
index entries fewer per booking, about a third of MariaDB's work per booking
(docs/design.md).

``orders`` and ``bookings`` are stored in the order they are written: their primary
key is ``seq``, a number the store hands out, and ``id`` is a unique key beside it
(migration 0005). A keyed order's id, and its booking's, are hashes of its
Idempotency-Key (that is how a retry finds its first attempt), so keyed by ``id`` each
new row would land at a random place in the table. MariaDB keeps a table's rows in
its primary key's order: random places cost it more work per booking, and far more
once the tables outgrow its buffer pool (figures in docs/design.md). Nothing refers to
``seq``; ids stay the rows' names, and their unique keys are narrow.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Id = String(36)
# Write order: the primary key of the tables a booking writes (see above).
Seq = BigInteger().with_variant(Integer(), "sqlite")  # INTEGER PRIMARY KEY: SQLite's rowid
# Microsecond precision on MySQL/MariaDB (plain DATETIME there truncates to seconds).
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class _Utf8Bytes(mysql.VARBINARY):
    """VARBINARY that takes and gives text: the driver sends a str as UTF-8, which MySQL
    stores as the column's bytes (SQLAlchemy's own binary handling wants bytes)."""

    def bind_processor(self, dialect: Dialect) -> None:
        return None

    def result_processor(self, dialect: Dialect, coltype: object) -> None:
        return None


class ExactText(TypeDecorator[str]):
    """Text that equals only the same text, on every store.

    MySQL and MariaDB compare VARCHARs by their collation: under the default
    ``utf8mb4_general_ci``, ``Key``, ``key``, ``kéy`` and ``key `` are one value, so a
    key column would take them for one key. SQLite compares them as they are. Here the
    MySQL column is VARBINARY holding the text's UTF-8 bytes, compared byte for byte.
    """

    impl = String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            # Up to four bytes a character in UTF-8.
            return dialect.type_descriptor(_Utf8Bytes(4 * self.length))
        return dialect.type_descriptor(self.impl_instance)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return value.decode() if isinstance(value, bytes) else value


users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(200), nullable=False),
    # Stored in lower case; otherwise exact: "zoë@…" and "zoe@…" are two mailboxes (ExactText).
    Column("email", ExactText(320), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True),
    Column("host_id", Id, ForeignKey("users.id"), nullable=False),
    Column("title", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("venue", String(200), nullable=False),
    Column("starts_at", Timestamp, nullable=False),
    Column("ends_at", Timestamp, nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("oversell_capacity", Integer, nullable=False),
    Column("price_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("sold", Integer, nullable=False, server_default="0"),
    Column("held", Integer, nullable=False, server_default="0"),
    # Fencing token: each actor incarnation claims a new epoch and writes only with it.
    Column("epoch", BigInteger, nullable=False, server_default="0"),
    # Bumped by every inventory commit; lets readers see that counters moved.
    Column("version", BigInteger, nullable=False, server_default="0"),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Index("ix_events_starts_at_id", "starts_at", "id"),
    Index("ix_events_host_id", "host_id"),
)

event_policies = Table(
    "event_policies",
    metadata,
    Column("event_id", Id, ForeignKey("events.id"), primary_key=True),
    Column("cancellation_allowed", Boolean, nullable=False),
    # Cancellations close this many hours before the event starts.
    Column("cancel_deadline_hours", Integer, nullable=False),
    # Share of the price refunded on a customer's cancellation, in percent.
    Column("refund_percent", Integer, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", Id, nullable=False, unique=True),
    Column("account_id", Id, nullable=False),
    Column("status", String(16), nullable=False),
    Column("request_hash", String(64), nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    Column("total_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("problem_type", String(64), nullable=True),
    Column("problem_detail", String(500), nullable=True),
    # The event a refused order was refused on: its answer's ``event_id``, kept for replays.
    Column("problem_event_id", Id, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Index("ix_orders_account_id_created_at", "account_id", "created_at"),
)

bookings = Table(
    "bookings",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", Id, nullable=False, unique=True),
    Column("order_id", Id, nullable=False),
    Column("event_id", Id, nullable=False),
    Column("account_id", Id, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("expires_at", Timestamp, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    # The booking's attendees in order, as JSON: [{"name": ..., "email": ... or null}].
    # A value of the booking, always read with it: no table (and no index) of its own.
    Column("attendees", Text, nullable=False),
    Index("ix_bookings_event_id_status", "event_id", "status"),
    Index("ix_bookings_order_id", "order_id"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("account_id", Id, nullable=False),
    # Opaque and case-sensitive: "Key" and "key" are two keys (ExactText).
    Column("idem_key", ExactText(255), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("order_id", Id, nullable=False),
    # HTTP status of the stored answer; NULL while the request is still in flight.
    Column("status_code", Integer, nullable=True),
    # An in-flight record is owned by its front end until then; a retry may take over after.
    Column("locked_until", Timestamp, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    PrimaryKeyConstraint("account_id", "idem_key"),
)


def written_columns(table: Table) -> list[Column[Any]]:
    """The columns a writer fills: all but a store-numbered ``seq``."""
    return [c for c in table.columns if c.name != "seq"]


def attendees_from_json(text: str | None) -> list[dict[str, Any]]:
    """The attendees a ``bookings.attendees`` value holds, as ``{"name", "email"}``."""
    return [{"name": a["name"], "email": a.get("email")} for a in orjson.loads(text or "[]")]
