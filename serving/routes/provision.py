"""The bad-debt provision over the API (issue 23, finance scope): both methods as of a date with the loss
rates behind the matrix, the customers where the methods differ most, the movement since `from`, and the
workbook finance books from."""

from __future__ import annotations

import datetime
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from serving.deps import Finance, ScopesFirstRoute, State
from serving.schemas import records

router = APIRouter(prefix="/provision", tags=["provision"], route_class=ScopesFirstRoute)
From = Annotated[datetime.date | None, Query(alias="from", description="Start of the movement schedule.")]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class ProvisionAnswer(BaseModel):
    as_of: datetime.date
    from_: datetime.date | None = Field(None, alias="from")
    summary: list[dict[str, Any]] = Field(description="ECL, exposure and coverage per method (base currency).")
    matrix: list[dict[str, Any]] = Field(description="Open amount, loss rate and ECL per segment and bucket.")
    loss_rates: list[dict[str, Any]] = Field(description="The roll-rate analysis: flows, observations, rates.")
    lgd: dict[str, Any] = Field(description="Loss given default and the defaults behind it.")
    customers: list[dict[str, Any]] = Field(description="The customers with the largest ECL, both methods.")
    differences: list[dict[str, Any]] = Field(description="Where the methods differ most, explained.")
    movement: list[dict[str, Any]] = Field(description="Opening, charge, release, written off, recoveries, closing.")

    model_config = {"populate_by_name": True}


@router.get("", response_model=ProvisionAnswer, response_model_by_alias=True,
            summary="The bad-debt provision by the matrix and by the models, and its movement (finance)")
def provision(principal: Finance, state: State, as_of: datetime.date | None = None,
              from_: From = None,
              top: int = Query(50, ge=1, le=10_000)) -> ProvisionAnswer:
    report = state.provision(as_of, from_)
    customers = report.customers.sort_values("matrix_ecl", ascending=False).head(top)
    return ProvisionAnswer(as_of=report.as_of.date(), from_=from_, summary=records(report.summary),
                           matrix=records(report.matrix.assign(bucket=report.matrix["bucket"].astype(str))),
                           loss_rates=records(report.loss_rates.assign(bucket=report.loss_rates["bucket"].astype(str))),
                           lgd=report.lgd, customers=records(customers), differences=records(report.differences),
                           movement=records(report.movement))


@router.get("/workbook", response_class=Response, summary="The provision workbook, one sheet per view (finance)",
            responses={200: {"content": {XLSX: {}}}})
def workbook(principal: Finance, state: State, as_of: datetime.date | None = None,
             from_: From = None) -> Response:
    from provision.report import write_workbook

    report = state.provision(as_of, from_)
    with tempfile.TemporaryDirectory() as folder:
        body = write_workbook(report, Path(folder) / "provision.xlsx").read_bytes()
    name = f"provision-{report.as_of:%Y-%m-%d}.xlsx"
    return Response(body, media_type=XLSX, headers={"Content-Disposition": f'attachment; filename="{name}"'})
