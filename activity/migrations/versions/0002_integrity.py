"""Integrity: exact money on SQLite, bounded dates, amounts and text in the database itself, voids,
idempotency keys per user, and a keyed, append-only audit log.

Never loses data: rows an older version wrote that break the new bounds stay (PostgreSQL: constraints
`NOT VALID`, checked on every later insert and update but not on old rows; SQLite: triggers, which
never look at old rows), and the store reports them until an admin corrects or voids them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(100)
INSTANT = sa.DateTime(timezone=True)
# Frozen copies of activity/models.py as of this revision (a migration never follows later code).
EARLIEST_DATE, LATEST_DATE = "1900-01-01", "2199-12-31"
MAX_AMOUNT = "9999999999999999.99"
MAX_CENTS = "999999999999999999"
TEXT_LIMIT = 10_000
RECORD_TABLES = ("promises", "disputes", "contacts", "dunning_letters")
MONEY_TABLES = ("promises", "disputes")
DATES = {
    "promises": ("made_date", "promised_date"),
    "disputes": ("opened_date", "resolved_date"),
    "contacts": ("contact_date", "next_action_date"),
    "dunning_letters": ("issued_date",),
}
TEXTS = {
    "promises": {"customer_id": 100, "invoice_id": 100, "currency": 3, "status": 16, "note": TEXT_LIMIT,
                 "created_by": 100, "void_reason": TEXT_LIMIT},
    "disputes": {"invoice_id": 100, "customer_id": 100, "reason_code": 100, "owner": 100, "status": 16,
                 "resolution": TEXT_LIMIT, "created_by": 100, "void_reason": TEXT_LIMIT},
    "contacts": {"customer_id": 100, "channel": 16, "outcome": TEXT_LIMIT, "note": TEXT_LIMIT,
                 "created_by": 100, "void_reason": TEXT_LIMIT},
    "dunning_letters": {"invoice_id": 100, "customer_id": 100, "channel": 16, "created_by": 100,
                        "void_reason": TEXT_LIMIT},
}


def upgrade() -> None:
    """Add the columns and tables, convert SQLite money to cents, then add the database's own checks."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in RECORD_TABLES:
        op.add_column(table, sa.Column("voided_at", INSTANT, nullable=True))
        op.add_column(table, sa.Column("void_reason", sa.Text(), nullable=True))
    op.add_column("dunning_letters", sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
    if sqlite:
        _money_to_cents()
    # Entries already written keep their plain sha256 hash and say so.
    op.add_column("audit_log", sa.Column("algorithm", sa.String(16), nullable=False, server_default="sha256"))
    op.add_column("audit_log", sa.Column("table_count", sa.Integer(), nullable=True))
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("legacy_seq", sa.Integer(), nullable=False),
        sa.Column("mac", sa.String(64), nullable=False),
    )
    _idempotency_keys_per_user()
    for table in RECORD_TABLES:
        for name, condition in _checks(table, sqlite):
            if sqlite:
                _sqlite_check_triggers(table, name, condition)
            else:
                op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID")
    _append_only_audit_log(sqlite)


def downgrade() -> None:
    """Not supported: going back would drop voids, the audit key's MACs and the cents; restore a backup."""
    raise NotImplementedError("revision 0002 cannot be downgraded without losing data; restore a backup")


def _money_to_cents() -> None:
    # SQLite kept Numeric(18, 2) as a float; from now on it keeps whole cents in an INTEGER (exact).
    for table in MONEY_TABLES:
        op.execute(f"UPDATE {table} SET amount = CAST(ROUND(amount * 100) AS INTEGER)")
        with op.batch_alter_table(table) as batch:
            batch.alter_column("amount", type_=sa.BigInteger(), existing_type=sa.Numeric(18, 2),
                               existing_nullable=False)


def _idempotency_keys_per_user() -> None:
    # The primary key becomes (user_name, key); a rebuild is the one way that works on both databases.
    op.create_table(
        "idempotency_keys_new",
        sa.Column("user_name", ID, nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("recorded_at", INSTANT, nullable=False),
        sa.Column("mac", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("user_name", "key", name="pk_idempotency_keys"),
    )
    op.execute("INSERT INTO idempotency_keys_new (user_name, key, fingerprint, response, recorded_at) "
               "SELECT user_name, key, fingerprint, response, recorded_at FROM idempotency_keys")
    op.drop_table("idempotency_keys")
    op.rename_table("idempotency_keys_new", "idempotency_keys")


def _checks(table: str, sqlite: bool) -> list[tuple[str, str]]:
    """(name, SQL condition on the row) of each check of `table`; `{row}` is NEW. in SQLite triggers."""
    row = "NEW." if sqlite else ""
    dates = " AND ".join(f"({row}{column} IS NULL OR {row}{column} BETWEEN '{EARLIEST_DATE}' AND '{LATEST_DATE}')"
                         for column in DATES[table])
    # Dates and amounts bind live records only, so a bad record an older version wrote can still be voided.
    checks = [(f"ck_{table}_dates", f"{row}void_reason IS NOT NULL OR ({dates})")]
    if table in MONEY_TABLES:
        amount = (f"typeof({row}amount) = 'integer' AND {row}amount BETWEEN 0 AND {MAX_CENTS}" if sqlite
                  else f"amount BETWEEN 0 AND {MAX_AMOUNT}")
        checks.append((f"ck_{table}_amount", f"{row}void_reason IS NOT NULL OR ({amount})"))
    texts = " AND ".join(f"({row}{column} IS NULL OR length({row}{column}) <= {limit})"
                         for column, limit in TEXTS[table].items())
    checks.append((f"ck_{table}_texts", texts))
    return checks


def _sqlite_check_triggers(table: str, name: str, condition: str) -> None:
    for event in ("INSERT", "UPDATE"):
        op.execute(f"CREATE TRIGGER {name}_{event.lower()} BEFORE {event} ON {table} WHEN NOT ({condition}) "
                   f"BEGIN SELECT RAISE(ABORT, '{table}: {name} violated'); END")


def _append_only_audit_log(sqlite: bool) -> None:
    if sqlite:
        for event in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                       "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END")
        return
    op.execute("CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
               "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$")
    op.execute("CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
               "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()")
    op.execute("CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
               "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()")
