"""Alembic environment: runs on the connection handed over by ``reservation.store.db.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from reservation.store.schema import metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        # Plain `alembic` command line use: the URL comes from the ini file.
        url = config.get_main_option("sqlalchemy.url")
        assert url, "set sqlalchemy.url or migrate through `reservation migrate`"
        with create_engine(url).begin() as conn:
            context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
            context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    context.run_migrations()


run()
