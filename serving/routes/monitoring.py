"""The latest monitoring reports (`arrisk report drift | performance | kpis` write them)."""

from __future__ import annotations

import datetime
import json

from fastapi import APIRouter
from fastapi.responses import FileResponse

from ledger.errors import NotFound
from serving.deps import CreditOrTreasury, ScopesFirstRoute, Service
from serving.schemas import IdInPath, ReportFile, Rows

# What `arrisk report drift | performance | kpis` write; only these names are ever served.
REPORT_FILES = {"drift.html": "text/html", "drift.json": "application/json", "performance.html": "text/html",
                "performance.json": "application/json", "kpis.html": "text/html", "kpis.json": "application/json",
                "kpis.xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}

router = APIRouter(prefix="/reports", tags=["monitoring reports"], route_class=ScopesFirstRoute)


@router.get("", response_model=Rows[ReportFile], summary="The latest monitoring reports (credit, treasury)")
def reports(principal: CreditOrTreasury, service: Service) -> Rows[ReportFile]:
    """The report files present, with the JSON summaries inline."""
    rows = []
    for name in sorted(REPORT_FILES):
        path = service.reports / name
        if path.is_file():
            stat = path.stat()
            rows.append({"name": name, "url": f"/v1/reports/{name}", "bytes": stat.st_size,
                         "modified": datetime.datetime.fromtimestamp(stat.st_mtime, datetime.UTC).isoformat(),
                         "summary": json.loads(path.read_text()) if name.endswith(".json") else None})
    return Rows[ReportFile](as_of=None, rows=rows, count=len(rows))


@router.get("/{name}", summary="One report file: HTML, JSON or the KPI workbook (credit, treasury)",
            response_class=FileResponse)
def report_file(name: IdInPath, principal: CreditOrTreasury, service: Service) -> FileResponse:
    path = service.reports / name
    if name not in REPORT_FILES or not path.is_file():
        raise NotFound(f"no report {name!r}: run `arrisk report drift | performance | kpis` first "
                       f"(known names: {', '.join(sorted(REPORT_FILES))})")
    return FileResponse(path, media_type=REPORT_FILES[name], filename=name)
