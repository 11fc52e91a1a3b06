"""The provision policy from YAML: look-back, buckets, segments, the forward-looking adjustment, LGD."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from configs import config_path, validated_policy
from ledger.errors import BadInput

DEFAULT_PROVISION_POLICY = config_path("provision", "default.yaml")


class ProvisionPolicyError(BadInput, ValueError):
    """A provision policy file that cannot be read or does not validate."""


class ProvisionPolicy(BaseModel):
    """See configs/provision/default.yaml for what each setting means. Unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "default"
    lookback_months: int = Field(24, ge=2, le=120)
    aging_limits: tuple[int, ...] = (0, 30, 60, 90, 120)
    by_segment: bool = True
    min_observations: int = Field(30, ge=1)
    forward_looking_adjustment: float = Field(0.0, gt=-1, le=5)
    disputed: Literal["bucket"] | float = "bucket"
    promised_factor: float = Field(1.0, ge=0, le=1)
    lgd_outcome_months: int = Field(12, ge=1, le=60)
    lgd_min_observations: int = Field(10, ge=1)
    default_lgd: float = Field(0.45, ge=0, le=1)
    backtest_horizon_months: int = Field(12, ge=1, le=36)

    @field_validator("aging_limits")
    @classmethod
    def _increasing(cls, limits: tuple[int, ...]) -> tuple[int, ...]:
        if not limits or limits[0] != 0 or any(high <= low for low, high in itertools.pairwise(limits)):
            raise ValueError("must start at 0 and increase strictly, e.g. [0, 30, 60, 90, 120]")
        return limits

    @field_validator("disputed")
    @classmethod
    def _a_rate(cls, value):
        if not isinstance(value, str) and not 0 <= value <= 1:
            raise ValueError("must be 'bucket' or a loss rate from 0 to 1")
        return value


def load_provision_policy(path: str | Path | None = None) -> ProvisionPolicy:
    """Read and validate a provision policy YAML (default `configs/provision/default.yaml`)."""
    return validated_policy(path or DEFAULT_PROVISION_POLICY, ProvisionPolicy, ProvisionPolicyError)
