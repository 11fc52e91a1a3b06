"""Daily runs (issue 16): a run folder written whole, served by lookups equal to the direct computation,
never half-served, and the day's actions layered on per customer without a new run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ledger import write_ledger
from rules.worklist import worklist
from runs.actions import with_records
from runs.daily import execute_run
from runs.day import STEPS, DaySettings, Step, StepFailed
from runs.folder import RunError, complete_runs, read_run, run_for
from runs.scoring import SCORE_COLUMNS, build_forecast, build_worklist, score, score_table
from serving.cli import app
from serving.views import RunDays, ServingState, UnknownDocument
from tests.conftest import SCORING_DATE

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
FIRST, SECOND = pd.Timestamp("2023-06-15"), pd.Timestamp("2023-06-25")
LIGHT = DaySettings(draws=200)  # fewer forecast draws: the same code, quicker


@pytest.fixture(scope="module")
def runs_dir(scoring_ledger, champions, tmp_path_factory):
    """Runs of the scoring ledger for two dates, built by the same function `arrisk run` calls."""
    folder = tmp_path_factory.mktemp("runs") / "runs"
    for as_of in (FIRST, SECOND):
        execute_run(scoring_ledger, as_of, folder, champions, settings=LIGHT)
    return folder


@pytest.fixture(scope="module")
def ledger_dir(scoring_ledger, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ledger") / "ledger"
    write_ledger(scoring_ledger, folder)
    return folder


def copy_runs(runs_dir: Path, destination: Path) -> Path:
    shutil.copytree(runs_dir, destination)
    return destination


# ---- the run folder ---------------------------------------------------------------------------------

def test_a_run_writes_every_table_and_a_complete_manifest(runs_dir, scoring_ledger, champions):
    folder = runs_dir / "2023-06-25"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["as_of"] == "2023-06-25" and manifest["status"] == "complete"
    assert manifest["ledger_fingerprint"] == scoring_ledger.fingerprint()
    assert manifest["models"]["late"] == {"name": "ar_risk_late_payment", "version": "1"}
    assert manifest["package_version"] and manifest["engine"] == "pandas"
    assert [step["name"] for step in manifest["steps"]] == [step.name for step in STEPS]
    assert all(step["seconds"] >= 0 and step["peak_rss_mb"] > 0 for step in manifest["steps"])
    for name in ("scores", "customers", "worklist", "forecast", "dunning", "aging", "contributions"):
        assert len(pd.read_parquet(folder / f"{name}.parquet")) == manifest["tables"][name], name
    scores = pd.read_parquet(folder / "scores.parquet")
    open_documents = score(scoring_ledger, SECOND, champions).items
    assert sorted(scores["invoice_id"]) == sorted(open_documents["invoice_id"])
    assert {"p_on_time", "p_late_90_plus", "p_unpaid", "reason_1", "reason_1_contribution"} <= set(scores)
    # Every document is explained: a reason wherever some feature pushes its risk up.
    assert (scores["reason_1"] != "").mean() > 0.9
    assert (scores.loc[scores["reason_1"] != "", "reason_1_contribution"] > 0).all()
    customers = pd.read_parquet(folder / "customers.parquet")
    assert {"deterioration_probability", "deteriorating", "reason_1", "money_at_risk_before_holds_base"} <= set(customers)
    assert not [path.name for path in runs_dir.iterdir() if path.name.startswith(".staging")]


def test_served_answers_equal_the_direct_computation(runs_dir, scoring_ledger, champions):
    state = ServingState(RunDays(runs_dir, None))
    direct = score(scoring_ledger, SECOND, champions)
    served = state.score_invoices(SECOND, None).sort_values("invoice_id", ignore_index=True)
    pd.testing.assert_frame_equal(served[SCORE_COLUMNS], score_table(direct, champions), check_dtype=False)
    # The reasons are those the model gives each row alone.
    from runs.reasons import top_reasons

    contributions = champions.late.contributions(direct.items)
    row = direct.items.index[3]
    expected = top_reasons(contributions.loc[row], direct.items.loc[row])
    assert served.set_index("invoice_id").loc[direct.items.loc[row, "invoice_id"], "reasons"] == expected

    table = state.worklist(SECOND)
    pd.testing.assert_frame_equal(table, build_worklist(scoring_ledger, SECOND, champions), check_dtype=False)

    forecast = state.forecast(SECOND, horizon_weeks=13)
    pd.testing.assert_frame_equal(forecast, build_forecast(scoring_ledger, SECOND, champions, draws=200),
                                  check_dtype=False)
    # A shorter horizon is the first periods of the day's: the same as computing it directly.
    pd.testing.assert_frame_equal(state.forecast(SECOND, horizon_weeks=4, freq="day"),
                                  build_forecast(scoring_ledger, SECOND, champions, horizon_weeks=4, freq="day",
                                                 draws=200), check_dtype=False)


def test_a_date_without_a_run_is_a_404_listing_the_runs(runs_dir):
    state = ServingState(RunDays(runs_dir, None))
    from ledger.errors import NotFound

    with pytest.raises(NotFound, match="no run for as_of 2023-06-20; runs: 2023-06-15, 2023-06-25"):
        state.checked_as_of(pd.Timestamp("2023-06-20").date())
    assert state.default_as_of == SECOND


def test_a_step_that_fails_leaves_the_previous_run_and_no_staging(runs_dir, scoring_ledger, champions, tmp_path):
    runs = copy_runs(runs_dir, tmp_path / "runs")
    before = (runs / "2023-06-25" / "manifest.json").read_text()

    def fault(work):
        raise RuntimeError("injected fault")

    steps = (*STEPS[:3], Step("fault", fault), *STEPS[3:])
    with pytest.raises(StepFailed, match="step 'fault' failed: injected fault"):
        execute_run(scoring_ledger, SECOND, runs, champions, settings=LIGHT, steps=steps)
    assert (runs / "2023-06-25" / "manifest.json").read_text() == before
    assert sorted(path.name for path in runs.iterdir() if path.is_dir()) == ["2023-06-15", "2023-06-25"]


KILLED_RUN = """
import os, signal, sys, pickle
from pathlib import Path
from runs.day import STEPS, DaySettings, Step
from runs.daily import execute_run
ledger, champions = pickle.loads(Path(sys.argv[1]).read_bytes())
def killed(work):
    os.kill(os.getpid(), signal.SIGKILL)  # as a power cut or the OOM killer would
