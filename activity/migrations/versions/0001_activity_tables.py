"""Create the activity store's tables.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(100)
MONEY = sa.Numeric(18, 2)
INSTANT = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create every table of the store as of this revision."""
    op.create_table(
        "promises",
        sa.Column("promise_id", ID, primary_key=True),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("invoice_id", ID, nullable=True),
        sa.Column("made_date", sa.Date(), nullable=False),
        sa.Column("promised_date", sa.Date(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_by", ID, nullable=False),
        sa.Column("recorded_at", INSTANT, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.create_index("ix_promises_customer_id", "promises", ["customer_id"])
    op.create_table(
        "disputes",
        sa.Column("dispute_id", ID, primary_key=True),
        sa.Column("invoice_id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("opened_date", sa.Date(), nullable=False),
        sa.Column("reason_code", ID, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("owner", ID, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("resolved_date", sa.Date(), nullable=True),
        sa.Column("created_by", ID, nullable=False),
        sa.Column("recorded_at", INSTANT, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.create_index("ix_disputes_invoice_id", "disputes", ["invoice_id"])
    op.create_index("ix_disputes_customer_id", "disputes", ["customer_id"])
    op.create_table(
        "contacts",
        sa.Column("contact_id", ID, primary_key=True),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("contact_date", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("next_action_date", sa.Date(), nullable=True),
        sa.Column("created_by", ID, nullable=False),
        sa.Column("recorded_at", INSTANT, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.create_index("ix_contacts_customer_id", "contacts", ["customer_id"])
    op.create_table(
        "dunning_letters",
        sa.Column("letter_id", ID, primary_key=True),
        sa.Column("invoice_id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("issued_date", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("created_by", ID, nullable=False),
        sa.Column("recorded_at", INSTANT, nullable=False),
    )
    op.create_index("ix_dunning_letters_invoice_id", "dunning_letters", ["invoice_id"])
    op.create_index("ix_dunning_letters_customer_id", "dunning_letters", ["customer_id"])
    op.create_table(
        "users",
        sa.Column("name", ID, primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
    )
    op.create_table(
        "portfolios",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("collector", ID, sa.ForeignKey("users.name"), nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.UniqueConstraint("collector", "customer_id", name="uq_portfolios_collector_customer"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("user_name", ID, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("recorded_at", INSTANT, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("recorded_at", INSTANT, nullable=False),
        sa.Column("user_name", ID, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("table_name", sa.String(64), nullable=False),
        sa.Column("record_id", ID, nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    """Drop every table this revision created."""
    for table in ("audit_log", "idempotency_keys", "portfolios", "users", "dunning_letters", "contacts",
                  "disputes", "promises"):
        op.drop_table(table)
