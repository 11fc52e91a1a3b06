"""Both methods as of a date, the movement schedule, the backtest, and the workbook finance books from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ledger import Ledger
from ledger.errors import BadInput
from ledger.files import write_file_atomically
from provision.matrix import by_customer, matrix_items, matrix_table
from provision.model_ecl import compared, loss_given_default, model_ecl
from provision.movement import base_rates, movement_schedule
from provision.policy import ProvisionPolicy
from provision.roll_rates import loss_rates, month_ends, open_balances
from rules.aging import bucket_labels

# customer_id -> P(deteriorate) at a date (the deterioration model's), or None when there is no model.
Probabilities = Callable[[pd.Timestamp], pd.Series]

METHOD_NOTE = """\
Bad-debt provision (allowance for doubtful accounts): lifetime expected credit loss of the open trade
receivables, simplified approach (IFRS 9 5.5.15; US GAAP CECL), in the base currency.

Provision matrix: loss rates per ageing bucket (days past due) and customer segment from a roll-rate
analysis of the ledger's month-end balances over the look-back: for each bucket, what was written off,
rolled on to a later bucket or stayed one month later; loss rate = (written off + rolled x next bucket's
loss rate) / (balance - stayed). A segment's bucket with too few observations takes the all-customer rate.
The forward-looking adjustment multiplies every rate by (1 + factor): it is the user's judgement of the
outlook, set in the provision policy, not the tool's. ECL = open amount x loss rate; disputed and promised
items as the policy says; a customer's ECL is never below zero.

Model-based: per customer, exposure x PD x LGD. PD: the deterioration model's calibrated probability of
default (90+ days past due or written off) within 90 days, 1 for a customer already 90+ days past due.
LGD: of the customers in default at a past month end, the share of their exposure written off in the following
months (recoveries lower it); the policy's default LGD without enough history.

Movement: opening + charge - release - written off + recoveries = closing, per method.
Backtest: at each past month end, each method's provision against the write-offs of the documents open
then that followed within the horizon (base currency): ratio = provision / write-offs.
"""


@dataclass
class ProvisionReport:
    """Everything `arrisk provision` shows and writes, as of one date."""

    as_of: pd.Timestamp
    loss_rates: pd.DataFrame
    matrix: pd.DataFrame
    customers: pd.DataFrame
    differences: pd.DataFrame
    lgd: dict
    summary: pd.DataFrame
    movement: pd.DataFrame = field(default_factory=pd.DataFrame)
    backtest: pd.DataFrame = field(default_factory=pd.DataFrame)


def methods_at(ledger: Ledger, as_of: pd.Timestamp, policy: ProvisionPolicy,
               probabilities: pd.Series | None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Loss rates, matrix items, matrix per customer, model per customer (None without probabilities) and LGD."""
    rates = loss_rates(ledger, as_of, policy)
    items = matrix_items(ledger, as_of, rates, policy)
    lgd = loss_given_default(ledger, as_of, policy)
    model = model_ecl(items, probabilities, lgd["lgd"]) if probabilities is not None else None
    return rates, items, by_customer(items), model, lgd