steps = (*STEPS[:3], Step("killed", killed), *STEPS[3:])
execute_run(ledger, "2023-06-25", sys.argv[2], champions, settings=DaySettings(draws=200), steps=steps)
"""


def test_a_run_killed_after_its_third_step_leaves_the_previous_run_served(runs_dir, scoring_ledger, champions,
                                                                            tmp_path):
    import pickle

    runs = copy_runs(runs_dir, tmp_path / "runs")
    before = (runs / "2023-06-25" / "manifest.json").read_text()
    inputs = tmp_path / "inputs.pickle"
    inputs.write_bytes(pickle.dumps((scoring_ledger, champions)))
    process = subprocess.run([sys.executable, "-c", KILLED_RUN, str(inputs), str(runs)], cwd=ROOT,
                             capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert process.returncode == -signal.SIGKILL, process.stderr
    [staging] = [path for path in runs.iterdir() if path.name.startswith(".staging-2023-06-25-")]
    assert not (staging / "manifest.json").exists() and not (staging / "worklist.parquet").exists()
    assert (runs / "2023-06-25" / "manifest.json").read_text() == before
    assert list(complete_runs(runs)) == [FIRST, SECOND]
    state = ServingState(RunDays(runs, None))
    assert state.default_as_of == SECOND and len(state.worklist(SECOND))
    # The next run removes what the killed one left.
    execute_run(scoring_ledger, FIRST, runs, champions, settings=LIGHT)
    assert not staging.exists()


def test_a_run_with_a_missing_or_corrupt_table_is_refused_with_one_line_naming_the_file(runs_dir, tmp_path):
    runs = copy_runs(runs_dir, tmp_path / "runs")
    (runs / "2023-06-25" / "worklist.parquet").write_bytes(b"not parquet")
    with pytest.raises(RunError, match=r"2023-06-25/worklist.parquet: not a readable Parquet file"):
        RunDays(runs, None)
    result = runner.invoke(app, ["serve", "--runs", str(runs)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert "2023-06-25/worklist.parquet" in line

    (runs / "2023-06-25" / "worklist.parquet").unlink()
    with pytest.raises(RunError, match=r"2023-06-25/worklist.parquet: missing \(the manifest lists it\)"):
        read_run(runs / "2023-06-25")
    short = runs / "2023-06-15"
    pd.read_parquet(short / "scores.parquet").head(3).to_parquet(short / "scores.parquet")
    with pytest.raises(RunError, match=r"scores.parquet: 3 rows, the manifest says \d+"):
        read_run(short)


def test_old_runs_are_pruned_to_the_newest_kept(runs_dir, scoring_ledger, champions, tmp_path):
    runs = copy_runs(runs_dir, tmp_path / "runs")
    execute_run(scoring_ledger, pd.Timestamp("2023-06-30"), runs, champions, settings=LIGHT, keep=2)
    assert list(complete_runs(runs)) == [SECOND, pd.Timestamp("2023-06-30")]


# ---- a swap never mixes two runs ---------------------------------------------------------------------

def marked_copy(folder: Path, destination: Path, marker: float) -> Path:
    """A copy of a run whose probabilities all equal `marker`, in customers and in scores."""
    shutil.copytree(folder, destination)
    for name, column in (("scores", "p_late"), ("customers", "deterioration_probability")):
        table = pd.read_parquet(destination / f"{name}.parquet")
        table[column] = marker
        table.to_parquet(destination / f"{name}.parquet", index=False)
    manifest = json.loads((destination / "manifest.json").read_text())
    (destination / "manifest.json").write_text(json.dumps(manifest | {"run_id": f"marked-{marker}"}))
    return destination


def test_requests_during_a_swap_never_mix_two_runs(runs_dir, tmp_path):
    staged = tmp_path / "staged"
    staged.mkdir()
    versions = [marked_copy(runs_dir / "2023-06-25", staged / f"v{marker}", marker) for marker in (0.25, 0.75)]
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(versions[0], runs / "2023-06-25")
    state = ServingState(RunDays(runs, None))
    customers = list(state.view(SECOND).by_customer)[:20]
    mixed, answers = [], []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for customer in customers:
                risk = state.customer_risk(customer, SECOND)
                markers = {risk["deterioration_probability"], *risk["open_items"]["p_late"]}
                answers.append(markers)
                if len(markers) != 1:
                    mixed.append(markers)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in readers:
        thread.start()
    for swap in range(20):
        # What `RunWriter.finish` does: the old folder aside, the new one renamed into place.
        aside = runs / f".replaced-{swap}"
        os.rename(runs / "2023-06-25", aside)
        shutil.copytree(versions[(swap + 1) % 2], runs / "2023-06-25")
        shutil.rmtree(aside)
        state.refresh()
    stop.set()
    for thread in readers:
        thread.join()
    assert not mixed
    assert {0.25} in answers and {0.75} in answers  # both runs were served


# ---- the day's actions on top ------------------------------------------------------------------------

@pytest.fixture
def run_state(runs_dir, scoring_ledger, tmp_path):
    from tests.stores import new_store

    store = new_store(f"sqlite:///{tmp_path / 'activity.sqlite'}")
    store.migrate()
    days = RunDays(runs_dir, None)
    days._ledger = scoring_ledger
    days._ledger_ready.set()
    yield ServingState(days, store=store)
    store.close()


def overdue_customer(state: ServingState, as_of: pd.Timestamp) -> pd.Series:
    """An active customer at `as_of` still overdue at the later run's date."""
    rows, later = state.worklist(as_of), state.worklist(SECOND)
    still = later.loc[later["overdue_amount_base"] > 0, "customer_id"]
    return rows[(rows["status"] == "active") & (rows["overdue_amount_base"] > 0) & rows["customer_id"].isin(still)].iloc[0]


