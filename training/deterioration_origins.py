"""The deterioration model's probabilities at past dates as a backtest needs them: at each origin, a model
trained only on the customer snapshots before it, with their labels as known then (censored at the origin),
scores the customers at the origin. Used by the provision backtest (issue 23)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from features import FeatureConfig
from features.labels import last_event_date
from ledger import Ledger
from models.boosting import NotEnoughLabels
from training.backtest import ModelSettings
from training.datasets import censor_customer_labels, customer_rows, monthly_cutoffs


def deterioration_at_origins(ledger: Ledger, config: FeatureConfig | None = None,
                             settings: ModelSettings | None = None) -> Callable[[pd.Timestamp], pd.Series]:
    """A function origin -> P(deteriorate) by customer_id at that month end, from a model fitted on the
    snapshots before it (the snapshots are built once, on every month end of the ledger); None at an origin
    whose history holds only one class."""
    config = config or FeatureConfig()
    settings = settings or ModelSettings()
    rows = customer_rows(ledger, monthly_cutoffs(ledger), config, last_event_date(ledger))
    fitted: dict[pd.Timestamp, pd.Series | None] = {}

    def at(origin: pd.Timestamp) -> pd.Series | None:
        origin = pd.Timestamp(origin).normalize()
        if origin not in fitted:
            known = censor_customer_labels(rows[rows["cutoff"] < origin], origin, config.deterioration_horizon_days)
            known = known[known["deteriorates"].notna()]
            scored = rows[rows["cutoff"] == origin]
            if scored.empty:
                raise ValueError(f"{origin:%Y-%m-%d} is not a month end of the ledger's snapshots")
            try:
                model = settings.deterioration_model().fit(known, known["deteriorates"].astype(int))
            except NotEnoughLabels:  # too little history before this origin: no model-based provision there
                fitted[origin] = None
            else:
                fitted[origin] = pd.Series(model.predict_proba(scored)[:, 1], index=scored["customer_id"].to_numpy())
        return fitted[origin]

    return at
