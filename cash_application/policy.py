"""The cash-application policy: thresholds, tolerances and the bounds of the subset search, from YAML."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from configs import config_path, validated_policy
from ledger.errors import BadInput

DEFAULT_POLICY = config_path("cash_application", "default.yaml")


class MatchPolicyError(BadInput, ValueError):
    """A cash-application policy file that cannot be read or does not validate."""


class MatchPolicy(BaseModel):
    """When a proposal is applied without review (`auto_threshold`), shown (`proposal_threshold`), and how
    far the search for a matching set of open items goes. Unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "default"
    auto_threshold: float = Field(0.97, gt=0, le=1, description="Confidence from which a match is applied.")
    proposal_threshold: float = Field(0.5, gt=0, le=1, description="Confidence from which a match is proposed.")
    amount_tolerance: float = Field(0.01, ge=0, description="Largest difference still counted as exact.")
    discount_rates: tuple[float, ...] = Field((0.02, 0.03), description="Cash discounts customers take.")
    discount_tolerance: float = Field(0.5, ge=0, description="Tolerance of an amount after discount.")
    max_items: int = Field(8, ge=1, le=12, description="Most open items in one candidate set.")
    max_open_items: int = Field(40, ge=1, le=200, description="Oldest open items the subset search looks at.")
    max_nodes: int = Field(5_000, ge=100, description="Partial sets the subset search visits per payment.")
    name_score_threshold: float = Field(88, ge=50, le=100, description="Payer-name similarity that identifies.")
    reference_exact_confidence: float = Field(0.99, ge=0, le=1, description=(
        "Least confidence of a set that is exactly the open items the memo line quotes and exactly the amount."))
    reference_short_confidence: float = Field(0.6, ge=0, le=1, description=(
        "Least confidence of a set that is exactly the quoted open items, paid short."))
    amount_unique_confidence: float = Field(0.8, ge=0, le=1, description=(
        "Least confidence of the one open item of exactly the amount, when no other set is exactly it."))

    @model_validator(mode="after")
    def _thresholds_in_order(self) -> MatchPolicy:
        if self.proposal_threshold > self.auto_threshold:
            raise ValueError("proposal_threshold must not be above auto_threshold")
        if any(not 0 < rate < 0.5 for rate in self.discount_rates):
            raise ValueError("discount_rates are shares of the open amount, each between 0 and 0.5")
        return self


def load_match_policy(path: str | Path = DEFAULT_POLICY) -> MatchPolicy:
    """Read and validate a cash-application policy YAML; `MatchPolicyError` names the file and the problem."""
    return validated_policy(path, MatchPolicy, MatchPolicyError)
