"""The reminders outbox (issue 22): one row per rendered dunning message, its idempotency key (customer, level,
run date) unique, its state (drafted, approved, sending, sent, failed, bounced) with the reason, and the full
MIME message as it goes out, with database-side bounds like the other records.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.String(100)
INSTANT = sa.DateTime(timezone=True)
# Frozen copies of activity/models.py and activity/store.py as of this revision (a migration never follows later code).
EARLIEST_DATE, LATEST_DATE = "1900-01-01", "2199-12-31"
TEXT_LIMIT = 10_000
CHANNELS = ("email", "letter")
STATES = ("drafted", "approved", "sending", "sent", "failed", "bounced")
TEXTS = {"message_id": 100, "key": 200, "customer_id": 100, "channel": 16, "language": 16, "state": 16,
         "subject": TEXT_LIMIT, "reason": TEXT_LIMIT, "created_by": 100, "approved_by": 100}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "outbox",
        sa.Column("message_id", ID, primary_key=True),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("customer_id", ID, nullable=False, index=True),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("run_date", sa.Date(), nullable=False, index=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("mime", sa.LargeBinary(), nullable=False),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("totals", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_by", ID, nullable=False),
        sa.Column("approved_by", ID, nullable=True),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("recorded_at", INSTANT, nullable=False),
        sa.Column("sent_at", INSTANT, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("key", name="uq_outbox_key"),
    )
    for name, condition in _checks(sqlite):
        if sqlite:
            for event in ("INSERT", "UPDATE"):
                op.execute(f"CREATE TRIGGER {name}_{event.lower()} BEFORE {event} ON outbox "
                           f"WHEN NOT ({condition}) BEGIN SELECT RAISE(ABORT, 'outbox: {name} violated'); END")
        else:
            op.execute(f"ALTER TABLE outbox ADD CONSTRAINT {name} CHECK ({condition})")


def downgrade() -> None:
    """Not supported: going back would drop the record of what was sent; restore a backup."""
    raise NotImplementedError("revision 0005 cannot be downgraded without losing data; restore a backup")


def _checks(sqlite: bool) -> list[tuple[str, str]]:
    row = "NEW." if sqlite else ""
    kind = (f"{row}channel IN ({', '.join(repr(channel) for channel in CHANNELS)}) AND "
            f"{row}state IN ({', '.join(repr(state) for state in STATES)}) AND {row}level BETWEEN 1 AND 9 AND "
            f"{row}attempts >= 0")
    texts = " AND ".join(f"({row}{column} IS NULL OR length({row}{column}) <= {limit})"
                         for column, limit in TEXTS.items())
    return [("ck_outbox_dates", f"{row}run_date BETWEEN '{EARLIEST_DATE}' AND '{LATEST_DATE}'"),
            ("ck_outbox_kind", kind),
            ("ck_outbox_texts", texts)]
