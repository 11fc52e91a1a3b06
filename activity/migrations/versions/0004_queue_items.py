"""Work-queue records (issue 21): deductions, escalations and credit reviews with owner, SLA due date, status
and decision, with the same database-side bounds as the other records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.String(100)
INSTANT = sa.DateTime(timezone=True)
# Frozen copies of activity/models.py and activity/store.py as of this revision (a migration never follows later code).
EARLIEST_DATE, LATEST_DATE = "1900-01-01", "2199-12-31"
MAX_AMOUNT = "9999999999999999.99"
MAX_CENTS = "999999999999999999"
TEXT_LIMIT = 10_000
QUEUES = ("deduction", "escalation", "credit_review")
STATUSES = ("open", "in_review", "valid", "invalid", "decided", "closed")
TEXTS = {"queue": 16, "customer_id": 100, "invoice_id": 100, "payment_id": 100, "owner": 100, "status": 16,
         "reason_code": 100, "currency": 3, "decision": 32, "details": TEXT_LIMIT, "note": TEXT_LIMIT,
         "created_by": 100, "void_reason": TEXT_LIMIT}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    money = sa.BigInteger() if sqlite else sa.Numeric(18, 2)
    op.create_table(
        "queue_items",
        sa.Column("item_id", ID, primary_key=True),
        sa.Column("queue", sa.String(16), nullable=False, index=True),
        sa.Column("customer_id", ID, nullable=False, index=True),
        sa.Column("invoice_id", ID, nullable=True),
        sa.Column("payment_id", ID, nullable=True),
        sa.Column("opened_date", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("owner", ID, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason_code", ID, nullable=False),
        sa.Column("amount", money, nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("decision", sa.String(32), nullable=True),
        sa.Column("decided_amount", money, nullable=True),
        sa.Column("decided_date", sa.Date(), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_by", ID, nullable=False),
        sa.Column("recorded_at", INSTANT, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("voided_at", INSTANT, nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
    )
    for name, condition in _checks(sqlite):
        if sqlite:
            for event in ("INSERT", "UPDATE"):
                op.execute(f"CREATE TRIGGER {name}_{event.lower()} BEFORE {event} ON queue_items "
                           f"WHEN NOT ({condition}) BEGIN SELECT RAISE(ABORT, 'queue_items: {name} violated'); END")
        else:
            op.execute(f"ALTER TABLE queue_items ADD CONSTRAINT {name} CHECK ({condition})")


def downgrade() -> None:
    """Not supported: going back would drop recorded queue items; restore a backup."""
    raise NotImplementedError("revision 0004 cannot be downgraded without losing data; restore a backup")


def _checks(sqlite: bool) -> list[tuple[str, str]]:
    row = "NEW." if sqlite else ""
    dates = " AND ".join(f"({row}{column} IS NULL OR {row}{column} BETWEEN '{EARLIEST_DATE}' AND '{LATEST_DATE}')"
                         for column in ("opened_date", "due_date", "decided_date"))
    if sqlite:
        amounts = " AND ".join(f"({row}{column} IS NULL OR (typeof({row}{column}) = 'integer' AND "
                               f"{row}{column} BETWEEN 0 AND {MAX_CENTS}))" for column in ("amount", "decided_amount"))
    else:
        amounts = " AND ".join(f"({column} IS NULL OR {column} BETWEEN 0 AND {MAX_AMOUNT})"
                               for column in ("amount", "decided_amount"))
    queues = f"{row}queue IN ({', '.join(repr(queue) for queue in QUEUES)})"
    statuses = f"{row}status IN ({', '.join(repr(status) for status in STATUSES)})"
    texts = " AND ".join(f"({row}{column} IS NULL OR length({row}{column}) <= {limit})"
                         for column, limit in TEXTS.items())
    return [("ck_queue_items_dates", f"{row}void_reason IS NOT NULL OR ({dates})"),
            ("ck_queue_items_amounts", f"{row}void_reason IS NOT NULL OR ({amounts})"),
            ("ck_queue_items_kind", f"{queues} AND {statuses}"),
            ("ck_queue_items_texts", texts)]
