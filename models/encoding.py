"""Turning a feature frame into a model matrix, with the fitted column list and category levels kept
inside the estimator so training and serving can never encode differently."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted


class FrameEncoder(TransformerMixin, BaseEstimator):
    """Select `features` (all columns when None) in a fixed order; text columns become
    pandas categoricals with the levels seen in fit (unseen levels become missing)."""

    def __init__(self, features: Sequence[str] | None = None):
        self.features = features

    def fit(self, X: pd.DataFrame, y=None) -> FrameEncoder:
        columns = list(self.features) if self.features is not None else list(X.columns)
        missing = [c for c in columns if c not in X.columns]
        if missing:
            raise ValueError(f"feature frame lacks columns: {', '.join(missing)}")
        self.feature_names_in_ = np.array(columns, dtype=object)
        self.categories_ = {
            column: sorted(X[column].dropna().astype(str).unique())
            for column in columns
            if not _is_numeric(X[column])
        }
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "feature_names_in_")
        columns = list(self.feature_names_in_)
        missing = [c for c in columns if c not in X.columns]
        if missing:
            raise ValueError(f"feature frame lacks columns: {', '.join(missing)}")
        matrix = {}
        for column in columns:
            if column in self.categories_:
                values = X[column].astype("string").astype(object).where(X[column].notna())
                matrix[column] = pd.Categorical(values, categories=self.categories_[column])
            elif X[column].dtype.kind in "fiub":
                # Already numbers (numpy or nullable): a direct copy, the common and fast case.
                matrix[column] = X[column].to_numpy(dtype=float, na_value=np.nan)
            else:
                numbers = pd.to_numeric(X[column], errors="coerce").astype("Float64")
                matrix[column] = numbers.to_numpy(dtype=float, na_value=np.nan)
        return pd.DataFrame(matrix, index=X.index)


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)


def time_split(cutoffs: pd.Series, later_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (earlier, later): the latest `later_share` of distinct cutoffs form the later slice.

    With a single cutoff the rows are split by position instead, so a tiny frame can still be fitted."""
    cutoffs = pd.to_datetime(pd.Series(cutoffs)).reset_index(drop=True)
    distinct = np.sort(cutoffs.unique())
    if len(distinct) >= 2:
        n_later = min(max(1, round(len(distinct) * later_share)), len(distinct) - 1)
        later = cutoffs.isin(distinct[-n_later:]).to_numpy()
    else:
        later = np.arange(len(cutoffs)) >= int(len(cutoffs) * (1 - later_share))
    return ~later, later
