"""Training at scale (`--engine dask`): training rows built bucket by bucket as Dask tasks, a stratified
sample of them gathered on the driver, and the backtest's origins fitted as separate tasks.

A partitioned ledger (`ledger.partitions`) keeps each customer's whole history in one bucket, and every
feature and label is computed per customer, so `build_datasets` on one bucket gives exactly that bucket's
rows of the whole ledger, provided three facts of the whole ledger are passed in: the cutoffs (from the
first invoice and the end of observation) and the end of observation (labels are censored there). Those
are reduced from a small summary per bucket first (`partition_summary`, `ledger_extent`).

What each part holds in memory:
- a summary task holds one bucket's ledger while it reads it and returns a few dates and a hash;
- a dataset task (`bucket_datasets`) holds one bucket's ledger and that bucket's snapshot rows at every
  cutoff; the rows stay on its worker until the sample is drawn from them, then are released;
- the driver holds the summaries, the row counts per (cutoff, label) stratum and bucket, then the sample:
  at most `sample_rows` invoice rows and `sample_rows` customer rows (all rows when fewer), scattered
  once to the cluster;
- an origin task (`origin_result`) and the final fit hold the scattered sample (one copy per worker), the
  training rows censored at their origin and the fitted models; they return predictions and models.

Fitting is the in-process code (`training.backtest.fit_models`) on the sample, so the models, MLflow
logging, the gate and the registry are those of the pandas engine. lightgbm.dask was measured against
it (benchmarks/bench_train_dask.py: same ROC AUC to 0.001 and the same memory; faster, mostly because its
distributed learner skips the models' monotone method) and not kept: see that script's docstring.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features import FeatureConfig
from features.labels import last_event_date
from ledger import Ledger, LedgerError, Problem
from ledger.errors import BadInput
from ledger.partitions import is_partitioned, partition_count, read_partition
from training.backtest import BacktestResult, FittedModels, ModelSettings, combined_backtest, origin_result
from training.datasets import Datasets, in_key_order, month_ends_between

# Rows of each kind the driver gathers at most (per kind). A snapshot row is ~100 numeric columns, about
# 1 kB in pandas; a million rows (~1 GB) fit one worker and LightGBM fits them in minutes.
DEFAULT_SAMPLE_ROWS = 1_000_000
# The label each kind of row is stratified by, with its cutoff; a NaN label (not yet known) is a stratum too.
STRATUM_LABELS = {"invoices": "late", "customers": "deteriorates"}
ROW_KEYS = {"invoices": "invoice_id", "customers": "customer_id"}
UNKNOWN_LABEL = -1


@dataclass(frozen=True)
class PartitionSummary:
    """What the whole ledger needs to know of one bucket: its first invoice, the first date any of its
    customers was known (created, or a first document), its last event and its content hash."""

    bucket: int
    first_invoice: pd.Timestamp | None
    first_known: pd.Timestamp | None
    last_event: pd.Timestamp | None
    fingerprint: str


@dataclass(frozen=True)
class LedgerExtent:
    """The whole ledger's facts that every bucket's rows depend on, reduced from the buckets' summaries."""

    first_invoice: pd.Timestamp
    observation_end: pd.Timestamp
    fingerprint: str


def partition_ledger(path: str | Path, bucket: int, until: pd.Timestamp | None = None) -> Ledger:
    """One bucket of the ledger at `path`, restricted to what was known by `until` when given."""
    ledger = read_partition(path, bucket)
    if until is None:
        return ledger
    from features import known_at

    return known_at(ledger, until)


def partition_summary(path: str | Path, bucket: int, until: pd.Timestamp | None = None) -> PartitionSummary:
    """The summary of one bucket (a Dask task: reads the bucket, returns a few dates and a hash)."""
    ledger = partition_ledger(path, bucket, until)
    first_documents = [ledger.invoices["invoice_date"].min(), ledger.payments["received_date"].min(),
                       ledger.customers["created_date"].min()]
    first_known = min((date for date in first_documents if pd.notna(date)), default=None)
    first_invoice = ledger.invoices["invoice_date"].min()
    return PartitionSummary(bucket, None if pd.isna(first_invoice) else first_invoice, first_known,
                            last_event(ledger), ledger.fingerprint())


