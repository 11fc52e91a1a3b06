"""`arrisk aging | dunning | kpis`: output by suffix, a table without --out, one clear error on bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ledger import write_ledger
from serving.cli import app
from tests.ledgers import tiny_ledger

runner = CliRunner()
POLICY = "configs/dunning/default.yaml"


@pytest.fixture(scope="module")
def ledger_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("rules") / "ledger"
    write_ledger(tiny_ledger(), path)
    return str(path)


def test_aging_writes_csv_with_the_company_total(ledger_dir: str, tmp_path: Path):
    out = tmp_path / "aging.csv"
    result = runner.invoke(app, ["aging", "--ledger", ledger_dir, "--as-of", "2024-03-10", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = pd.read_csv(out)
    # tiny ledger on 2024-03-10: C1 owes I2 500 - 300 = 200; C2 owes I3 800 + I4 300 less 50 unapplied.
    assert report.set_index("customer_id")["Total"].to_dict() == {"C1": 200.0, "C2": 1050.0, "(all customers)": 1250.0}


def test_commands_print_a_table_without_out(ledger_dir: str):
    for args, title in ((["aging", "--as-of", "2024-03-10", "--basis", "invoice_date"], "Aging as of 2024-03-10"),
                        (["dunning", "--as-of", "2024-03-20", "--policy", POLICY], "Dunning proposal as of"),
                        (["kpis", "--from", "2024-01-01", "--to", "2024-03-31", "--freq", "quarter"], "KPIs 2024")):
        result = runner.invoke(app, [*args, "--ledger", ledger_dir])
        assert result.exit_code == 0, (args, result.output)
        assert title in result.output and "┏" in result.output


def test_dunning_and_kpis_write_files(ledger_dir: str, tmp_path: Path):
    result = runner.invoke(app, ["dunning", "--ledger", ledger_dir, "--as-of", "2024-03-20", "--policy", POLICY,
                                 "--out", str(tmp_path / "d.xlsx")])
    assert result.exit_code == 0, result.output
    letters = pd.read_excel(tmp_path / "d.xlsx")["letter_text"]
    assert letters.str.contains("Dear Acme GmbH").any()
    result = runner.invoke(app, ["kpis", "--ledger", ledger_dir, "--from", "2024-01-01", "--to", "2024-03-31",
                                 "--out", str(tmp_path / "k.parquet")])
    assert result.exit_code == 0, result.output
    assert list(pd.read_parquet(tmp_path / "k.parquet")["period"].unique()) == ["2024-01", "2024-02", "2024-03"]


@pytest.mark.parametrize(("args", "message"), [
    (["aging", "--as-of", "10.03.2024"], "--as-of"),
    (["aging", "--as-of", "2024-03-10", "--basis", "posting"], "--basis"),
    (["aging", "--as-of", "2024-03-10", "--limits", "0,x"], "--limits"),
    (["aging", "--as-of", "2024-03-10", "--limits", "30,0"], "strictly increasing"),
    (["aging", "--as-of", "2024-03-10", "--out", "report.txt"], "unknown output format"),
    (["dunning", "--as-of", "2024-03-10", "--policy", "nowhere.yaml"], "cannot read"),
    (["kpis", "--from", "2024-03-01", "--to", "2024-01-01"], "before its start"),
    (["kpis", "--from", "2024-01-01", "--to", "2024-03-01", "--freq", "week"], "freq"),
])
def test_bad_input_is_one_clear_error(ledger_dir: str, args: list[str], message: str):
    result = runner.invoke(app, [*args, "--ledger", ledger_dir])
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_missing_ledger_is_a_clear_error(tmp_path: Path):
    result = runner.invoke(app, ["aging", "--ledger", str(tmp_path / "none"), "--as-of", "2024-03-10"])
    assert result.exit_code == 1 and "no such ledger directory" in result.output
