"""The cash-receipt forecast with intervals and baselines."""

from __future__ import annotations

import datetime
from typing import Literal

from fastapi import APIRouter, Query

from serving.deps import ScopesFirstRoute, State, Treasury
from serving.schemas import ForecastRow, Rows, records

router = APIRouter(prefix="/forecast", tags=["forecast"], route_class=ScopesFirstRoute)


@router.get("", response_model=Rows[ForecastRow], response_model_exclude_unset=True,
            summary="Cash-receipt forecast with intervals (treasury)")
def forecast(principal: Treasury, state: State, as_of: datetime.date | None = None,
             horizon_weeks: int = Query(13, ge=1, le=26), freq: Literal["week", "day"] = "week",
             currency: str | None = None) -> Rows[ForecastRow]:
    """Expected receipts per period with 10/50/90% intervals, per currency and converted to the base
    currency, and the baselines' forecasts beside them."""
    when = state.checked_as_of(as_of)
    table = state.forecast(when, horizon_weeks=horizon_weeks, freq=freq)
    if currency is not None:
        table = table[table["currency"] == currency.upper()]
    return Rows[ForecastRow](as_of=when.date(), rows=records(table), count=len(table))
