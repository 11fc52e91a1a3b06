"""The as-of snapshot builder: features at one date, and training frames (features + labels) at many.

Every feature is computed from `known_at(ledger, as_of)` only; labels come from `features.labels`,
which reads the full ledger, and are joined afterwards by key. String ids are turned into integer
codes once per call (`features.keys`) and back in the output, so the many cutoffs of a training frame
join and group integers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from features.asof import known_at
from features.collections import promise_status
from features.config import FeatureConfig
from features.customer import customer_features
from features.invoice import invoice_features
from features.keys import encode_keys
from features.labels import customer_labels, invoice_labels, last_event_date
from features.peers import customer_sums, lateness_items, peer_groups, peer_sums
from features.settlement import document_state
from ledger import Ledger, LedgerError, Problem


def feature_frames(ledger: Ledger, as_of: pd.Timestamp, config: FeatureConfig | None = None,
                   peers: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both feature frames at `as_of` from one pass: (per open document, per known customer).

    `peers`: the peer sums of all customers at `as_of` when `ledger` holds only some of them (one bucket
    of a partitioned ledger: `added_peer_sums` of every bucket's `peer_sums_at`); None for a whole ledger."""
    config = config or FeatureConfig()
    as_of = _checked_cutoff(ledger, as_of)
    encoded, keys = encode_keys(ledger)
    return tuple(keys.decode(frame) for frame in _feature_frames(encoded, as_of, config, peers))


def features_at(ledger: Ledger, as_of: pd.Timestamp, config: FeatureConfig | None = None,
                peers: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per document open at `as_of`: invoice_id, customer_id, invoice and customer features."""
    return feature_frames(ledger, as_of, config, peers)[0]


def peer_sums_at(ledger: Ledger, as_of: pd.Timestamp, config: FeatureConfig | None = None) -> pd.DataFrame:
    """The peer sums (`features.peers.peer_sums`) of the customers of `ledger` known at `as_of`; a
    bucket's sums, added over the buckets (`features.peers.added_peer_sums`), are the whole ledger's."""
    config = config or FeatureConfig()
    as_of = pd.Timestamp(as_of).normalize()
    known = known_at(ledger, as_of)
    state = document_state(known, as_of, config.money_tolerance)
    items = lateness_items(state, as_of, config.recency_halflife_days, config.late_grace_days)
    return peer_sums(peer_groups(known.customers), customer_sums(items))


def customer_features_at(ledger: Ledger, as_of: pd.Timestamp, config: FeatureConfig | None = None) -> pd.DataFrame:
    """One row per customer known at `as_of`: customer_id and customer features."""
    return feature_frames(ledger, as_of, config)[1]


def build_snapshots(ledger: Ledger, cutoffs: Iterable[pd.Timestamp], config: FeatureConfig | None = None,
                    observation_end: pd.Timestamp | None = None, progress: bool = False,
                    peers: Mapping[pd.Timestamp, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Invoice training frame: per cutoff, the open documents' features and labels, plus `cutoff`.
    `peers`: per cutoff, the peer sums of all customers (see `feature_frames`); None for a whole ledger."""
    return _snapshots(ledger, cutoffs, config, observation_end, progress, level="invoice", peers=peers)


def build_customer_snapshots(ledger: Ledger, cutoffs: Iterable[pd.Timestamp], config: FeatureConfig | None = None,
                             observation_end: pd.Timestamp | None = None, progress: bool = False,
                             peers: Mapping[pd.Timestamp, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Customer training frame: per cutoff, the known customers' features and labels, plus `cutoff`."""
    return _snapshots(ledger, cutoffs, config, observation_end, progress, level="customer", peers=peers)


def _feature_frames(ledger: Ledger, as_of: pd.Timestamp, config: FeatureConfig,
                    peers: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two frames from the ledger as known at `as_of` (keys left as they come: ids or codes)."""
    known = known_at(ledger, as_of)
    state = document_state(known, as_of, config.money_tolerance)
    status = promise_status(known.promises, known.payment_applications, known.payments, known.writeoffs,
                            as_of, config.money_tolerance)
    customers = customer_features(known, state, status, as_of, config, peers)
    invoices = invoice_features(known, state, status, as_of, config)
    return invoices.merge(customers, on="customer_id", how="left", validate="many_to_one"), customers


def _snapshots(ledger: Ledger, cutoffs: Iterable[pd.Timestamp], config: FeatureConfig | None,
               observation_end: pd.Timestamp | None, progress: bool, level: str,
               peers: Mapping[pd.Timestamp, pd.DataFrame] | None = None) -> pd.DataFrame:
    config = config or FeatureConfig()
    cutoffs = [_checked_cutoff(ledger, cutoff) for cutoff in cutoffs]
    end = last_event_date(ledger) if observation_end is None else pd.Timestamp(observation_end)
    # Encoded once for all cutoffs: each cutoff then joins and groups integers.
    encoded, keys = encode_keys(ledger)
    key, labelled = ("invoice_id", invoice_labels) if level == "invoice" else ("customer_id", customer_labels)
    frames = []
    for cutoff in _each(cutoffs, progress, f"{level} snapshots"):
        invoices, customers = _feature_frames(encoded, cutoff, config, None if peers is None else peers[cutoff])
        features = invoices if level == "invoice" else customers
        labels = labelled(encoded, cutoff, end, config)
        frame = features.merge(labels, on=key, how="left", validate="one_to_one")
        frames.append(keys.decode(frame).assign(cutoff=cutoff))
    return _stack(frames)


def first_invoice_date(ledger: Ledger) -> pd.Timestamp | None:
    """The earliest invoice date in the ledger (None when it has no invoices)."""
    first = ledger.invoices["invoice_date"].min()
    return None if pd.isna(first) else first


def _checked_cutoff(ledger: Ledger, as_of: pd.Timestamp) -> pd.Timestamp:
    """`as_of` as a calendar date; a clear error when nothing was known yet on that date."""
    as_of = pd.Timestamp(as_of)
    if as_of != as_of.normalize():
        raise LedgerError(Problem("as_of", None, None, f"expected a calendar date, got {as_of}"), title="bad cutoff")
    first = first_invoice_date(ledger)
    if first is None or as_of < first:
        since = "the ledger has no invoices" if first is None else f"the first invoice is dated {first:%Y-%m-%d}"
        raise LedgerError(Problem("as_of", None, None, f"{as_of:%Y-%m-%d} is before any data ({since})"),
                          title="bad cutoff")
    return as_of


def _each(cutoffs: Iterable[pd.Timestamp], progress: bool, description: str) -> Iterable[pd.Timestamp]:
    cutoffs = [pd.Timestamp(cutoff) for cutoff in cutoffs]
    if not progress:
        return cutoffs
    from rich.progress import track

    return track(cutoffs, description=f"Building {description}", transient=True)


def _stack(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        raise ValueError("no cutoffs given")
    stacked = pd.concat(frames, ignore_index=True)
    return stacked[["cutoff", *[column for column in stacked.columns if column != "cutoff"]]]
