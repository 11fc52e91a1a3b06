"""SLA clocks on the work queues: a record's due date is its opened date plus the days its queue (and, for a
deduction, its reason code) allows in `configs/sla/default.yaml`; it is breached from the day after."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from configs import config_path, validated_policy
from ledger.errors import BadInput

DEFAULT_SLA_POLICY = config_path("sla", "default.yaml")
SLA_QUEUES = ("dispute", "deduction", "escalation", "credit_review")


class SlaPolicyError(BadInput, ValueError):
    """An SLA policy file that cannot be read or does not validate."""


class SlaPolicy(BaseModel):
    """Days per queue, per deduction reason code, and the team of each owner. Unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "default"
    days: dict[str, int] = Field(description="Calendar days a record of each queue may stay open.")
    deduction_days: dict[str, int] = Field(default_factory=dict, description="A deduction's days by reason code.")
    teams: dict[str, str] = Field(default_factory=dict, description="owner -> team")
    default_team: str = "collections"

    @model_validator(mode="after")
    def _every_queue_has_days(self) -> SlaPolicy:
        missing = [queue for queue in SLA_QUEUES if queue not in self.days]
        if missing:
            raise ValueError(f"days: missing {', '.join(missing)}")
        negative = [name for name, days in {**self.days, **self.deduction_days}.items() if days < 0]
        if negative:
            raise ValueError(f"days must not be negative: {', '.join(negative)}")
        return self

    def team(self, owner: str) -> str:
        return self.teams.get(owner, self.default_team)


def load_sla_policy(path: str | Path | None = None) -> SlaPolicy:
    """Read and validate an SLA policy YAML (default `configs/sla/default.yaml`)."""
    return validated_policy(path or DEFAULT_SLA_POLICY, SlaPolicy, SlaPolicyError)


def sla_days(policy: SlaPolicy, queue: str, reason_code: str | None = None) -> int:
    """The days a record of `queue` (a deduction: of `reason_code`) may stay open."""
    if queue not in SLA_QUEUES:
        raise ValueError(f"queue must be one of {', '.join(SLA_QUEUES)}, got {queue!r}")
    if queue == "deduction" and reason_code in policy.deduction_days:
        return policy.deduction_days[reason_code]
    return policy.days[queue]


def due_date(policy: SlaPolicy, queue: str, opened_date, reason_code: str | None = None) -> pd.Timestamp:
    """The last day a record opened on `opened_date` is within its SLA."""
    return pd.Timestamp(opened_date).normalize() + pd.Timedelta(days=sla_days(policy, queue, reason_code))


# -- clocks and turnaround reports ------------------------------------------------------------------------

CLOCK_COLUMNS = ["queue", "record_id", "customer_id", "owner", "team", "reason_code", "opened_date", "due_date",
                 "closed_date", "is_open", "breached", "days_open", "turnaround_days"]
RECORD_COLUMNS = ["queue", "record_id", "customer_id", "owner", "reason_code", "opened_date", "due_date", "closed_date"]


def clock_records(disputes: list[dict], queue_items: list[dict], policy: SlaPolicy) -> pd.DataFrame:
    """One row per record of every queue: queue, record_id, customer_id, owner, reason_code, opened_date,
    due_date and closed_date (None while open). A dispute (the activity store's) is due `days.dispute` after it
    opened and closes when resolved; a queue item carries its own due date and closes when decided."""
    rows = [{"queue": "dispute", "record_id": dispute["dispute_id"], "customer_id": dispute["customer_id"],
             "owner": dispute.get("owner") or dispute.get("created_by"), "reason_code": dispute.get("reason_code"),
             "opened_date": dispute["opened_date"],
             "due_date": due_date(policy, "dispute", dispute["opened_date"]),
             "closed_date": dispute.get("resolved_date")} for dispute in disputes]
    rows += [{"queue": item["queue"], "record_id": item["item_id"], "customer_id": item["customer_id"],
              "owner": item["owner"], "reason_code": item.get("reason_code"), "opened_date": item["opened_date"],
              "due_date": item["due_date"] or due_date(policy, item["queue"], item["opened_date"],
                                                       item.get("reason_code")),
              "closed_date": item.get("decided_date")} for item in queue_items]
    frame = pd.DataFrame(rows, columns=RECORD_COLUMNS)
    for column in ("opened_date", "due_date", "closed_date"):
        frame[column] = pd.to_datetime(frame[column]).dt.normalize()
    return frame


def sla_clocks(records: pd.DataFrame, as_of, policy: SlaPolicy) -> pd.DataFrame:
    """Each record opened by `as_of` with its team and clock at `as_of`: open (not closed by `as_of`),
    breached (open past its due date, or closed after it: the due date itself is still within the SLA),
    days open (to its close, or to `as_of`) and turnaround days (closed ones only)."""
    as_of = pd.Timestamp(as_of).normalize()
    clocks = records[records["opened_date"] <= as_of].copy()
    closed = clocks["closed_date"].where(clocks["closed_date"] <= as_of)
    clocks["closed_date"] = closed
    clocks["is_open"] = closed.isna()
    clocks["breached"] = (closed.fillna(as_of) > clocks["due_date"]).astype(bool)
    clocks["days_open"] = (closed.fillna(as_of) - clocks["opened_date"]).dt.days
    clocks["turnaround_days"] = (closed - clocks["opened_date"]).dt.days
    clocks["team"] = [policy.team(owner) for owner in clocks["owner"]]
    return clocks[CLOCK_COLUMNS].sort_values(["due_date", "queue", "record_id"], kind="stable").reset_index(drop=True)


def sla_report(clocks: pd.DataFrame, by: str = "owner") -> pd.DataFrame:
    """Per `by` (owner or team) and queue: records, open, breached open, median turnaround days (closed ones)
    and the share of closed records closed on or before their due date."""
    if by not in ("owner", "team"):
        raise ValueError(f"by must be owner or team, got {by!r}")
    frame = clocks.assign(breached_open=clocks["is_open"] & clocks["breached"],
                          closed_in_sla=~clocks["is_open"] & ~clocks["breached"],
                          closed=~clocks["is_open"])
    report = frame.groupby([by, "queue"]).agg(
        records=("record_id", "size"), open=("is_open", "sum"), breached_open=("breached_open", "sum"),
        median_turnaround_days=("turnaround_days", "median"), closed=("closed", "sum"),
        closed_in_sla=("closed_in_sla", "sum")).reset_index()
    report["share_closed_within_sla"] = (report["closed_in_sla"] / report["closed"].where(report["closed"] > 0)).round(4)
    return report.drop(columns=["closed_in_sla"]).astype({"open": int, "breached_open": int, "closed": int})