def last_event(ledger: Ledger) -> pd.Timestamp | None:
    """The ledger's last event date; None for a bucket where nothing ever happened."""
    try:
        return last_event_date(ledger)
    except ValueError:  # last_event_date's own "no dated events": an empty bucket
        return None


def ledger_extent(summaries: Sequence[PartitionSummary]) -> LedgerExtent:
    """The first invoice and the end of observation of the whole ledger (min and max over the buckets),
    and one hash of the buckets' hashes in bucket order.

    The hash is not `Ledger.fingerprint` of the same data read whole (that one hashes every row in one
    pass, which a cluster cannot split), so a champion trained by the pandas engine is re-backtested on
    the same origins rather than trusted by its logged metrics."""
    firsts = [s.first_invoice for s in summaries if s.first_invoice is not None]
    ends = [s.last_event for s in summaries if s.last_event is not None]
    if not firsts or not ends:
        raise LedgerError(Problem("invoices", None, None, "the ledger has no invoices to build training rows from"),
                          title="cannot train")
    digest = hashlib.sha256(b"partitioned")
    for summary in sorted(summaries, key=lambda s: s.bucket):
        digest.update(summary.fingerprint.encode())
    return LedgerExtent(min(firsts), max(ends), digest.hexdigest()[:16])


def partition_cutoffs(summary: PartitionSummary, cutoffs: Sequence[pd.Timestamp]) -> list[pd.Timestamp]:
    """The cutoffs at which the bucket has rows: those on or after its first invoice. Before its first
    known customer it has none; between the two it would have customer rows that the per-bucket builder
    cannot make (it needs an invoice on or before each cutoff), so that is a clear error, not a gap."""
    if summary.first_known is None:
        return []
    first_invoice = summary.first_invoice if summary.first_invoice is not None else pd.Timestamp.max
    early = [cutoff for cutoff in cutoffs if summary.first_known <= cutoff < first_invoice]
    if early:
        raise LedgerError(Problem(f"partition {summary.bucket}", None, None,
                                  f"customers known at the cutoff {early[0]:%Y-%m-%d} but no invoice until "
                                  f"{'never' if summary.first_invoice is None else f'{first_invoice:%Y-%m-%d}'}: "
                                  "rewrite the ledger with fewer partitions, or use --engine pandas"),
                          title="cannot build training rows per partition")
    return [cutoff for cutoff in cutoffs if cutoff >= first_invoice]


def bucket_datasets(path: str | Path, bucket: int, cutoffs: Sequence[pd.Timestamp], observation_end: pd.Timestamp,
                    config: FeatureConfig, until: pd.Timestamp | None = None,
                    peers: Mapping[pd.Timestamp, pd.DataFrame] | None = None) -> Datasets:
    """One bucket's training rows (a Dask task): `build_datasets` on the bucket with the whole ledger's
    cutoffs, end of observation and peer sums per cutoff."""
    from training.datasets import build_datasets

    return build_datasets(partition_ledger(path, bucket, until), cutoffs, config, observation_end=observation_end,
                          peers=peers)


def bucket_peer_sums(path: str | Path, bucket: int, cutoffs: Sequence[pd.Timestamp], config: FeatureConfig,
                     until: pd.Timestamp | None = None) -> dict[pd.Timestamp, pd.DataFrame]:
    """One bucket's peer sums at each cutoff (a Dask task; `features.peer_sums_at`)."""
    from features import peer_sums_at

    ledger = partition_ledger(path, bucket, until)
    return {cutoff: peer_sums_at(ledger, cutoff, config) for cutoff in cutoffs}


def added_peer_sums_by_cutoff(parts: Sequence[Mapping[pd.Timestamp, pd.DataFrame]],
                              cutoffs: Sequence[pd.Timestamp]) -> dict[pd.Timestamp, pd.DataFrame]:
    """Per cutoff, the buckets' peer sums added up: those of the whole ledger (integer sums, exact)."""
    from features import added_peer_sums

    return {cutoff: added_peer_sums([part[cutoff] for part in parts if cutoff in part]) for cutoff in cutoffs}