def test_a_promise_holds_what_was_promised_then_escalates_once_broken_without_a_new_run(run_state, scoring_ledger):
    import datetime as dt

    customer = overdue_customer(run_state, FIRST)
    # More than the customer's payments could reach, so it is pending, then broken; it covers every overdue item.
    run_state.store.create_promise("ana", customer_id=customer["customer_id"], amount="1000000.00",
                                   made_date=dt.date(2023, 6, 15), promised_date=dt.date(2023, 6, 20),
                                   currency=scoring_ledger.base_currency, now=dt.datetime(2023, 6, 15, tzinfo=dt.UTC))
    held = run_state.worklist(FIRST).set_index("customer_id").loc[customer["customer_id"]]
    assert held["status"] == "held"
    assert held["money_at_risk_base"] < customer["money_at_risk_base"]
    assert "pending promise" in held["reason_1"]
    broken = run_state.worklist(SECOND).set_index("customer_id").loc[customer["customer_id"]]
    assert broken["status"] == "escalated" and broken["reason_1"].endswith("broken")
    assert broken["score"] >= 3 * broken["money_at_risk_base"] > 0
    # The model's probabilities are the run's.
    before = run_state.view(SECOND, actions=False).scores
    assert run_state.view(SECOND).scores is before


def test_a_small_promise_on_the_account_holds_only_the_oldest_items_it_covers(run_state, scoring_ledger):
    import datetime as dt

    customer = overdue_customer(run_state, FIRST)
    rank_before = customer["rank"]
    run_state.store.create_promise("ana", customer_id=customer["customer_id"], amount=1.00,
                                   made_date=dt.date(2023, 6, 15), promised_date=dt.date(2023, 6, 30),
                                   currency=scoring_ledger.base_currency, now=dt.datetime(2023, 6, 15, tzinfo=dt.UTC))
    after = run_state.worklist(FIRST).set_index("customer_id").loc[customer["customer_id"]]
    assert after["status"] == "active" and after["rank"] == rank_before
    assert after["money_at_risk_base"] == pytest.approx(customer["money_at_risk_base"])


