"""The bad-debt provision's web page (issue 23, finance): both methods side by side, the matrix, the movement
since a date and the customers where the methods differ most; the workbook to download."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import APIRouter, Request, Response

from serving.deps import Service
from serving.web import page, parse_as_of, render, session_context, signed_in

router = APIRouter(prefix="/ui", include_in_schema=False)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def parse_start(service, text: str | None):
    """The movement's start from the form (empty: none), as a date of the ledger."""
    if not text:
        return None
    return service.state.checked_date(parse_as_of(service, text).date(), "from").date()


@router.get("/provision")
@page
def provision(request: Request, service: Service, as_of: str | None = None, from_: str | None = None) -> Response:
    """The provision as of a date by the matrix and by the models, and the movement from `from` (finance)."""
    session = signed_in(service, request, "finance")
    when = parse_as_of(service, as_of)
    start = parse_start(service, request.query_params.get("from") or from_)
    report = service.state.provision(when.date(), start)
    customers = report.customers.sort_values("matrix_ecl", ascending=False).head(25)
    return render("provision.html", **session_context(session), as_of=when, start=start, report=report,
                  summary=report.summary.to_dict("records"),
                  matrix=report.matrix.assign(bucket=report.matrix["bucket"].astype(str)).to_dict("records"),
                  movement=report.movement.to_dict("records"), differences=report.differences.head(10).to_dict("records"),
                  customers=customers.to_dict("records"))


@router.get("/provision/workbook")
@page
def provision_workbook(request: Request, service: Service, as_of: str | None = None) -> Response:
    """The provision workbook for the page's date and movement start (finance)."""
    from provision.report import write_workbook

    signed_in(service, request, "finance")
    when = parse_as_of(service, as_of)
    report = service.state.provision(when.date(), parse_start(service, request.query_params.get("from")))
    with tempfile.TemporaryDirectory() as folder:
        body = write_workbook(report, Path(folder) / "provision.xlsx").read_bytes()
    return Response(body, media_type=XLSX,
                    headers={"Content-Disposition": f'attachment; filename="provision-{report.as_of:%Y-%m-%d}.xlsx"'})
