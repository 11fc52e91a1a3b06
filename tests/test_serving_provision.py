"""The bad-debt provision over the API, the web page, the daily run and the command line (issue 23), on the
scoring ledger with the champions of the test session."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from serving.auth import hash_token
from tests.conftest import SCORING_DATE
from tests.service_app import service_app

FINANCE, COLLECTOR = "arr_provision_finance_token_0123", "arr_provision_collector_token_012"
DAY = f"{SCORING_DATE:%Y-%m-%d}"
START = "2023-03-31"


@pytest.fixture(scope="module")
def served(scoring_ledger, champion_store, tmp_path_factory):
    from ledger import write_ledger

    folder = tmp_path_factory.mktemp("provision")
    write_ledger(scoring_ledger, folder / "ledger")
    tokens = [f"fin:Fiona Finance:finance:{hash_token(FINANCE)}", f"ana:Ana:collector:{hash_token(COLLECTOR)}:Ana"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARRISK_LEDGER", str(folder / "ledger"))
        patch.setenv("ARRISK_TRACKING_URI", champion_store)
        patch.setenv("ARRISK_API_TOKENS", ",".join(tokens))
        patch.setenv("ARRISK_DATABASE_URL", f"sqlite:///{folder / 'activity.sqlite'}")
        patch.setenv("ARRISK_REPORTS", str(folder / "reports"))
        patch.delenv("ARRISK_TOKENS_FILE", raising=False)
        with TestClient(service_app(), raise_server_exceptions=False) as client:
            yield client


def bearer(token: str = FINANCE) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_finance_gets_both_methods_and_the_movement_that_adds_up(served, scoring_ledger):
    from provision import load_provision_policy
    from provision.report import provision_report

    answer = served.get(f"/v1/provision?as_of={DAY}&from={START}", headers=bearer())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    methods = {row["method"]: row for row in body["summary"]}
    assert set(methods) == {"provision matrix", "model (PD x LGD)"}
    direct = provision_report(scoring_ledger, SCORING_DATE, load_provision_policy())
    assert methods["provision matrix"]["ecl_base"] == pytest.approx(direct.summary["ecl_base"].iloc[0])
    assert body["from"] == START and 0 <= body["lgd"]["lgd"] <= 1
    for method in methods:
        lines = {row["line"]: row["amount_base"] for row in body["movement"] if row["method"] == method}
        assert lines["closing allowance"] == pytest.approx(sum(amount for line, amount in lines.items()
                                                               if line != "closing allowance"), abs=0.05)
    assert body["differences"] and body["differences"][0]["explanation"].startswith("matrix: buckets")


def test_the_provision_needs_the_finance_scope_and_a_start_before_the_close(served):
    assert served.get(f"/v1/provision?as_of={DAY}", headers=bearer(COLLECTOR)).status_code == 403
    assert served.get(f"/v1/provision?as_of={DAY}").status_code == 401
    late = served.get("/v1/provision?as_of=2023-05-31&from=2023-06-15", headers=bearer())
    assert late.status_code == 400 and "must be before the close" in late.text


def test_the_workbook_has_a_sheet_per_view_and_the_method_note(served):
    from openpyxl import load_workbook

    answer = served.get(f"/v1/provision/workbook?as_of={DAY}&from={START}", headers=bearer())
    assert answer.status_code == 200 and "provision-2023-06-30.xlsx" in answer.headers["content-disposition"]
    workbook = load_workbook(io.BytesIO(answer.content), read_only=True)
    assert {"summary", "matrix", "movement", "method note"} <= set(workbook.sheetnames)
    movement = pd.read_excel(io.BytesIO(answer.content), sheet_name="movement")
    assert set(movement["line"]) >= {"opening allowance", "recoveries", "closing allowance"}


def login(client: TestClient, token: str) -> None:
    form = client.get("/v1/ui/login").text
    client.post("/v1/ui/login", data={"token": token, "csrf": re.search(r'name="csrf" value="([0-9a-f]+)"',
                                                                        form).group(1)}, follow_redirects=False)


def test_the_page_shows_both_methods_to_finance_only(served):
    login(served, FINANCE)
    page = served.get(f"/v1/ui/provision?as_of={DAY}&from={START}")
    assert page.status_code == 200, page.text
    assert 'data-method="provision matrix"' in page.text and 'data-method="model (PD x LGD)"' in page.text
    assert f"Movement from {START}" in page.text
    assert served.get("/v1/ui/", follow_redirects=False).headers["location"].endswith("/provision")
    login(served, COLLECTOR)
    assert served.get(f"/v1/ui/provision?as_of={DAY}").status_code == 403


def test_the_daily_run_writes_the_provision(scoring_ledger, champions, tmp_path):
    from runs.daily import execute_run
    from runs.day import PROVISION_STEP, STEPS
    from runs.folder import read_run

    folder = execute_run(scoring_ledger, SCORING_DATE, tmp_path / "runs", champions,
                         steps=(*STEPS, PROVISION_STEP))
    day, manifest = read_run(folder)
    summary = day.tables["provision_summary"].set_index("method")
    assert set(summary.index) == {"provision matrix", "model (PD x LGD)"}
    assert manifest["tables"]["provision_customers"] == len(day.tables["provision_customers"]) > 0
    assert 0 <= day.facts["provision_lgd"]["lgd"] <= 1


def test_arrisk_provision_report_writes_the_workbook_and_backtest_prints_both_methods(scoring_ledger, tmp_path,
                                                                                      champion_store):
    from ledger import write_ledger
    from serving.cli import app

    write_ledger(scoring_ledger, tmp_path / "ledger")
    runner = CliRunner()
    result = runner.invoke(app, ["provision", "report", "--ledger", str(tmp_path / "ledger"), "--as-of", DAY,
                                 "--from", START, "--out", str(tmp_path / "provision.xlsx"),
                                 "--tracking-uri", champion_store])
    assert result.exit_code == 0, result.output
    assert "model (PD x LGD)" in result.output and (tmp_path / "provision.xlsx").exists()
    wrong = runner.invoke(app, ["provision", "report", "--ledger", str(tmp_path / "ledger"), "--as-of", DAY,
                                "--out", str(tmp_path / "provision.csv")])
    assert wrong.exit_code == 1 and "an .xlsx file" in wrong.output
    policy = tmp_path / "policy.yaml"
    policy.write_text("lookback_months: 6\nbacktest_horizon_months: 3\n")  # the ledger has 18 months
    backtest = runner.invoke(app, ["provision", "backtest", "--ledger", str(tmp_path / "ledger"), "--origins", "1",
                                   "--policy", str(policy), "--out", str(tmp_path / "backtest.csv")])
    assert backtest.exit_code == 0, backtest.output
    table = pd.read_csv(tmp_path / "backtest.csv")
    assert set(table["method"]) == {"provision matrix", "model (PD x LGD)"} and len(table) == 2
