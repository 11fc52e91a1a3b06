"""The API's request and answer models: what the OpenAPI document shows and what the routes validate.

Answers are typed: a report is `Rows[Row]` (`as_of`, `rows`, `count`), its row model naming the columns
DESIGN.md §9 promises. Row models allow extra columns (`extra="allow"`): a frame may carry more than the
model names, and every column it has is answered as before. `records` turns a frame into JSON-ready rows.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar

import numpy as np
import pandas as pd
from fastapi import Path as PathParameter
from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from activity.models import ID_LENGTH
from ledger.schema import CONTACT_CHANNELS

RECORD_TABLES = ("promises", "disputes", "contacts", "dunning_letters")
Id = Annotated[str, Field(min_length=1, max_length=ID_LENGTH)]
IdInPath = Annotated[str, PathParameter(max_length=ID_LENGTH)]
IdInQuery = Annotated[str | None, Query(max_length=ID_LENGTH)]
# A frame's number as it was: an int stays an int, a float a float (a plain `float` would answer 3.0 for 3).
Number = int | float


# Free text (notes, outcomes, resolutions) and amounts: their rules (length, sign, cents, size) are the activity
# store's, applied when it writes, so the API answers with the store's words (one set of rules).
Text = str


# ---- answers -------------------------------------------------------------------------------------------

class Health(BaseModel):
    status: Literal["ok"]
    ready: bool
    warm: bool = Field(False, description=(
        "Whether the background warm-up ended: the ledger behind the runs, its index by customer and the "
        "day's JSON rows are loaded (until then the first write or customer answer does that work)."))


class Info(BaseModel):
    ledger: str = Field(description="The ledger folder's name (its full path for admins).")
    ledger_fingerprint: str
    default_as_of: datetime.date
    model_versions: dict[str, str | None]
    source: Literal["runs", "ledger"] = Field("ledger", description=(
        "runs: answers come from daily runs (`runs` lists their dates); ledger: computed on demand."))
    runs: list[datetime.date] = Field(default_factory=list)
    user: str
    scopes: list[str]


class Row(BaseModel):
    """A row of a report: the named columns, and any other column the report has."""

    model_config = ConfigDict(extra="allow")


RowT = TypeVar("RowT", bound=BaseModel)


class Rows(BaseModel, Generic[RowT]):
    """A report: the date it is as of, its rows and how many there are."""

    as_of: datetime.date | None = None
    rows: list[RowT]
    count: int


class ScoreRow(Row):
    """One open document scored (DESIGN.md §9: the `arrisk score` columns, then the API's extras)."""

    invoice_id: str
    customer_id: str
    currency: str | None = None
    due_date: datetime.date | None = None
    open_amount: Number | None = None
    open_amount_base: Number | None = None
    days_past_due: Number | None = None
    p_late: Number | None = Field(None, description="P(paid late); null without a late-payment model.")
    expected_days_late: Number | None = None
    pay_date_p10: datetime.date | None = None
    pay_date_p50: datetime.date | None = None
    pay_date_p90: datetime.date | None = None
    p_unpaid: Number | None = Field(None, description="P(still unpaid at the worklist horizon).")
    p_on_time: Number | None = None
    p_late_1_30: Number | None = None
    p_late_31_60: Number | None = None
    p_late_61_90: Number | None = None
    p_late_90_plus: Number | None = None
    reasons: list[str] = Field(default_factory=list, description="The top reasons in words.")


class WorklistRow(Row):
    """One customer to chase (`rules.worklist.WORKLIST_COLUMNS`)."""

    rank: int
    customer_id: str
    name: str | None = None
    collector: str | None = None
    segment: str | None = None
    status: str | None = Field(None, description="active, escalated or held.")
    score: Number | None = None
    money_at_risk_base: Number | None = None
    open_amount_base: Number | None = None
    overdue_amount_base: Number | None = None
    oldest_invoice_id: str | None = None
    max_days_past_due: Number | None = None
    next_dunning_action: str | None = None
    last_promise: str | None = None
    last_dispute: str | None = None
    last_contact: str | None = None
    reason_1: str | None = None
    reason_2: str | None = None
    reason_3: str | None = None


class ForecastRow(Row):
    """Receipts of one period in one view (a document currency, or all converted to the base currency);
    one `baseline_<name>` column per baseline."""

    currency: str
    converted: bool
    period: int
    period_start: datetime.date
    period_end: datetime.date
    expected: Number
    p10: Number
    p50: Number
    p90: Number
    expected_cumulative: Number | None = None
    p10_cumulative: Number | None = None
    p50_cumulative: Number | None = None
    p90_cumulative: Number | None = None


class DeteriorationRow(Row):
    """One customer's deterioration probability, flag, evidence columns and reasons."""

    customer_id: str
    name: str | None = None
    deterioration_probability: Number | None = None
    deteriorating: bool
    reasons: list[str] = Field(default_factory=list)


class AgingRow(Row):
    """One customer's open items by aging bucket (one column per bucket), the company total last."""

    customer_id: str


class DunningRow(Row):
    """One open document's dunning proposal."""

    customer_id: str


class KpiRow(Row):
    """The KPIs of one period (DSO, BPDSO, ADD, CEI, ...)."""

    customer_id: str


class ReportFile(Row):
    name: str
    url: str
    bytes: int
    modified: str
    summary: Any = None


class ActivityRecord(Row):
    """A recorded promise, dispute, contact or dunning letter, with its audit fields."""

    customer_id: str | None = None
    version: int | None = None
    created_by: str | None = None


class PromiseRecord(ActivityRecord):
    promise_id: str | None = None
    invoice_id: str | None = None
    promised_date: str | None = Field(None, description="YYYY-MM-DD")


class DisputeRecord(ActivityRecord):
    dispute_id: str | None = None
    invoice_id: str | None = None
    opened_date: str | None = Field(None, description="YYYY-MM-DD")


class ContactRecord(ActivityRecord):
    contact_id: str | None = None
    contact_date: str | None = Field(None, description="YYYY-MM-DD")
    channel: str | None = None


class LetterRecord(ActivityRecord):
    invoice_id: str | None = None
    level: int | None = None
    issued_date: str | None = Field(None, description="YYYY-MM-DD")


class AuditCheck(BaseModel):
    ok: bool
    problems: list[Any]
    unreadable: list[Any]


class CustomerRisk(BaseModel):
    as_of: datetime.date
    customer_id: str
    deterioration_probability: float | None
    deteriorating: bool
    deterioration_reasons: list[str]
    open_items: list[ScoreRow]


class CustomerView(BaseModel):
    as_of: datetime.date
    customer_id: str
    name: str
    segment: str
    collector: str | None
    credit_limit: float | None
    deterioration_probability: float | None
    deteriorating: bool
    deterioration_reasons: list[str]
    deterioration_contributions: list[dict[str, Any]]
    worklist: WorklistRow | None
    open_items: list[ScoreRow]
    aging: list[AgingRow]
    kpis: list[KpiRow]


# ---- requests ------------------------------------------------------------------------------------------

class ScoreRequest(BaseModel):
    as_of: datetime.date | None = Field(None, description="Scoring date; default: the ledger's last day.")
    invoice_ids: list[Id] | None = Field(None, min_length=1, max_length=10_000, description=(
        "Open documents to score; default: all open documents (of your portfolio, for a collector)."))


class PromiseIn(BaseModel):
    customer_id: Id | None = Field(None, description="The customer; taken from the invoice when omitted.")
    invoice_id: Id | None = Field(None, description="The invoice promised; none for a promise on the account.")
    amount: Decimal
    made_date: datetime.date
    promised_date: datetime.date
    currency: str | None = Field(None, max_length=3)
    note: Text = ""


class PromiseUpdate(BaseModel):
    expected_version: int = Field(ge=1, description="The version you read; a newer one answers 409.")
    amount: Decimal | None = None
    promised_date: datetime.date | None = None
    note: Text | None = None
    status: Literal["cancelled"] | None = None


class DisputeIn(BaseModel):
    invoice_id: Id
    opened_date: datetime.date
    reason_code: Id
    amount: Decimal
    owner: Id | None = None


class DisputeUpdate(BaseModel):
    expected_version: int = Field(ge=1)
    status: Literal["open", "resolved"] | None = None
    resolution: Text | None = None
    resolved_date: datetime.date | None = None
    owner: Id | None = None


class ContactIn(BaseModel):
    customer_id: Id
    contact_date: datetime.date
    channel: Literal[CONTACT_CHANNELS]  # type: ignore[valid-type]
    outcome: Text = ""
    note: Text = ""
    next_action_date: datetime.date | None = None


class ContactUpdate(BaseModel):
    expected_version: int = Field(ge=1)
    outcome: Text | None = None
    note: Text | None = None
    next_action_date: datetime.date | None = None


class LetterIn(BaseModel):
    invoice_id: Id
    level: int = Field(ge=1, le=9)
    issued_date: datetime.date
    channel: Literal["email", "letter", "call", "legal"] = "letter"


class RecordCorrection(BaseModel):
    expected_version: int = Field(ge=1, description="The version you read; a newer one answers 409.")
    changes: dict[str, Any] = Field(min_length=1, description="Field -> corrected value (the store checks them).")


class RecordVoid(BaseModel):
    expected_version: int = Field(ge=1, description="The version you read; a newer one answers 409.")
    reason: Text = Field(min_length=1, description="Why the record is voided (kept in the audit log).")


class CashLineIn(BaseModel):
    invoice_id: Id
    amount: Decimal = Field(gt=0, description="Amount applied, unsigned (a credit memo's line is applied as one).")


class CashApplicationIn(BaseModel):
    payment_id: Id
    applied_date: datetime.date | None = Field(None, description="Date of the application; default: the day served.")
    lines: list[CashLineIn] | None = Field(None, min_length=1, max_length=200, description=(
        "The documents and amounts; omitted: the matcher's current proposal for the payment, confirmed as it is."))
    note: Text = ""


class CashRejectionIn(BaseModel):
    payment_id: Id
    applied_date: datetime.date | None = Field(None, description="Date of the rejection; default: the day served.")
    note: Text = Field(min_length=1, description="Why the proposal is wrong (kept in the audit log).")


class CashProposal(Row):
    """A payment still unapplied with the matcher's proposal: its lines (invoice_id, customer_id, amount),
    confidence, decision and rule, or the reason it is unmatched."""

    payment_id: str
    decision: str


class CashRecorded(BaseModel):
    """What the store recorded for a payment: its lines (one per document; a rejection's one line has none)."""

    payment_id: str
    decision: str
    lines: list[ActivityRecord]
    deduction: ActivityRecord | None = Field(None, description="The deduction opened for what a short payment left (queue_items), if any.")


class CashAutoResult(BaseModel):
    """The payments recorded as applied automatically, and those refused with the reason."""

    as_of: datetime.date
    rows: list[CashRecorded]
    count: int
    refused: list[dict[str, str]]


# ---- frames to rows ------------------------------------------------------------------------------------

def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: dates as ISO strings, NaN as null, numpy scalars as Python numbers."""
    return [{column: plain(value) for column, value in row.items()} for row in frame.to_dict("records")]


def plain(value: Any) -> Any:
    """One frame value as JSON-ready Python (None for NaN/NaT)."""
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.date().isoformat()
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(item) for item in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if not np.isfinite(value) else float(value)
    if value is pd.NaT or value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


class RunSummary(BaseModel):
    """A complete daily run the service can answer from."""

    as_of: datetime.date
    served: bool = Field(description="Whether this is the run answering requests without `as_of`.")
    built_at: str | None = None
    seconds: float | None = None
    models: dict[str, Any] = Field(default_factory=dict)
    tables: dict[str, int] = Field(default_factory=dict)
    drift_retrain: bool | None = None


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: datetime.date = Field(description="The date to run the day for.")


class RunJob(BaseModel):
    """A run started over the API: its step while it runs, then complete (with the run) or failed (why)."""

    job_id: str
    url: str
    as_of: datetime.date
    requested_by: str
    status: Literal["running", "complete", "failed"]
    step: str | None = None
    step_index: int = 0
    steps_total: int = 0
    error: str | None = None
    run: str | None = None
    pack: str | None = Field(None, description="What became of the finance report pack, when one was due.")


class RunsReloaded(BaseModel):
    changed: list[datetime.date]
    served: datetime.date