def stratum_labels(rows: pd.DataFrame, kind: str) -> np.ndarray:
    """Each row's stratum label as an integer: 0 or 1, or `UNKNOWN_LABEL` where not yet known."""
    return rows[STRATUM_LABELS[kind]].fillna(UNKNOWN_LABEL).to_numpy(dtype=np.int64)


def stratum_sizes(datasets: Datasets) -> dict[str, pd.Series]:
    """Per kind of row: the number of rows per (cutoff, label) stratum (a Dask task on one bucket's rows)."""
    sizes = {}
    for kind in STRATUM_LABELS:
        rows = getattr(datasets, kind)
        sizes[kind] = rows.groupby([rows["cutoff"], stratum_labels(rows, kind)]).size().rename_axis(["cutoff", "label"])
    return sizes


def proportional_quotas(sizes: pd.Series, total: int, *, keep_every: bool = False) -> pd.Series:
    """How many of each group's rows a sample of `total` rows takes: all of them when `total` covers them,
    else in proportion to the group's size by largest remainder (ties to the earlier group), never more than
    the group has. With `keep_every`, every non-empty group keeps at least one row."""
    sizes = sizes.astype(np.int64)
    whole = int(sizes.sum())
    if total >= whole:
        return sizes.copy()
    if keep_every:
        present = (sizes > 0).astype(np.int64)
        if int(present.sum()) > total:
            raise BadInput(f"--sample-rows {total} is fewer than the {int(present.sum())} (cutoff, label) strata "
                           "it must keep: raise it")
        return present + proportional_quotas(sizes - present, total - int(present.sum()))
    base = sizes * total // whole
    remainder = (sizes * total % whole).to_numpy()
    extra = total - int(base.sum())
    base.iloc[np.argsort(-remainder, kind="stable")[:extra]] += 1
    return base


def sample_quotas(sizes_by_bucket: Mapping[int, pd.Series], total: int) -> pd.DataFrame:
    """Rows to take per (cutoff, label) stratum (rows) and bucket (columns): each stratum's share of `total`
    (at least one row each), split between the buckets in proportion to what each holds of it."""
    table = pd.concat(dict(sizes_by_bucket), axis=1).fillna(0).astype(np.int64)
    per_stratum = proportional_quotas(table.sum(axis=1), total, keep_every=True)
    return pd.DataFrame([proportional_quotas(table.loc[stratum], int(per_stratum.loc[stratum])).rename(stratum)
                         for stratum in table.index], columns=table.columns)


def stratified_rows(rows: pd.DataFrame, kind: str, quotas: pd.Series) -> pd.DataFrame:
    """The rows a stratified sample takes from one bucket: in each (cutoff, label) stratum, the `quotas` rows
    with the smallest stable hash of (key, cutoff), so the draw is the same on every run and machine."""
    draw = pd.util.hash_pandas_object(rows[[ROW_KEYS[kind], "cutoff"]], index=False).to_numpy()
    cutoffs, labels = rows["cutoff"].to_numpy(), stratum_labels(rows, kind)
    rank = pd.Series(draw).groupby([cutoffs, labels]).rank(method="first").to_numpy()
    wanted = quotas.reindex(pd.MultiIndex.from_arrays([cutoffs, labels]), fill_value=0).to_numpy()
    return rows[rank <= wanted]


def sampled_datasets(datasets: Datasets, quotas: Mapping[str, pd.Series | None]) -> Datasets:
    """One bucket's share of the sample (a Dask task); a kind without quotas is taken whole."""
    taken = {kind: getattr(datasets, kind) if quotas[kind] is None
             else stratified_rows(getattr(datasets, kind), kind, quotas[kind]) for kind in STRATUM_LABELS}
    return Datasets(taken["invoices"], taken["customers"], datasets.observation_end)


