"""Activity stores for the tests: an empty database on SQLite or on the test PostgreSQL server, and a store
with the tests' audit key (used by the store, integrity and attack tests)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, make_url, text

from activity.store import ActivityStore

POSTGRES_URL = os.environ.get("ARRISK_TEST_POSTGRES_URL")
NOW = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
AUDIT_KEY = b"test-audit-key-0123456789abcdef"


def new_store(url: str, **options) -> ActivityStore:
    """A store on `url` with the test audit key (not migrated)."""
    return ActivityStore(url, audit_key=AUDIT_KEY, **options)


def empty_database(kind: str, tmp_path):
    """Yield a URL to an empty database: a SQLite file, or a fresh schema on the test PostgreSQL server."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'activity.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("ARRISK_TEST_POSTGRES_URL is not set")
    schema = f"activity_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