def provision_report(ledger: Ledger, as_of: pd.Timestamp, policy: ProvisionPolicy,
                     probabilities_at: Probabilities | None = None, start: pd.Timestamp | None = None) -> ProvisionReport:
    """Both methods as of `as_of`; with `start`, the movement of each between `start` and `as_of`."""
    as_of = pd.Timestamp(as_of).normalize()
    probabilities = probabilities_at(as_of) if probabilities_at is not None else None
    rates, items, matrix, model, lgd = methods_at(ledger, as_of, policy, probabilities)
    customers = matrix.rename(columns={"ecl": "matrix_ecl"})
    if model is not None:
        customers = customers.merge(model[["customer_id", "pd", "pd_basis", "lgd", "ecl"]].rename(
            columns={"ecl": "model_ecl"}), on="customer_id", how="outer")
    summary = pd.DataFrame([{"method": "provision matrix", "exposure_base": matrix["exposure"].sum(),
                             "ecl_base": matrix["ecl"].sum()}]
                           + ([{"method": "model (PD x LGD)", "exposure_base": model["exposure"].sum(),
                                "ecl_base": model["ecl"].sum()}] if model is not None else []))
    summary["coverage"] = summary["ecl_base"] / summary["exposure_base"].where(summary["exposure_base"] > 0)
    report = ProvisionReport(as_of, rates, matrix_table(items, bucket_labels(policy.aging_limits)), customers,
                             compared(matrix, model, items) if model is not None else pd.DataFrame(), lgd, summary)
    if start is not None:
        start = pd.Timestamp(start).normalize()
        if start >= as_of:
            raise BadInput(f"--from: the movement's start {start:%Y-%m-%d} must be before the close {as_of:%Y-%m-%d}")
        _, _, opening_matrix, opening_model, _ = methods_at(
            ledger, start, policy, probabilities_at(start) if probabilities_at is not None else None)
        schedules = [movement_schedule(ledger, start, as_of, opening_matrix["ecl"].sum(), matrix["ecl"].sum(),
                                       "provision matrix")]
        if model is not None and opening_model is not None:  # the model scored both dates
            schedules.append(movement_schedule(ledger, start, as_of, opening_model["ecl"].sum(), model["ecl"].sum(),
                                               "model (PD x LGD)"))
        report.movement = pd.concat(schedules, ignore_index=True)
    return report


def realised_losses(ledger: Ledger, origin: pd.Timestamp, months: int) -> float:
    """What was written off, within `months` after `origin`, of the documents open at `origin` (base)."""
    open_then = set(open_balances(ledger, origin, (0,))["invoice_id"])
    end = origin + pd.DateOffset(months=months)
    rows = ledger.writeoffs[(ledger.writeoffs["date"] > origin) & (ledger.writeoffs["date"] <= end)
                            & ledger.writeoffs["invoice_id"].isin(open_then)]
    return float((rows["amount"].to_numpy() * base_rates(ledger).reindex(rows["invoice_id"]).fillna(0).to_numpy()).sum())


def provision_backtest(ledger: Ledger, last_origin: pd.Timestamp, origins: int, policy: ProvisionPolicy,
                       probabilities_at: Probabilities | None = None) -> pd.DataFrame:
    """At each of `origins` month ends up to `last_origin` (whose horizon the ledger covers), the provision
    each method would have booked against the write-offs that followed: ratio and absolute error."""
    rows = []
    for origin in month_ends(last_origin, origins):
        realised = realised_losses(ledger, origin, policy.backtest_horizon_months)
        _, _, matrix, model, _ = methods_at(ledger, origin, policy,
                                            probabilities_at(origin) if probabilities_at is not None else None)
        for method, booked in (("provision matrix", matrix["ecl"].sum()),
                               *((("model (PD x LGD)", model["ecl"].sum()),) if model is not None else ())):
            rows.append({"origin": origin, "method": method, "provision_base": round(booked, 2),
                         "written_off_next_base": round(realised, 2),
                         "ratio": booked / realised if realised > 0 else float("nan"),
                         "absolute_error_base": round(abs(booked - realised), 2)})
    return pd.DataFrame(rows)


def write_workbook(report: ProvisionReport, path: Path) -> Path:
    """One xlsx, one sheet per view, and the method note; written whole or not at all."""
    note = pd.DataFrame({"method note": METHOD_NOTE.splitlines()})
    sheets = {"summary": report.summary, "matrix": report.matrix, "loss rates": report.loss_rates,
              "customers": report.customers, "differences": report.differences, "lgd": pd.DataFrame([report.lgd]),
              "movement": report.movement, "backtest": report.backtest, "method note": note}

    def write(target: Path) -> None:
        with pd.ExcelWriter(target, engine="openpyxl") as writer:
            for name, table in sheets.items():
                table.to_excel(writer, sheet_name=name, index=False)

    return write_file_atomically(path, write)