@dataclass(frozen=True)
class Sample:
    """The training rows the driver holds, and how many rows there were in all."""

    datasets: Datasets
    total_rows: dict
    extent: LedgerExtent
    cutoffs: list[pd.Timestamp]

    def fingerprint(self, sample_rows: int) -> str:
        """The ledger's hash, or, when rows were left out, a hash of it and the budget: a model is tied to
        the rows it saw, and a champion judged on another sample is re-backtested on this one."""
        if all(len(getattr(self.datasets, kind)) == self.total_rows[kind] for kind in STRATUM_LABELS):
            return self.extent.fingerprint
        return hashlib.sha256(f"{self.extent.fingerprint} sample {sample_rows}".encode()).hexdigest()[:16]

    def facts(self) -> dict:
        """The sample as `metrics.json` records it: rows sampled and rows in all, per kind."""
        return {kind: {"rows": len(getattr(self.datasets, kind)), "of": self.total_rows[kind]}
                for kind in STRATUM_LABELS}


def checked_partitioned(path: str | Path) -> int:
    """The number of buckets of the partitioned ledger at `path`; `BadInput` for any other ledger."""
    if not is_partitioned(path):
        raise BadInput(f"--engine dask reads a ledger partitioned by customer; {path} is not one "
                       "(write it with partitions, or use --engine pandas)")
    return partition_count(path)


def sample_from_partitions(client, path: str | Path, *, config: FeatureConfig, sample_rows: int = DEFAULT_SAMPLE_ROWS,
                           until: pd.Timestamp | None = None) -> Sample:
    """The training rows of the partitioned ledger at `path`, built bucket by bucket on the cluster of
    `client`, and the stratified sample of at most `sample_rows` rows of each kind gathered here."""
    buckets = range(checked_partitioned(path))
    path = Path(path).resolve()  # the workers read it: an absolute path, on storage they share with us
    summaries = client.gather(client.map(partition_summary, [str(path)] * len(buckets), buckets,
                                         until=until, pure=False))
    extent = ledger_extent(summaries)
    cutoffs = month_ends_between(extent.first_invoice, extent.observation_end)  # = monthly_cutoffs(whole ledger)
    if not cutoffs:
        raise LedgerError(Problem("invoices", None, None, "less than the warm-up months of history: no cutoff "
                                  "to build training rows at"), title="cannot train")
    active = {s.bucket: bucket_cutoffs for s in summaries if (bucket_cutoffs := partition_cutoffs(s, cutoffs))}
    # Peer features need every customer: each bucket's peer sums per cutoff first, added here, then shared.
    peer_parts = client.gather([client.submit(bucket_peer_sums, str(path), bucket, bucket_cutoffs, config, until,
                                              pure=False) for bucket, bucket_cutoffs in active.items()])
    [peers] = client.scatter([added_peer_sums_by_cutoff(peer_parts, cutoffs)], broadcast=True, hash=False)
    parts = {bucket: client.submit(bucket_datasets, str(path), bucket, bucket_cutoffs, extent.observation_end,
                                   config, until, peers, pure=False)
             for bucket, bucket_cutoffs in active.items()}
    sizes = dict(zip(parts, client.gather([client.submit(stratum_sizes, part, pure=False)
                                           for part in parts.values()]), strict=True))
    totals = {kind: int(sum(size[kind].sum() for size in sizes.values())) for kind in STRATUM_LABELS}
    quotas = {kind: None if totals[kind] <= sample_rows
              else sample_quotas({bucket: size[kind] for bucket, size in sizes.items()}, sample_rows)
              for kind in STRATUM_LABELS}
    taken = client.gather([client.submit(sampled_datasets, part, {
        kind: None if quotas[kind] is None else quotas[kind][bucket] for kind in STRATUM_LABELS}, pure=False)
        for bucket, part in parts.items()])
    del parts  # the full rows leave the workers' memory
    datasets = Datasets(
        *[in_key_order(pd.concat([getattr(t, kind) for t in taken], ignore_index=True), ROW_KEYS[kind])
          for kind in STRATUM_LABELS], extent.observation_end)
    return Sample(datasets, totals, extent, cutoffs)


