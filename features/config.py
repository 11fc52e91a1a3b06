"""Every window and threshold of the feature layer, with its documented default.

Windows are in days and end at `as_of` (inclusive): "the last 90 days" is (as_of - 90, as_of].
"""

from __future__ import annotations

from itertools import pairwise

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class FeatureConfig(BaseModel):
    """Settings of the features and labels; unknown keys are rejected (a typo is an error)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Definitions shared by features and labels (DESIGN.md §5).
    late_grace_days: int = Field(5, ge=0, description="Paid more than this many days after due is late.")
    aging_limits: tuple[int, ...] = Field(
        (0, 30, 60, 90, 120), description="Days past due limits of the aging buckets: Current, 1-30, ..., 120+.")
    money_tolerance: float = Field(0.005, ge=0, description="An open amount within this is settled.")

    # Invoice level.
    month_end_days: int = Field(3, ge=1, le=28, description="Issued in the last N days of a month is month-end.")

    # Customer level: payment behaviour.
    last_paid_invoices: int = Field(10, ge=1, description="Paid invoices in the average and EWM of days late.")
    ewm_halflife_invoices: float = Field(3.0, gt=0, description="Half-life, in paid invoices, of the EWM.")
    late_share_windows_days: tuple[int, ...] = Field(
        (90, 180, 365), description="Windows (by paid date) of the share of invoices paid late.")
    trend_recent_days: int = Field(90, ge=1, description="Recent window of the behaviour trends.")
    trend_history_days: int = Field(365, ge=1, description="Whole window of the trends; older = history minus recent.")
    partial_payment_days: int = Field(365, ge=1, description="Invoices issued in this window for the partial share.")
    payment_frequency_days: int = Field(180, ge=1, description="Window of payments counted per 30 days.")

    # Customer level: current state (issue 19).
    recency_halflife_days: float = Field(
        90.0, gt=0, description="Half-life, in calendar days, of the recency weights of days late and late rate.")
    overdue_trend_days: int = Field(90, ge=1, description="The overdue share is compared with this many days ago.")

    # Customer level: volume.
    invoice_count_days: int = Field(365, ge=1, description="Window of the invoice count.")
    volume_recent_days: int = Field(90, ge=1, description="Recent window of the invoice volume trend.")
    volume_history_days: int = Field(365, ge=1, description="Whole window of the invoice volume trend.")

    # Customer level: collections events.
    dispute_days: int = Field(180, ge=1, description="Window of disputes opened.")
    broken_promise_days: int = Field(180, ge=1, description="Window (by promised date) of broken promises.")
    contact_days: int = Field(90, ge=1, description="Window of contacts counted.")
    writeoff_days: int = Field(365, ge=1, description="Window of write-offs counted.")

    # Labels.
    paid_within_days: tuple[int, ...] = Field((7, 14, 30, 60, 90), description="Horizons of the paid-within labels.")
    deterioration_days_past_due: int = Field(
        90, ge=0, description="More than this many days past due is deteriorated (DESIGN §1: 90+, i.e. 91 on).")
    deterioration_horizon_days: int = Field(90, ge=1, description="Window after as_of of the deterioration label.")

    @field_validator("aging_limits", "late_share_windows_days", "paid_within_days")
    @classmethod
    def _increasing(cls, values: tuple[int, ...]) -> tuple[int, ...]:
        if not values or any(b <= a for a, b in pairwise(values)) or values[0] < 0:
            raise ValueError("expected non-negative numbers in increasing order")
        return values

    @model_validator(mode="after")
    def _histories_cover_recent_windows(self) -> FeatureConfig:
        if self.trend_history_days <= self.trend_recent_days:
            raise ValueError("trend_history_days must be longer than trend_recent_days")
        if self.volume_history_days < self.volume_recent_days:
            raise ValueError("volume_history_days must not be shorter than volume_recent_days")
        return self


def aging_bucket_names(limits: tuple[int, ...]) -> list[str]:
    """Bucket labels for limits [0, 30, 60, 90, 120]: current, dpd_1_30, ..., dpd_91_120, dpd_over_120."""
    names = ["current" if limits[0] == 0 else f"dpd_upto_{limits[0]}"]
    names += [f"dpd_{low + 1}_{high}" for low, high in pairwise(limits)]
    return [*names, f"dpd_over_{limits[-1]}"]
