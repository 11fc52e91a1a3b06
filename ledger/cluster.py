"""The Dask cluster a `--engine dask` command runs on: an existing scheduler, or a local one.

`dask_client(scheduler)` connects to the scheduler at `scheduler` (an address such as
`tcp://10.0.0.5:8786`, or a scheduler file written by `dask scheduler --scheduler-file`), or, without
one, starts a `LocalCluster` of worker processes sized to the machine (one per core, one thread each,
the machine's memory split between them) and closes it afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ledger.errors import BadInput

ENGINES = ("pandas", "dask")


class ClusterError(BadInput):
    """The Dask scheduler could not be reached or the local cluster could not start."""


def checked_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise BadInput(f"--engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
    return engine


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, *, workers: int | None = None,
                memory_limit: str | None = None, timeout: float = 30) -> Iterator:
    """A `distributed.Client` on the scheduler at `scheduler`, or on a new `LocalCluster` of `workers`
    processes (default: the machine's cores) with `memory_limit` each (default: memory / workers)."""
    from distributed import Client, LocalCluster

    if scheduler:
        kwargs = ({"scheduler_file": scheduler} if Path(scheduler).suffix == ".json" and Path(scheduler).is_file()
                  else {"address": scheduler})
        try:
            client = Client(timeout=timeout, **kwargs)
        except (OSError, TimeoutError) as error:
            raise ClusterError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({error})") from None
        with client:
            yield client
        return
    workers = workers or max(1, os.cpu_count() or 1)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, memory_limit=memory_limit or "auto",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def cluster_facts(client) -> dict:
    """What the manifest records of the cluster a run used: its scheduler, workers and their threads."""
    info = client.scheduler_info()
    workers = info.get("workers", {})
    return {"scheduler": info.get("address"), "workers": len(workers),
            "threads": sum(worker.get("nthreads", 0) for worker in workers.values()),
            "worker_memory_limit": max((worker.get("memory_limit") or 0 for worker in workers.values()), default=0)}