def test_actions_re_derive_the_rows_a_full_recomputation_would_give(run_state, scoring_ledger, champions):
    import datetime as dt

    from serving.activity import with_activity

    table = run_state.worklist(FIRST)
    for customer in table["customer_id"].head(3):
        run_state.store.create_contact("ana", customer_id=customer, contact_date=dt.date(2023, 6, 14), channel="call",
                                       outcome="promised next week", now=dt.datetime(2023, 6, 14, tzinfo=dt.UTC))
    invoice = run_state.view(FIRST).scores.iloc[5]
    run_state.store.create_dispute("ana", invoice_id=invoice["invoice_id"], customer_id=invoice["customer_id"],
                                   opened_date=dt.date(2023, 6, 10), reason_code="pricing", amount="10.00",
                                   now=dt.datetime(2023, 6, 10, tzinfo=dt.UTC))
    served = run_state.worklist(FIRST)
    view = run_state.view(FIRST)
    ledger = with_activity(scoring_ledger, run_state.store.ledger_tables())
    from rules.dunning import dunning_proposal
    from runs.day import model_reasons
    from runs.scoring import fill_reasons

    settings = DaySettings()
    dunning = dunning_proposal(ledger, FIRST, settings.dunning_policy)
    full = fill_reasons(worklist(ledger, FIRST, view.scores, view.customers, settings.policy, dunning=dunning),
                        model_reasons(view.customers))
    # The service adds each customer's live escalation (none here) beside the rules' columns.
    assert served["escalation"].isna().all()
    pd.testing.assert_frame_equal(served.drop(columns="escalation"), full, check_dtype=False)
    assert served.set_index("customer_id").loc[invoice["customer_id"], "last_dispute"].startswith(
        f"dispute on {invoice['invoice_id']}")


