"""Model cards: bootstrap intervals over customers, and a card per model with its facts and metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from training.model_card import (
    USES,
    bootstrap_interval,
    card_html,
    weighted_brier,
    weighted_mae,
    weighted_roc_auc,
)


def scored(customers: int, rows_per_customer: int, seed: int = 0) -> pd.DataFrame:
    """Rows whose score separates the classes a little, customers sharing their outcome tendency."""
    rng = np.random.default_rng(seed)
    customer = np.repeat([f"C{i}" for i in range(customers)], rows_per_customer)
    tendency = np.repeat(rng.normal(size=customers), rows_per_customer)
    y = (tendency + rng.normal(size=len(customer)) > 0).astype(int)
    return pd.DataFrame({"customer_id": customer, "y": y, "p": tendency + rng.normal(scale=2, size=len(customer))})


def auc_of(rows: pd.DataFrame, weights: np.ndarray) -> float:
    return weighted_roc_auc(rows["y"].to_numpy(), rows["p"].to_numpy(), weights)


def test_a_weighted_metric_equals_the_metric_on_repeated_rows():
    rows = scored(20, 5)
    weights = np.resize([0.0, 1.0, 2.0, 3.0], len(rows))
    repeated = rows.loc[rows.index.repeat(weights.astype(int))]
    assert auc_of(rows, weights) == pytest.approx(roc_auc_score(repeated["y"], repeated["p"]))
    tied = rows.assign(p=rows["p"].round(0))  # many ties: each counts half, as in scikit-learn
    repeated = tied.loc[tied.index.repeat(weights.astype(int))]
    assert auc_of(tied, weights) == pytest.approx(roc_auc_score(repeated["y"], repeated["p"]))
    assert weighted_brier(rows["y"].to_numpy(), np.full(len(rows), 0.5), weights) == pytest.approx(0.25)
    assert weighted_mae(np.array([1.0, 5.0]), np.array([2.0, 2.0]), np.array([3.0, 1.0])) == pytest.approx(1.5)


def test_the_interval_holds_the_value_and_narrows_with_more_customers():
    few, many = scored(15, 10), scored(300, 10)
    low_few, high_few = bootstrap_interval(auc_of, few, few["customer_id"], draws=200)
    low_many, high_many = bootstrap_interval(auc_of, many, many["customer_id"], draws=200)
    assert low_few <= auc_of(few, np.ones(len(few))) <= high_few
    assert low_many <= auc_of(many, np.ones(len(many))) <= high_many
    assert high_many - low_many < (high_few - low_few) / 2


def test_customers_are_drawn_whole():
    # Two customers, each all one class: a draw of one customer has one class and no AUC, and the interval
    # comes from the draws holding both; had rows been drawn one by one, nearly every draw would hold both.
    rows = pd.DataFrame({"customer_id": ["A"] * 50 + ["B"] * 50, "y": [0] * 50 + [1] * 50,
                         "p": np.r_[np.linspace(0, 0.6, 50), np.linspace(0.4, 1, 50)]})
    seen = []
    bootstrap_interval(lambda frame, weights: seen.append(set(frame.loc[weights > 0, "customer_id"])) or 0.5,
                       rows, rows["customer_id"], draws=100)
    assert {"A"} in seen and {"B"} in seen and {"A", "B"} in seen


def test_a_card_names_its_use_and_what_it_must_not_be_used_for():
    card = {**USES["late"], "model": "late", "protocol": "month_end", "training_from": "2022-04-30",
            "test_origins": ["2023-06-30"], "observation_end": "2023-12-31", "rows_tested": 10,
            "customers_tested": 3, "features": ["days_past_due"], "settings": {"num_leaves": 15},
            "trained": True, "not_trained_because": None,
            "metrics": [{"who": "model", "metric": "roc_auc", "value": 0.8, "low": 0.7, "high": 0.9}]}
    html = card_html(card)
    assert "Must not be used to" in html and "credit limits" in html
    assert "0.8000" in html and "0.7000 - 0.9000" in html and "num_leaves=15" in html
