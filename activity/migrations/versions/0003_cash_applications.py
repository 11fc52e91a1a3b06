"""Cash applications: the lines of payments applied to documents by a user (confirmed or changed) or by the
matcher (auto), and rejected proposals, with the same database-side bounds as the other records.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(100)
INSTANT = sa.DateTime(timezone=True)
# Frozen copies of activity/models.py as of this revision (a migration never follows later code).
EARLIEST_DATE, LATEST_DATE = "1900-01-01", "2199-12-31"
MAX_AMOUNT = "9999999999999999.99"
MAX_CENTS = "999999999999999999"
TEXT_LIMIT = 10_000
TEXTS = {"payment_id": 100, "customer_id": 100, "invoice_id": 100, "decision": 16, "currency": 3,
         "payer_customer_id": 100, "payer_name": 200, "payer_account": 100, "note": TEXT_LIMIT,
         "created_by": 100, "void_reason": TEXT_LIMIT}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    money = sa.BigInteger() if sqlite else sa.Numeric(18, 2)
    op.create_table(
        "cash_applications",
        sa.Column("application_id", ID, primary_key=True),
        sa.Column("payment_id", ID, nullable=False, index=True),
        sa.Column("customer_id", ID, nullable=False, index=True),
        sa.Column("invoice_id", ID, nullable=True),
        sa.Column("applied_amount", money, nullable=False),
        sa.Column("applied_date", sa.Date(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("received_date", sa.Date(), nullable=False),
        sa.Column("payment_amount", money, nullable=False),
        sa.Column("payment_amount_base", money, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("payer_customer_id", ID, nullable=True),
        sa.Column("payer_name", sa.String(200), nullable=True),
        sa.Column("payer_account", sa.String(100), nullable=True),
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
                op.execute(f"CREATE TRIGGER {name}_{event.lower()} BEFORE {event} ON cash_applications "
                           f"WHEN NOT ({condition}) BEGIN SELECT RAISE(ABORT, 'cash_applications: {name} violated'); END")
        else:
            op.execute(f"ALTER TABLE cash_applications ADD CONSTRAINT {name} CHECK ({condition})")


def downgrade() -> None:
    """Not supported: going back would drop recorded applications; restore a backup."""
    raise NotImplementedError("revision 0003 cannot be downgraded without losing data; restore a backup")


def _checks(sqlite: bool) -> list[tuple[str, str]]:
    row = "NEW." if sqlite else ""
    dates = " AND ".join(f"{row}{column} BETWEEN '{EARLIEST_DATE}' AND '{LATEST_DATE}'"
                         for column in ("applied_date", "received_date"))
    if sqlite:
        def bounded(column: str, low: str) -> str:
            return f"typeof({row}{column}) = 'integer' AND {row}{column} BETWEEN {low} AND {MAX_CENTS}"
        amounts = " AND ".join([bounded("applied_amount", f"-{MAX_CENTS}"), bounded("payment_amount", "0"),
                                bounded("payment_amount_base", "0")])
    else:
        amounts = (f"applied_amount BETWEEN -{MAX_AMOUNT} AND {MAX_AMOUNT} AND payment_amount BETWEEN 0 AND "
                   f"{MAX_AMOUNT} AND payment_amount_base BETWEEN 0 AND {MAX_AMOUNT}")
    decisions = f"{row}decision IN ('auto', 'confirmed', 'changed', 'rejected')"
    texts = " AND ".join(f"({row}{column} IS NULL OR length({row}{column}) <= {limit})"
                         for column, limit in TEXTS.items())
    return [("ck_cash_applications_dates", f"{row}void_reason IS NOT NULL OR ({dates})"),
            ("ck_cash_applications_amounts", f"{row}void_reason IS NOT NULL OR ({amounts})"),
            ("ck_cash_applications_decision", decisions),
            ("ck_cash_applications_texts", texts)]
