"""Runs started over the API (`POST /v1/runs`): one at a time, in a background thread, with the step it
is on. A failed run is reported on its job and changes nothing served; a complete one is served at once."""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from configs.settings import Settings
from ledger.errors import Conflict, NotFound
from runs.day import Step

log = logging.getLogger("arrisk.jobs")
KEPT_JOBS = 50


@dataclass
class Job:
    """A run in progress or finished: what the job URL shows."""

    job_id: str
    as_of: pd.Timestamp
    requested_by: str
    status: str = "running"  # running, complete or failed
    step: str | None = None
    step_index: int = 0
    steps_total: int = 0
    error: str | None = None
    run: str | None = None
    pack: str | None = None  # what became of the finance report pack, when one was due
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    def public(self) -> dict:
        return {"job_id": self.job_id, "as_of": self.as_of.date(), "requested_by": self.requested_by,
                "status": self.status, "step": self.step, "step_index": self.step_index,
                "steps_total": self.steps_total, "error": self.error, "run": self.run, "pack": self.pack}


class RunJobs:
    """The service's run jobs: start one (409 while another runs), look one up."""

    def __init__(self, settings: Settings, state) -> None:
        self.settings, self.state = settings, state
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, as_of: pd.Timestamp, user: str, ledger_dir: Path) -> Job:
        if self.settings.runs is None:
            raise Conflict("this service computes dates on demand from a ledger; start it with --runs DIR "
                           "(ARRISK_RUNS) to build and serve daily runs")
        with self._lock:
            running = [job for job in self.jobs.values() if job.status == "running"]
            if running:
                raise Conflict(f"run job {running[0].job_id} for {running[0].as_of:%Y-%m-%d} is still running "
                               f"(step {running[0].step}); one run at a time")
            job = Job(secrets.token_hex(8), pd.Timestamp(as_of).normalize(), user)
            self.jobs[job.job_id] = job
            while len(self.jobs) > KEPT_JOBS:
                self.jobs.pop(next(iter(self.jobs)))
        threading.Thread(target=self._run, args=(job, ledger_dir), name=f"arrisk-run-{job.job_id}",
                         daemon=True).start()
        return job

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no run job {job_id!r} (jobs are kept until the service restarts)")
        return job

    def _run(self, job: Job, ledger_dir: Path) -> None:
        from serving.daily import daily_run

        def on_step(index: int, step: Step) -> None:
            job.step, job.step_index = step.name, index + 1

        try:
            from serving.daily import run_steps  # the step count for the progress

            job.steps_total = len(run_steps("", Path()))
            folder = daily_run(ledger_dir, job.as_of, self.settings.runs, requested_by=job.requested_by,
                               on_step=on_step)
            job.run = folder.name
            self.state.refresh()
            job.status = "complete"
            from serving.report_pack import scheduled_pack

            job.pack = scheduled_pack(ledger_dir, job.as_of, self.settings.runs)
        except Exception as error:  # reported on the job; the served runs are untouched
            log.exception("run job %s for %s failed", job.job_id, f"{job.as_of:%Y-%m-%d}")
            job.status, job.error = "failed", f"{type(error).__name__}: {error}"
        finally:
            job.done.set()
