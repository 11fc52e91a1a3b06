"""Daily runs: the runs the service answers from, a new one started in the background, a reload."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from runs.folder import read_manifest
from serving.deps import Admin, AnyRole, ScopesFirstRoute, Service
from serving.schemas import IdInPath, Rows, RunJob, RunRequest, RunsReloaded, RunSummary
from serving.views import RunDays

router = APIRouter(prefix="/runs", tags=["runs"], route_class=ScopesFirstRoute)


@router.get("", response_model=Rows[RunSummary], summary="The daily runs the service can answer from (any scope)")
def runs(principal: AnyRole, service: Service) -> Rows[RunSummary]:
    days = service.state.days
    rows = []
    if isinstance(days, RunDays):
        for as_of, folder in sorted(days.runs.items(), reverse=True):
            manifest = read_manifest(folder)
            rows.append(RunSummary(as_of=as_of.date(), served=as_of == days.newest, built_at=manifest.get("built_at"),
                                   seconds=manifest.get("seconds"), models=manifest.get("models", {}),
                                   tables=manifest.get("tables", {}),
                                   drift_retrain=(manifest.get("facts", {}).get("drift") or {}).get("retrain")))
    return Rows[RunSummary](as_of=None, rows=rows, count=len(rows))


@router.post("", response_model=RunJob, status_code=202,
             summary="Start a run for a date in the background; follow it at the job URL (admin)")
def start_run(run: RunRequest, principal: Admin, service: Service, request: Request, response: Response) -> RunJob:
    as_of = service.state.checked_date(run.as_of, "as_of")
    job = service.jobs.start(as_of, principal.user, getattr(service.state.days, "ledger_dir", None))
    url = job_url(request, job.job_id)
    response.headers["Location"] = url
    return RunJob(url=url, **job.public())


@router.get("/jobs/{job_id}", response_model=RunJob, summary="A run job: its step, then its outcome (admin)")
def run_job(job_id: IdInPath, principal: Admin, service: Service, request: Request) -> RunJob:
    job = service.jobs.get(job_id)
    return RunJob(url=job_url(request, job.job_id), **job.public())


@router.post("/reload", response_model=RunsReloaded, summary="Serve new complete runs now (admin)")
def reload_runs(principal: Admin, service: Service) -> RunsReloaded:
    changed = service.state.refresh()
    return RunsReloaded(changed=[day.date() for day in changed], served=service.state.default_as_of.date())


def job_url(request: Request, job_id: str) -> str:
    return str(request.url_for("run_job", job_id=job_id).path)
