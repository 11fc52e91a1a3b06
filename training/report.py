"""The backtest report: one self-contained HTML page (tables and PNG plots inlined, no network)."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping

import jinja2
import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from training.metrics import calibration_table, lift_by_decile

TEMPLATE = jinja2.Template(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ar-risk backtest</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
.plots figure { margin: 0; } .plots img { width: 520px; }
.note { color: #555; font-size: 0.9em; }
</style></head><body>
<h1>ar-risk backtest</h1>
<p class="note">Ledger {{ fingerprint }}; {% if protocol == "at_issue" %}at issue: each invoice scored once, on
its invoice date; trained on the invoices issued by {{ cutoffs | join(", ") }} (the earliest share), with labels as
known then, tested on the later ones with outcomes seen in full.{% else %}rolling origin with test cutoffs
{{ cutoffs | join(", ") }}; training on earlier cutoffs only, with labels censored at each origin.{% endif %}
Rows: {{ rows }}.</p>
{% for section in sections %}
<h2>{{ section.title }}</h2>
<p class="note">{{ section.note }}</p>
{{ section.table }}
<div class="plots">{% for caption, image in section.plots %}
<figure><img alt="{{ caption }}" src="data:image/png;base64,{{ image }}"><figcaption>{{ caption }}</figcaption></figure>
{% endfor %}</div>
{% endfor %}
</body></html>
""",
    autoescape=False,
)


def render_report(metrics: Mapping, sections: list[dict], fingerprint: str) -> str:
    """The HTML page; `sections` are dicts with title, note, table (HTML) and plots [(caption, base64 PNG)]."""
    rows = ", ".join(f"{name} {count:,}" for name, count in metrics.get("rows", {}).items())
    return TEMPLATE.render(sections=sections, cutoffs=metrics.get("cutoffs", []), rows=rows,
                           fingerprint=fingerprint, protocol=metrics.get("protocol", "month_end"))


def metrics_table(model_metrics: Mapping, baselines: Mapping[str, Mapping]) -> str:
    """Model and baselines side by side, one column per metric (lists shown as their mean)."""
    rows = {"model": model_metrics, **{f"baseline: {name}": values for name, values in baselines.items()}}
    frame = pd.DataFrame({name: {k: _scalar(v) for k, v in values.items() if not _records(v)}
                          for name, values in rows.items()}).T
    return frame.to_html(float_format=lambda v: f"{v:.4f}", na_rep="-", border=0)


def _records(value) -> bool:
    """A list of tables (e.g. the late model's `per_origin`): no single number to show in the table."""
    return isinstance(value, list | tuple) and any(isinstance(v, dict) for v in value)


def _scalar(value):
    if isinstance(value, list | tuple):
        numbers = [v for v in value if v is not None and not (isinstance(v, float) and math.isnan(v))]
        return float(np.mean(numbers)) if numbers else float("nan")
    return value


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6.2, 4.2), dpi=90)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def calibration_plot(y: np.ndarray, scores: Mapping[str, np.ndarray]) -> str:
    """Observed rate against mean predicted probability per bin, for each scorer."""
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", label="perfect")
    for name, p in scores.items():
        if np.isnan(np.asarray(p, dtype=float)).any():  # an untrained model has no scores
            continue
        table = calibration_table(y, p)
        ax.plot(table["mean_predicted"], table["observed"], marker="o", label=name)
    ax.set(xlabel="mean predicted P(late)", ylabel="observed late share", title="Calibration")
    ax.legend(fontsize=8)
    return _png(fig)


def roc_plot(y: np.ndarray, scores: Mapping[str, np.ndarray]) -> str:
    """ROC curves of each scorer."""
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--")
    for name, p in scores.items():
        if len(np.unique(y)) == 2 and not np.isnan(np.asarray(p, dtype=float)).any():  # an untrained model has none
            fpr, tpr, _ = roc_curve(np.asarray(y, dtype=int), p)
            ax.plot(fpr, tpr, label=name)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _png(fig)


def lift_plot(y: np.ndarray, p: np.ndarray, title: str) -> str:
    """Observed rate per score decile, 1 = highest scores (an empty plot for an untrained model's missing scores)."""
    fig, ax = _figure()
    if len(y) == 0 or np.isnan(np.asarray(p, dtype=float)).any():
        ax.set(title=f"{title}: no scores")
        return _png(fig)
    table = lift_by_decile(y, p)
    ax.bar(table["decile"], table["observed"], color="#4472c4")
    ax.axhline(np.mean(y), color="#c00", linestyle="--", label="overall")
    ax.set(xlabel="score decile (1 = highest)", ylabel="observed rate", title=title)
    ax.legend(fontsize=8)
    return _png(fig)


def pay_date_plot(actual_days: np.ndarray, predicted_days: np.ndarray) -> str:
    """Predicted median days to pay against actual days to pay (paid invoices)."""
    fig, ax = _figure()
    sample = np.arange(len(actual_days))
    if len(sample) > 4000:
        sample = np.random.default_rng(0).choice(len(actual_days), 4000, replace=False)
    ax.scatter(np.asarray(actual_days)[sample], np.asarray(predicted_days)[sample], s=4, alpha=0.3)
    top = float(np.nanmax(actual_days)) if len(actual_days) else 1.0
    ax.plot([0, top], [0, top], color="#c00", linestyle="--")
    ax.set(xlabel="actual days from cutoff to payment", ylabel="predicted median (p50)",
           title="Predicted vs actual pay date")
    return _png(fig)


def cash_plot(weekly: pd.DataFrame) -> str:
    """Actual receipts per horizon week against each forecast, summed over the test origins."""
    fig, ax = _figure()
    weeks = weekly.index.to_numpy()
    ax.bar(weeks, weekly["actual"], color="#ccc", label="actual")
    for column in weekly.columns.drop("actual"):
        ax.plot(weeks, weekly[column], marker="o", label=column)
    ax.set(xlabel="horizon week", ylabel="receipts (base currency)", title="Cash forecast vs actual")
    ax.legend(fontsize=8)
    return _png(fig)
