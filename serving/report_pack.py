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


def pack_recipients(settings) -> list[str]:
    """The addresses of `ARRISK_PACK_RECIPIENTS`; `BadInput` when there are none."""
    from ledger.errors import BadInput

    recipients = [address.strip() for address in (settings.pack_recipients or "").split(",") if address.strip()]
    if not recipients:
        raise BadInput("no one to send the pack to: set ARRISK_PACK_RECIPIENTS (comma-separated addresses)")
    return recipients


def pack_message(sheets: dict[str, pd.DataFrame], as_of: pd.Timestamp, workbook: Path, sender: str,
                 recipients: list[str]):
    """The pack as one e-mail: the HTML body with the workbook attached."""
    from email.message import EmailMessage
    from email.utils import make_msgid

    message = EmailMessage()
    message["Subject"] = f"AR report pack {as_of:%Y-%m-%d}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Message-ID"] = make_msgid(idstring=f"pack-{as_of:%Y-%m-%d}", domain="ar-risk")
    summary = sheets["summary"]
    message.set_content("\n".join(f"{item}: {value}" for item, value in zip(summary["item"], summary["value"],
                                                                             strict=True)))
    message.add_alternative(pack_html(sheets, as_of), subtype="html")
    message.add_attachment(workbook.read_bytes(), maintype="application",
                           subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet", filename=workbook.name)
    return message


def wire_bytes(message) -> bytes:
    """The message as SMTP carries it (CRLF line ends)."""
    from email import policy

    return message.as_bytes(policy=policy.SMTP)


def send_pack(sheets: dict[str, pd.DataFrame], as_of: pd.Timestamp, workbook: Path, settings,
              eml_folder: Path | None = None) -> str:
    """Send the pack to `ARRISK_PACK_RECIPIENTS` over the SMTP server of the settings (retrying a temporary
    failure), or write it as an .eml file into `eml_folder`; says what it did. `SendFailure` when refused."""
    from reminders.smtp import send_with_retries, smtp_server, write_eml

    recipients = pack_recipients(settings)
    if eml_folder is not None:
        sender = settings.smtp_sender or "ar-risk <ar-risk@localhost>"
        path = write_eml(wire_bytes(pack_message(sheets, as_of, workbook, sender, recipients)), eml_folder,
                         f"pack-{as_of:%Y-%m-%d}")
        return f"wrote the pack e-mail to {path}"
    server = smtp_server(settings)
    tries, refused = send_with_retries(wire_bytes(pack_message(sheets, as_of, workbook, server.sender, recipients)),
                                       recipients, server)
    sent = [address for address in recipients if address not in refused]
    return (f"sent the pack to {', '.join(sent)} ({tries} tr{'y' if tries == 1 else 'ies'})"
            + (f"; refused: {', '.join(f'{a} ({r})' for a, r in refused.items())}" if refused else ""))


def scheduled_pack(ledger_dir: Path, as_of: pd.Timestamp, runs_dir: Path,
                   environ: Mapping[str, str] | None = None) -> str | None:
    """After the daily run of `as_of`: when `ARRISK_PACK_RECIPIENTS` is set and `ARRISK_PACK_SCHEDULE` says the
    day is due, build the pack from that run into `ARRISK_REPORTS` and send it; says what happened (a refused
    send included: the run stands either way). None when no pack is due."""
    import logging

    from configs.settings import Settings
    from ledger.errors import BadInput
    from monitoring.report_pack import pack_due
    from reminders.smtp import SendFailure

    settings = Settings.from_environ(environ)
    if not settings.pack_recipients or not pack_due(settings.pack_schedule, as_of):
        return None
    sheets = build_pack(ledger_dir, as_of, runs_dir, environ=environ)
    workbook, _ = write_pack(sheets, as_of, settings.reports)
    try:
        return send_pack(sheets, as_of, workbook, settings)
    except (SendFailure, BadInput) as failure:  # refused, or no SMTP server set: the run stands
        reason = failure.reason if isinstance(failure, SendFailure) else str(failure)
        logging.getLogger("arrisk.pack").error("the report pack of %s was not sent: %s", f"{as_of:%Y-%m-%d}", reason)
        return f"the report pack was written to {workbook} but not sent: {reason}"
