"""Alembic environment: runs migrations over a synchronous psycopg connection."""

from alembic import context
from sqlalchemy import create_engine, pool

from db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic: sqlalchemy.url is not set (db/migrate.py sets it)")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            # Serialise concurrent `orderflow up`s / test sessions migrating one database.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7419001)")
            context.run_migrations()
    engine.dispose()


run_migrations_online()