def test_recorded_cash_takes_paid_documents_off_the_scores_and_re_derives_aging_as_a_full_recomputation(
        run_state, scoring_ledger):
    import datetime as dt

    from runs.day import aging_table
    from serving.activity import with_activity

    scores = run_state.view(FIRST).scores
    run_state.view(FIRST).json_rows()  # encoded before the write: the rows of the other customers are kept
    invoices = scores[scores["open_amount"] > 100]
    counts = invoices["customer_id"].value_counts()
    pair = invoices[invoices["customer_id"] == counts.index[0]]
    paid, part = pair.iloc[0], pair.iloc[1]
    payment = {"payment_id": "BANK-T1", "received_date": dt.date(2023, 6, 14), "currency": paid["currency"],
               "amount": round(paid["open_amount"] + 50, 2), "amount_base": round(paid["open_amount"] + 50, 2),
               "payer_customer_id": paid["customer_id"]}
    run_state.store.record_cash_application(
        "casey", payment=payment, decision="confirmed", applied_date=dt.date(2023, 6, 14),
        lines=[{"invoice_id": paid["invoice_id"], "customer_id": paid["customer_id"], "amount": round(paid["open_amount"], 2)},
               {"invoice_id": part["invoice_id"], "customer_id": part["customer_id"], "amount": 50}],
        now=dt.datetime(2023, 6, 14, tzinfo=dt.UTC))

    view = run_state.view(FIRST)
    assert paid["invoice_id"] not in set(view.scores["invoice_id"])
    with pytest.raises(UnknownDocument, match="not open"):
        run_state.score_invoices(FIRST, [paid["invoice_id"]])
    left = run_state.score_invoices(FIRST, [part["invoice_id"]]).iloc[0]
    assert left["open_amount"] == pytest.approx(part["open_amount"] - 50)
    assert left["p_late"] == part["p_late"]  # the run's probability
    risk = run_state.customer_risk(paid["customer_id"], FIRST)
    assert paid["invoice_id"] not in set(risk["open_items"]["invoice_id"])
    assert len(view.scores) == len(scores) - 1
    from runs.answers import json_records

    assert view.json_rows() == json_records(view.score_rows(np.arange(len(view.scores))))
    full = aging_table(with_activity(scoring_ledger, run_state.store.ledger_tables()), FIRST)
    for basis, amounts in (("due_date", "base"), ("invoice_date", "document")):
        expected = full[(full["basis"] == basis) & (full["amounts"] == amounts)].drop(columns=["basis", "amounts"])
        pd.testing.assert_frame_equal(run_state.aging(FIRST, basis, amounts), expected.reset_index(drop=True),
                                      check_dtype=False)


def test_the_customer_view_kpis_from_the_customer_slice_equal_the_whole_books(run_state, scoring_ledger):
    from rules.kpis import kpi_report

    customer = run_state.worklist(SECOND)["customer_id"].iloc[0]
    view = run_state.customer(customer, SECOND)
    start, end = run_state.view(SECOND).kpi_window()
    full = kpi_report(scoring_ledger, start, end)
    expected = full[full["customer_id"] == customer].reset_index(drop=True)
    assert len(expected) and len(view["kpis"]) == len(expected)
    pd.testing.assert_frame_equal(view["kpis"].reset_index(drop=True), expected, check_dtype=False)


def test_with_records_appends_records_and_leaves_a_ledger_without_any_as_it_is():
    from tests.ledgers import tiny_ledger

    ledger = tiny_ledger()
    contacts = pd.DataFrame({column: [] for column in ledger.contacts.columns})
    assert with_records(ledger, {"contacts": contacts, "promises": None}) is ledger
    recorded = ledger.promises.head(1).assign(promise_id="PTP-new")
    merged = with_records(ledger, {"promises": recorded})
    assert list(merged.promises["promise_id"]) == [*ledger.promises["promise_id"], "PTP-new"]


def test_with_records_sets_decided_credit_limits_and_adds_write_offs_the_ledger_lacks():
    from tests.ledgers import tiny_ledger

    ledger = tiny_ledger()
    first = ledger.customers["customer_id"].iloc[0]
    limits = pd.DataFrame({"customer_id": [first], "credit_limit": [0.0], "decided_date": [pd.Timestamp("2024-01-05")]})
    invoices = ledger.invoices["invoice_id"]
    written = ledger.writeoffs["invoice_id"].iloc[0] if len(ledger.writeoffs) else None
    fresh = invoices[~invoices.isin(ledger.writeoffs["invoice_id"])].iloc[0]
    writeoffs = pd.DataFrame({"invoice_id": [fresh, written] if written else [fresh],
                              "date": pd.Timestamp("2024-01-05"), "amount": 10.0})
    merged = with_records(ledger, {"credit_limits": limits, "writeoffs": writeoffs})
    by_customer = merged.customers.set_index("customer_id")["credit_limit"]
    assert by_customer[first] == 0.0
    pd.testing.assert_series_equal(by_customer.drop(first),
                                   ledger.customers.set_index("customer_id")["credit_limit"].drop(first), check_dtype=False)
    assert merged.writeoffs["invoice_id"].tolist() == [*ledger.writeoffs["invoice_id"], fresh]


