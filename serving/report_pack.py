"""The finance report pack as the command line and the daily run build it (`monitoring.report_pack` makes the
sheets): the ledger with the activity store's records, the day's worklist and forecast (from the run of the
date when there is one, else computed with the champions), and the recorded deductions."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ledger import read_ledger
from monitoring.report_pack import pack_html, report_pack, write_pack_xlsx


def day_tables(ledger, as_of: pd.Timestamp, runs_dir: Path | None, tracking_uri: str | None
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The worklist and the forecast of `as_of`: the run's when `runs_dir` has one, else computed."""
    from runs.folder import complete_runs, read_run

    runs = complete_runs(runs_dir) if runs_dir is not None and Path(runs_dir).exists() else {}
    if as_of in runs:
        day, _ = read_run(runs[as_of])
        return day.tables["worklist"], day.tables["forecast"]
    from runs.scoring import build_forecast, build_worklist, load_champions
    from training.tracking import default_tracking_uri

    champions = load_champions(tracking_uri or default_tracking_uri())
    return build_worklist(ledger, as_of, champions), build_forecast(ledger, as_of, champions)


def recorded_deductions(environ: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The activity store's deduction records (none without a store)."""
    from serving.activity import activity_store_exists, database_url, open_store

    if not activity_store_exists(environ):
        return pd.DataFrame(columns=["item_id", "status", "reason_code", "amount"])
    store = open_store(database_url(environ))
    try:
        return pd.DataFrame(store.list_queue_items("deduction"),
                            columns=["item_id", "customer_id", "invoice_id", "status", "reason_code", "amount"])
    finally:
        store.close()


def build_pack(ledger_dir: Path, as_of: pd.Timestamp, runs_dir: Path | None = None, tracking_uri: str | None = None,
               environ: Mapping[str, str] | None = None) -> dict[str, pd.DataFrame]:
    """The pack's sheets as of `as_of` for the ledger in `ledger_dir` and what the store recorded."""
    from serving.activity import ledger_with_recorded_activity

    ledger = ledger_with_recorded_activity(read_ledger(ledger_dir), environ)
    worklist, forecast = day_tables(ledger, as_of, runs_dir, tracking_uri)
    return report_pack(ledger, as_of, worklist, forecast, recorded_deductions(environ))


def write_pack(sheets: dict[str, pd.DataFrame], as_of: pd.Timestamp, out: Path) -> tuple[Path, Path]:
    """`pack-DATE.xlsx` and `pack-DATE.html` in the folder `out`, each written whole or not at all."""
    from ledger.files import write_file_atomically

    out.mkdir(parents=True, exist_ok=True)
    xlsx = write_pack_xlsx(sheets, out / f"pack-{as_of:%Y-%m-%d}.xlsx")
    page = pack_html(sheets, as_of)
    html_path = write_file_atomically(out / f"pack-{as_of:%Y-%m-%d}.html", lambda target: target.write_text(page))
    return xlsx, html_path
