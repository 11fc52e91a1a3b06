"""The finance report pack (issue 22 point 4): its sheets from the rules, its schedule, the workbook and the
HTML e-mail body, and `arrisk report pack`."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from ledger.errors import BadInput
from monitoring.report_pack import (
    SHEETS,
    deduction_summary,
    pack_due,
    pack_html,
    report_pack,
    worklist_by_collector,
    write_pack_xlsx,
)
from rules.aging import TOTAL, aging_report
from tests.conftest import SCORING_DATE
from tests.ledgers import tiny_ledger

AS_OF = pd.Timestamp("2024-03-31")


@pytest.mark.parametrize(("schedule", "day", "due"), [
    ("daily", "2024-03-13", True), ("weekly:fri", "2024-03-15", True), ("weekly:fri", "2024-03-14", False),
    ("monthly", "2024-02-29", True), ("monthly", "2024-02-28", False), ("Weekly:MON", "2024-03-11", True)])
def test_the_schedule_says_which_days_the_pack_goes_out(schedule, day, due):
    assert pack_due(schedule, pd.Timestamp(day)) is due


def test_a_schedule_it_cannot_read_is_a_clear_error():
    with pytest.raises(BadInput, match="ARRISK_PACK_SCHEDULE: 'fortnightly' is not daily"):
        pack_due("fortnightly", AS_OF)


def test_the_worklist_and_deductions_are_summed_per_collector_and_status():
    worklist = pd.DataFrame({"customer_id": ["C1", "C2", "C3"], "collector": ["Ana", "Ana", None],
                             "status": ["escalated", "held", "active"], "overdue_amount_base": [100.0, 50.0, 7.0],
                             "money_at_risk_base": [80.0, 10.0, 5.0]})
    table = worklist_by_collector(worklist).set_index("collector")
    assert table.loc["Ana"].tolist() == [2, 1, 1, 150.0, 90.0] and table.loc["(none)", "customers"] == 1
    deductions = pd.DataFrame({"item_id": ["D1", "D2", "D3"], "status": ["open", "open", "valid"],
                               "reason_code": ["pricing", "pricing", "damaged"], "amount": ["10.50", "4.50", "3.00"]})
    summary = deduction_summary(deductions).set_index(["status", "reason_code"])
    assert summary.loc[("open", "pricing")].tolist() == [2, 15.0]


def test_the_pack_has_every_sheet_its_totals_from_the_rules_and_writes_whole(tmp_path):
    ledger = tiny_ledger()
    forecast = pd.DataFrame({"converted": [True, False], "period": [1, 1], "expected": [120.0, 99.0],
                             "p10": [100.0, 80.0], "p90": [150.0, 120.0]})
    sheets = report_pack(ledger, AS_OF, pd.DataFrame(columns=["customer_id", "collector", "status",
                                                              "overdue_amount_base", "money_at_risk_base"]),
                         forecast, pd.DataFrame())
    assert list(sheets) == ["summary", *SHEETS[1:]]
    assert sheets["aging"][TOTAL].iloc[0] == pytest.approx(aging_report(ledger, AS_OF)[TOTAL].sum())
    assert sheets["forecast"]["expected"].tolist() == [120.0]  # the base-currency view only
    summary = dict(zip(sheets["summary"]["item"], sheets["summary"]["value"], strict=True))
    assert summary["expected receipts, next 13 weeks (base)"] == "120.00"
    assert set(sheets["disputes"]["reason"]) == {"pricing"}  # tiny_ledger's open dispute
    path = write_pack_xlsx(sheets, tmp_path / "pack.xlsx")
    assert pd.ExcelFile(path).sheet_names == list(SHEETS)
    page = pack_html(sheets, AS_OF)
    assert "<h2>Kpis</h2>" in page and "<script" not in page and "pricing" in page


def test_arrisk_report_pack_writes_the_workbook_and_the_html(scoring_ledger, champion_store, tmp_path):
    from ledger import write_ledger
    from serving.cli import app

    write_ledger(scoring_ledger, tmp_path / "ledger")
    result = CliRunner().invoke(app, ["report", "pack", "--ledger", str(tmp_path / "ledger"), "--as-of",
                                      f"{SCORING_DATE:%Y-%m-%d}", "--out", str(tmp_path / "pack"),
                                      "--tracking-uri", champion_store])
    assert result.exit_code == 0, result.output
    workbook = tmp_path / "pack" / "pack-2023-06-30.xlsx"
    assert workbook.exists() and (tmp_path / "pack" / "pack-2023-06-30.html").exists()
    collectors = pd.read_excel(workbook, sheet_name="worklist by collector")
    assert collectors["customers"].sum() > 0
    assert len(pd.read_excel(workbook, sheet_name="forecast")) == 13


def pack_settings(server, **more):
    from configs.settings import Settings

    return Settings.from_environ({"ARRISK_SMTP_HOST": server.host, "ARRISK_SMTP_PORT": str(server.port),
                                  "ARRISK_SMTP_SECURITY": "none", "ARRISK_SMTP_SENDER": server.sender,
                                  "ARRISK_PACK_RECIPIENTS": "cfo@example.com, controller@example.com", **more})


def small_pack(tmp_path):
    sheets = report_pack(tiny_ledger(), AS_OF, pd.DataFrame(columns=["customer_id", "collector", "status",
                                                                     "overdue_amount_base", "money_at_risk_base"]),
                         pd.DataFrame(), pd.DataFrame())
    return sheets, write_pack_xlsx(sheets, tmp_path / "pack-2024-03-31.xlsx")


def test_the_pack_goes_to_the_configured_list_over_a_real_smtp_server(tmp_path):
    from serving.report_pack import send_pack
    from tests.smtp_server import smtp_server

    sheets, workbook = small_pack(tmp_path)
    with smtp_server() as (handler, server):
        said = send_pack(sheets, AS_OF, workbook, pack_settings(server))
    assert said.startswith("sent the pack to cfo@example.com, controller@example.com (1 try)")
    [(_, recipients, message)] = handler.received
    assert recipients == ["cfo@example.com", "controller@example.com"]
    assert message["Subject"] == "AR report pack 2024-03-31"
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "pack-2024-03-31.xlsx" and attachment.get_content() == workbook.read_bytes()
    assert "<h2>Aging</h2>" in message.get_body(("html",)).get_content()


def test_a_permanently_refused_pack_says_why_and_nothing_arrives(tmp_path):
    from reminders.smtp import SendFailure
    from serving.report_pack import send_pack
    from tests.smtp_server import smtp_server

    sheets, workbook = small_pack(tmp_path)
    with smtp_server(answers=["550 5.7.1 relaying denied"]) as (handler, server), \
            pytest.raises(SendFailure, match=r"550.*relaying denied"):
        send_pack(sheets, AS_OF, workbook, pack_settings(server))
    assert handler.received == []


def test_the_daily_run_sends_the_pack_only_when_its_schedule_is_due(tmp_path):
    from serving.report_pack import scheduled_pack

    assert scheduled_pack(tmp_path, AS_OF, tmp_path, {"ARRISK_PACK_SCHEDULE": "weekly:mon",
                                                      "ARRISK_PACK_RECIPIENTS": "cfo@example.com"}) is None  # a Sunday
    assert scheduled_pack(tmp_path, AS_OF, tmp_path, {"ARRISK_PACK_SCHEDULE": "daily"}) is None  # no recipients
