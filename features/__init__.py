"""Point-in-time features (DESIGN.md §4): everything as of an explicit date, from what was known then.

`known_at` is the one as-of filter; `features_at` / `customer_features_at` build the model inputs;
`build_snapshots` adds labels (from `features.labels`, never imported by the feature modules) for
many cutoffs; `feature_registry` names and describes every feature column.
"""

from features.asof import known_at
from features.config import FeatureConfig
from features.peers import added_peer_sums
from features.registry import Feature, feature_names, feature_registry, registry_frame
from features.snapshots import (
    build_customer_snapshots,
    build_snapshots,
    customer_features_at,
    feature_frames,
    features_at,
    peer_sums_at,
)

__all__ = [
    "Feature",
    "FeatureConfig",
    "added_peer_sums",
    "build_customer_snapshots",
    "build_snapshots",
    "customer_features_at",
    "feature_frames",
    "feature_names",
    "feature_registry",
    "features_at",
    "known_at",
    "peer_sums_at",
    "registry_frame",
]