# ---- the command line --------------------------------------------------------------------------------

def test_arrisk_run_builds_a_run_and_the_cli_reads_it(ledger_dir, champion_store, scoring_ledger, champions,
                                                      tmp_path):
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["run", "--ledger", str(ledger_dir), "--as-of", "2023-06-30", "--out", str(runs),
                                 "--tracking-uri", champion_store])
    assert result.exit_code == 0, result.output
    assert "worklist" in result.output and "total" in result.output
    manifest = json.loads((runs / "2023-06-30" / "manifest.json").read_text())
    assert manifest["ledger"] == str(ledger_dir.resolve()) and manifest["tracking_uri"] == champion_store
    assert "features_compared" in manifest["facts"]["drift"] or manifest["facts"]["drift"]["retrain"] is None
    assert run_for(runs, None) == runs / "2023-06-30"

    out = tmp_path / "worklist.csv"
    result = runner.invoke(app, ["worklist", "--ledger", str(ledger_dir), "--as-of", "2023-06-30", "--runs", str(runs),
                                 "--tracking-uri", champion_store, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "from the run of 2023-06-30" in result.stderr
    direct = tmp_path / "direct.csv"
    result = runner.invoke(app, ["worklist", "--ledger", str(ledger_dir), "--as-of", "2023-06-30",
                                 "--tracking-uri", champion_store, "--out", str(direct)])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(direct))

    scores = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", "--ledger", str(ledger_dir), "--as-of", "2023-06-30", "--runs", str(runs),
                                 "--tracking-uri", champion_store, "--out", str(scores)])
    assert result.exit_code == 0, result.output
    expected = score_table(score(scoring_ledger, SCORING_DATE, champions), champions)
    assert list(pd.read_csv(scores)["invoice_id"]) == list(expected["invoice_id"])
    np.testing.assert_allclose(pd.read_csv(scores)["p_late"], expected["p_late"])


