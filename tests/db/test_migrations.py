"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from db.models import Base
from orderflow.embedded import EmbeddedPostgres


def test_migrated_schema_matches_the_models(pg: EmbeddedPostgres):
    engine = create_engine(pg.url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
