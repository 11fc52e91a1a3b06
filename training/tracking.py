"""MLflow: log each training run, register its model, and move the `champion` alias only through the gate.

The default store is local and needs no server: a SQLite database and an artifact folder beside it,
`Settings.tracking_uri` (`ARRISK_TRACKING_URI`, default `HOME/mlflow/mlflow.db`). Pass any other tracking
URI (e.g. a server) instead.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from configs.settings import Settings, sqlite_path

EXPERIMENT = "ar-risk"
CHAMPION = "champion"


def default_tracking_uri(settings: Settings | None = None) -> str:
    """`settings.tracking_uri` (default: `Settings.from_environ()`, so `ARRISK_TRACKING_URI`, else SQLite in
    `HOME/mlflow/`), with the folder of a local SQLite store created."""
    uri = (Settings.from_environ() if settings is None else settings).tracking_uri
    store = sqlite_path(uri)
    if store is not None:
        store.parent.mkdir(parents=True, exist_ok=True)
    return uri


def quiet_mlflow() -> None:
    """No telemetry (DESIGN §8: no network at run time): called before MLflow is imported or used, since
    the CLI and the service set it too but a library caller may not."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def experiment_id(tracking_uri: str, name: str = EXPERIMENT) -> str:
    """The experiment's id, created (with artifacts next to a local store) when missing."""
    quiet_mlflow()
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    existing = mlflow.get_experiment_by_name(name)
    if existing:
        return existing.experiment_id
    store = sqlite_path(tracking_uri)
    location = (store.parent / "artifacts").resolve().as_uri() if store is not None else None
    return mlflow.create_experiment(name, artifact_location=location)


@dataclass(frozen=True)
class GateDecision:
    """Whether a candidate may become champion, and why, judged on the latest backtest."""

    promote: bool
    reason: str
    candidate: dict = field(default_factory=dict)
    rivals: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"promote": self.promote, "reason": self.reason, "candidate": self.candidate, "rivals": self.rivals}


def gate(candidate: Mapping[str, float], rivals: Mapping[str, Mapping[str, float]],
         rules: Mapping[str, bool]) -> GateDecision:
    """Promote only when the candidate strictly beats every rival (baselines, current champion) on
    every metric in `rules` (metric -> higher is better). A rival's missing metric does not count."""
    failures = []
    for metric, higher_is_better in rules.items():
        mine = candidate.get(metric, float("nan"))
        if pd.isna(mine):
            failures.append(f"{metric} undefined")
            continue
        for name, values in rivals.items():
            theirs = values.get(metric, float("nan"))
            if pd.notna(theirs) and not (mine > theirs if higher_is_better else mine < theirs):
                failures.append(f"{metric} {mine:.4f} does not beat {name} ({theirs:.4f})")
    kept = {metric: candidate.get(metric) for metric in rules}
    rival_values = {name: {metric: values.get(metric) for metric in rules} for name, values in rivals.items()}
    if failures:
        return GateDecision(False, "; ".join(failures), kept, rival_values)
    return GateDecision(True, f"beats {', '.join(sorted(rivals)) or 'no rival'} on {', '.join(rules)}",
                        kept, rival_values)


def log_model_run(*, tracking_uri: str, model_name: str, model, params: Mapping, metrics: Mapping[str, float],
                  features: Mapping[str, str], ledger_fingerprint: str, input_example: pd.DataFrame,
                  decision: GateDecision, report: Path | None = None) -> str:
    """Log one trained model with everything needed to audit it, register it, and move the champion
    alias when the gate says so. Returns the registered version."""
    quiet_mlflow()
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    exp_id = experiment_id(tracking_uri)
    with mlflow.start_run(experiment_id=exp_id, run_name=model_name):
        mlflow.set_tags({"model": model_name, "ledger_fingerprint": ledger_fingerprint})
        chosen, search = chosen_settings(model)
        logged = dict(params) | {f"chosen.{key}": value for key, value in chosen.items()}
        mlflow.log_params({key: str(value)[:500] for key, value in logged.items()})
        mlflow.log_metrics({key: float(value) for key, value in metrics.items() if pd.notna(value)})
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "features.json").write_text(json.dumps(dict(features), indent=2))
            (Path(folder) / "gate.json").write_text(json.dumps(decision.as_dict(), indent=2, default=str))
            if chosen:
                (Path(folder) / "chosen_settings.json").write_text(
                    json.dumps({"chosen": chosen, "candidates": search}, indent=2, default=str))
            mlflow.log_artifacts(folder)
        if report is not None and report.exists():
            mlflow.log_artifact(str(report), artifact_path="backtest")
        signature = infer_signature(input_example, _example_output(model, input_example))
        info = mlflow.sklearn.log_model(model, name="model", input_example=input_example, signature=signature,
                                        registered_model_name=model_name,
                                        skops_trusted_types=trusted_types(model),
                                        pip_requirements=model_requirements())
        version = str(info.registered_model_version)
        mlflow.set_tag("promoted", str(decision.promote))
    client = MlflowClient(tracking_uri=tracking_uri)
    if decision.promote:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    return version


def chosen_settings(model) -> tuple[dict, list]:
    """The settings a model chose inside its fit (tree settings, rounds, calibration) and the table of
    candidates it chose them from; empty for a model that chooses nothing."""
    fitted = getattr(model, "classifier_", model)
    return dict(getattr(fitted, "settings_", {})), list(getattr(fitted, "search_", []))


def model_requirements() -> list[str]:
    """Pinned requirements of a logged model, stated rather than inferred (inference loads the model in a
    subprocess, which costs seconds per model)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("lightgbm", "scikit-learn", "pandas", "numpy", "skops")]


# Loading a model trusts only types from these packages (skops refuses anything else).
TRUSTED_MODULES = ("models.", "lightgbm.", "sklearn.", "numpy.", "scipy.", "collections.", "builtins.")


def trusted_types(model) -> list[str]:
    """The types in the model that skops must be told to trust; an error for any type from elsewhere."""
    import skops.io

    found = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    foreign = [name for name in found if not name.startswith(TRUSTED_MODULES)]
    if foreign:
        raise ValueError(f"model holds types from untrusted packages: {', '.join(foreign)}")
    return found


def champion_version(tracking_uri: str, model_name: str) -> str | None:
    """The registered version holding the champion alias, or None."""
    quiet_mlflow()
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        return str(client.get_model_version_by_alias(model_name, CHAMPION).version)
    except MlflowException:
        return None


def champion_run(tracking_uri: str, model_name: str) -> dict | None:
    """The champion's logged ledger fingerprint, params and metrics, or None without a champion."""
    quiet_mlflow()
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        version = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None
    data = client.get_run(version.run_id).data
    return {"fingerprint": data.tags.get("ledger_fingerprint"), "params": dict(data.params),
            "metrics": dict(data.metrics)}


def champion_trained_until(tracking_uri: str, model_name: str) -> pd.Timestamp | None:
    """The last day the champion's training data reached (its logged `trained_until`), or None without one."""
    trained = (champion_run(tracking_uri, model_name) or {}).get("params", {}).get("trained_until")
    return pd.Timestamp(trained) if trained else None


def load_champion(tracking_uri: str, model_name: str):
    """The champion model object, or None when no version has been promoted."""
    quiet_mlflow()
    import mlflow
    import mlflow.sklearn

    if champion_version(tracking_uri, model_name) is None:
        return None
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.sklearn.load_model(f"models:/{model_name}@{CHAMPION}")


def _example_output(model, example: pd.DataFrame):
    if hasattr(model, "predict_proba"):
        return model.predict_proba(example)
    return model.predict_quantiles(example)