def test_arrisk_run_names_the_failed_step_and_replaces_nothing(tmp_path, champion_store):
    from tests.ledgers import tiny_ledger

    write_ledger(tiny_ledger(), tmp_path / "ledger")
    result = runner.invoke(app, ["run", "--ledger", str(tmp_path / "ledger"), "--as-of", "2024-03-01",
                                 "--out", str(tmp_path / "runs"), "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no champion" in result.stderr
    assert not complete_runs(tmp_path / "runs")


# ---- the service on runs -----------------------------------------------------------------------------

ADMIN_TOKEN = "arr_test_admin_token_runs_0123456789"


@pytest.fixture(scope="module")
def run_client(runs_dir, ledger_dir, champion_store, tmp_path_factory):
    """The service answering from a copy of the runs, with its own activity store and an admin token."""
    from starlette.testclient import TestClient

    from serving.auth import hash_token
    from tests.service_app import service_app

    folder = tmp_path_factory.mktemp("run-service")
    runs = copy_runs(runs_dir, folder / "runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARRISK_RUNS", str(runs))
        patch.setenv("ARRISK_LEDGER", str(ledger_dir))
        patch.setenv("ARRISK_TRACKING_URI", champion_store)
        patch.setenv("ARRISK_RUNS_POLL_SECONDS", "0")
        patch.setenv("ARRISK_DATABASE_URL", f"sqlite:///{folder / 'activity.sqlite'}")
        patch.setenv("ARRISK_API_TOKENS", f"admin:admin-user:admin:{hash_token(ADMIN_TOKEN)}")
        patch.delenv("ARRISK_TOKENS_FILE", raising=False)
        with TestClient(service_app(), raise_server_exceptions=False) as client:
            client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
            client.runs = runs
            yield client


def worklist_row(client, as_of: pd.Timestamp, customer: str) -> dict | None:
    response = client.get(f"/v1/worklist?as_of={as_of:%Y-%m-%d}")
    assert response.status_code == 200, response.text
    return next((row for row in response.json()["rows"] if row["customer_id"] == customer), None)


def test_the_service_answers_from_the_runs_and_lists_them(run_client):
    info = run_client.get("/v1/info").json()
    assert info["source"] == "runs" and info["runs"] == ["2023-06-15", "2023-06-25"]
    assert info["default_as_of"] == "2023-06-25"
    missing = run_client.get("/v1/worklist?as_of=2023-06-20")
    assert missing.status_code == 404 and "runs: 2023-06-15, 2023-06-25" in missing.json()["detail"]
    listed = run_client.get("/v1/runs").json()["rows"]
    assert [(row["as_of"], row["served"]) for row in listed] == [("2023-06-25", True), ("2023-06-15", False)]


def test_a_promise_through_the_api_holds_then_escalates_once_broken_without_a_new_run(run_client):
    first = run_client.get(f"/v1/worklist?as_of={FIRST:%Y-%m-%d}").json()["rows"]
    later = {row["customer_id"] for row in run_client.get(f"/v1/worklist?as_of={SECOND:%Y-%m-%d}").json()["rows"]
             if row["overdue_amount_base"] > 0}
    before = next(row for row in first if row["status"] == "active" and row["customer_id"] in later)
    response = run_client.post("/v1/promises", json={"customer_id": before["customer_id"], "amount": "1000000.00",
                                                     "made_date": "2023-06-15", "promised_date": "2023-06-20"})
    assert response.status_code == 201, response.text
    held = worklist_row(run_client, FIRST, before["customer_id"])
    assert held["status"] == "held" and "pending promise" in held["reason_1"]
    broken = worklist_row(run_client, SECOND, before["customer_id"])
    assert broken["status"] == "escalated" and broken["reason_1"].endswith("broken")
    assert broken["score"] >= 3 * broken["money_at_risk_base"] > 0
    assert sorted(path.name for path in run_client.runs.iterdir() if path.is_dir()) == ["2023-06-15", "2023-06-25"]


def test_a_run_started_over_the_api_is_served_once_complete(run_client):
    import time

    response = run_client.post("/v1/runs", json={"as_of": "2023-06-30"})
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == job["url"] and job["status"] == "running"
    again = run_client.post("/v1/runs", json={"as_of": "2023-06-29"})
    assert again.status_code == 409 and "one run at a time" in again.json()["detail"]
    deadline = time.monotonic() + 600
    while job["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
        job = run_client.get(job["url"]).json()
    assert job["status"] == "complete", job
    assert job["run"] == "2023-06-30" and job["step_index"] == job["steps_total"]
    assert run_client.get("/v1/info").json()["default_as_of"] == "2023-06-30"
    assert run_client.get("/v1/worklist?as_of=2023-06-30&top=3").status_code == 200


def test_one_run_at_a_time_per_runs_folder(scoring_ledger, champions, tmp_path):
    from ledger.errors import Conflict
    from runs.folder import run_lock

    with run_lock(tmp_path / "runs"), pytest.raises(Conflict, match="another run is in progress"):
        execute_run(scoring_ledger, SECOND, tmp_path / "runs", champions, settings=LIGHT)
    assert not complete_runs(tmp_path / "runs")


def test_a_run_never_replaces_what_ar_risk_did_not_write(scoring_ledger, champions, ledger_dir, tmp_path):
    runs = tmp_path / "runs"
    (runs / "2023-06-25").mkdir(parents=True)
    (runs / "2023-06-25" / "important.txt").write_text("precious")
    with pytest.raises(RunError, match="is a folder that is not a complete ar-risk run; refusing"):
        execute_run(scoring_ledger, SECOND, runs, champions, settings=LIGHT)
    assert (runs / "2023-06-25" / "important.txt").read_text() == "precious"
    assert not [path for path in runs.iterdir() if path.name.startswith(".staging")]

    (tmp_path / "a-file").write_text("not a folder")
    result = runner.invoke(app, ["run", "--ledger", str(ledger_dir), "--as-of", "2023-06-25",
                                 "--out", str(tmp_path / "a-file")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "a-file: not a folder, cannot write runs in it" in result.stderr
    assert (tmp_path / "a-file").read_text() == "not a folder"
    result = runner.invoke(app, ["run", "--ledger", str(ledger_dir), "--as-of", "2023-02-30", "--out", str(runs)])
    assert result.exit_code == 1 and "--as-of" in result.stderr