@dataclass
class ClusterFits:
    """The fits of one training run on a Dask cluster: the sample scattered once, each backtest origin and
    the final fit a task of its own on it."""

    client: object
    _scattered: dict = field(default_factory=dict)
    _final: dict = field(default_factory=dict)

    def scattered(self, datasets: Datasets):
        """The future of `datasets` on the cluster, sent once however often it is used."""
        if id(datasets) not in self._scattered:
            self._scattered[id(datasets)] = (datasets, self.client.scatter(datasets))
        return self._scattered[id(datasets)][1]

    def backtest(self, datasets: Datasets, origins: Sequence[pd.Timestamp], settings: ModelSettings | None = None,
                 progress: Callable[[str], None] | None = None, recipes: Mapping | None = None) -> BacktestResult:
        """`run_backtest` with its origins as separate tasks; the same result."""
        settings = settings or ModelSettings()
        rows = self.scattered(datasets)
        futures = [self.client.submit(origin_result, rows, origin, settings, recipes, pure=False) for origin in origins]
        results = []
        for origin, future in zip(origins, futures, strict=True):
            if progress:
                progress(f"origin {origin:%Y-%m-%d}")
            results.append(future.result())
        return combined_backtest(datasets, origins, results)

    def start_final_fit(self, datasets: Datasets, settings: ModelSettings) -> None:
        """Start the final fit now, so that it runs beside the backtest's origins."""
        from training.pipeline import final_models

        self._final[(id(datasets), settings)] = self.client.submit(final_models, self.scattered(datasets), settings,
                                                                   pure=False)

    def final_fit(self, datasets: Datasets, settings: ModelSettings) -> FittedModels:
        """`final_models` as a task (the one started earlier, when it was)."""
        if (id(datasets), settings) not in self._final:
            self.start_final_fit(datasets, settings)
        return self._final.pop((id(datasets), settings)).result()


def backtest_partitioned(client, path: str | Path, *, until: pd.Timestamp | None = None, origins: int = 3,
                         settings: ModelSettings | None = None, sample_rows: int = DEFAULT_SAMPLE_ROWS,
                         progress: Callable[[str], None] | None = None, fits: ClusterFits | None = None,
                         start_final_fit: bool = False):
    """`backtest_ledger` for a partitioned ledger on a Dask cluster: rows per bucket, a stratified sample of
    at most `sample_rows` rows of each kind, origins as tasks. Equal to the pandas engine's when the sample
    is all the rows. `metrics["sample"]` says how many rows were sampled of how many."""
    from training.pipeline import BacktestRun, chosen_origins

    settings = settings or ModelSettings()
    fits = fits or ClusterFits(client)
    started = time.perf_counter()
    sample = sample_from_partitions(client, path, config=FeatureConfig(late_grace_days=settings.late_grace_days),
                                    sample_rows=sample_rows, until=until)
    built = time.perf_counter()
    chosen = chosen_origins(sample.cutoffs, sample.datasets.observation_end, origins)
    if start_final_fit:
        fits.start_final_fit(sample.datasets, settings)
    result = fits.backtest(sample.datasets, chosen, settings, progress=progress)
    result.metrics["sample"] = sample.facts()
    return BacktestRun(None, sample.datasets, result,
                       {"datasets": built - started, "backtest": time.perf_counter() - built},
                       fingerprint=sample.fingerprint(sample_rows))


def train_partitioned(client, path: str | Path, tracking_uri: str, *, until: pd.Timestamp | None = None,
                      settings: ModelSettings | None = None, report_dir: Path | None = None, origins: int = 3,
                      sample_rows: int = DEFAULT_SAMPLE_ROWS, progress: Callable[[str], None] | None = None):
    """`train_and_register` for a partitioned ledger on a Dask cluster: the backtest, the final fit and any
    champion's re-backtest run as tasks on the sample; logging, the gate and the registry are unchanged."""
    from training.pipeline import register_models

    settings = settings or ModelSettings()
    fits = ClusterFits(client)
    run = backtest_partitioned(client, path, until=until, origins=origins, settings=settings,
                               sample_rows=sample_rows, progress=progress, fits=fits, start_final_fit=True)
    return register_models(run, tracking_uri, settings=settings, report_dir=report_dir, progress=progress,
                           fit=fits.final_fit, backtest=fits.backtest)
