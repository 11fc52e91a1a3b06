"""Alembic environment of the activity store; `ActivityStore.migrate()` runs it with a connection."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from activity.models import Base

config = context.config
target_metadata = Base.metadata


def run_with_connection(connection) -> None:
    """Apply the migrations on an open connection, in one transaction."""
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Use the connection the store handed over, else open one on `sqlalchemy.url`."""
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with_connection(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        run_with_connection(connection)
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_online()
