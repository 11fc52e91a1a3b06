"""Cash application (issue 20): how well and how fast `cash_application.apply_cash` matches bank payments,
beside two baselines in the same run. Prints numbers, asserts nothing.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_cash_application.py [--customers 1000] [--months 24]
        [--since 2023-06-01] [--scale-customers 0]

Quality: a generated ledger with remittance noise and its truth (`ledger.remittance.with_remittance`); the
payments received from `--since` on arrive as bank lines (no applications, no customer:
`with_cash_to_apply`) and are matched on the ledger's last day, the ranker learning from the applications
before. Per payment: header hit (the customer whose invoices it pays), invoice hit (exactly the set of
documents it pays; for a duplicate, nothing), and for `auto` decisions their precision. Baselines, each given
the true customer (an advantage ours does not get): "exact amount" applies a payment to its customer's one
open item of exactly its amount (none or several: unmatched); "greedy oldest-first" spreads it over the
customer's open items oldest due first, as ERPNext allocates.

Scale (`--scale-customers N`): a ledger of N customers x 36 months in which three quarters of the payments
before `--since` are dropped (their invoices stay open: a large book of old open items) and the rest
arrive as bank lines; prints the open items, the payments to match and the time `apply_cash` takes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from cash_application import apply_cash
from features.asof import known_at
from features.settlement import document_state
from ledger.remittance import with_cash_to_apply, with_remittance
from ledger.synthetic import generate_ledger
from ledger.validation import TOLERANCE


def proposals(result: pd.DataFrame) -> pd.DataFrame:
    """Per payment: decision, customer and the set of documents proposed (empty when unmatched)."""
    return result.groupby("payment_id").agg(
        decision=("decision", "first"), customer=("customer_id", "first"),
        documents=("invoice_id", lambda ids: frozenset(ids.dropna())))


def as_set(documents: object) -> frozenset:
    return documents if isinstance(documents, frozenset) else frozenset()


def scored(predicted: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Header and invoice hit rates, auto precision and share, over the payments of `truth`."""
    truth = truth.set_index("payment_id")
    predicted = predicted.reindex(truth.index)
    expected = truth["invoice_ids"].map(frozenset)
    hit = predicted["documents"].map(as_set) == expected
    applied = predicted["decision"].isin(["auto", "proposed"])
    auto = predicted["decision"] == "auto"
    return {"payments": len(truth), "header hit": float((predicted["customer"] == truth["customer_id"]).mean()),
            "invoice hit": float(hit.mean()), "applied share": float(applied.mean()),
            "applied precision": float(hit[applied].mean()), "auto share": float(auto.mean()),
            "auto precision": float(hit[auto].mean()) if auto.any() else float("nan"),
            "applied-only invoice hit": float(hit[expected.map(len) > 0].mean())}


def baseline(ledger, payments: pd.DataFrame, customer: pd.Series, as_of: pd.Timestamp, kind: str) -> pd.DataFrame:
    """The two baselines' proposals, payments in received order consuming what they apply."""
    known = known_at(ledger, as_of)
    state = document_state(known, as_of, TOLERANCE)
    state = state[state["is_open"]].assign(currency=lambda s: s["invoice_id"].map(
        known.invoices.set_index("invoice_id")["currency"])).sort_values(["due_date", "invoice_id"])
    books = {key: rows for key, rows in state.groupby(["customer_id", "currency"])}
    remaining = dict(zip(state["invoice_id"], state["open_amount"], strict=True))
    rows = []
    for payment in payments.sort_values(["received_date", "payment_id"]).itertuples(index=False):
        who = customer.get(payment.payment_id)
        book = books.get((who, payment.currency))
        chosen: list[str] = []
        open_now = [] if book is None else [document for document in book["invoice_id"]
                                            if abs(remaining[document]) > TOLERANCE]
        if kind == "exact amount":
            exact = [document for document in open_now if abs(remaining[document] - payment.amount) <= 0.01]
            chosen = exact if len(exact) == 1 else []
            for document in chosen:
                remaining[document] = 0.0
        else:
            left = payment.amount
            for document in open_now:
                if left <= TOLERANCE:
                    break
                if remaining[document] > 0:
                    taken = min(remaining[document], left)
                    remaining[document] -= taken
                    left -= taken
                    chosen.append(document)
        rows.append({"payment_id": payment.payment_id, "decision": "auto" if chosen else "unmatched",
                     "customer": who, "documents": frozenset(chosen)})
    return pd.DataFrame(rows).set_index("payment_id")


def quality(customers: int, months: int, since: pd.Timestamp, seed: int) -> None:
    ledger, _ = generate_ledger(customers, months, seed)
    ledger, truth = with_remittance(ledger, seed)
    as_of = ledger.payments["received_date"].max()
    arriving = with_cash_to_apply(ledger, since)
    applied = set(arriving.payment_applications["payment_id"])
    to_match = arriving.payments[~arriving.payments["payment_id"].isin(applied)]
    truth = truth[truth["payment_id"].isin(to_match["payment_id"])]
    print(f"quality: {customers} customers x {months} months, seed {seed}; {len(to_match):,} payments to match "
          f"({(to_match['received_date'] >= since).sum():,} received from {since:%Y-%m-%d}), as of {as_of:%Y-%m-%d}")
    started = time.perf_counter()
    ours = proposals(apply_cash(arriving, as_of))
    seconds = time.perf_counter() - started
    true_customer = truth.set_index("payment_id")["customer_id"]
    table = {"ar-risk": scored(ours, truth)}
    for kind in ("exact amount", "greedy oldest-first"):
        table[kind] = scored(baseline(arriving, to_match, true_customer, as_of, kind), truth)
    print(pd.DataFrame(table).T.to_string(float_format=lambda value: f"{value:.4f}"))
    print(f"ar-risk matched in {seconds:.1f} s ({seconds / len(to_match) * 1000:.2f} ms per payment, training included)")
    kinds = truth.assign(kind=truth["kinds"].str.split("|")).explode("kind").set_index("payment_id")
    expected = kinds["invoice_ids"].map(frozenset)
    hit = ours["documents"].reindex(kinds.index).map(as_set) == expected
    print("invoice hit by kind of payment:")
    print(hit.groupby(kinds["kind"]).agg(["mean", "size"]).to_string(float_format=lambda value: f"{value:.3f}"))


def scale(customers: int, since: pd.Timestamp, seed: int) -> None:
    ledger, _ = generate_ledger(customers, 36, seed, start=since - pd.DateOffset(months=31))
    ledger, _ = with_remittance(ledger, seed)
    payments = ledger.payments
    rng = np.random.default_rng(seed)
    dropped = (payments["received_date"] < since).to_numpy() & (rng.random(len(payments)) < 0.75)
    dropped_ids = set(payments.loc[dropped, "payment_id"])
    applications = ledger.payment_applications
    reopened = applications.loc[applications["payment_id"].isin(dropped_ids), "invoice_id"]
    ledger = ledger.replace(
        payments=payments[~dropped].reset_index(drop=True),
        payment_applications=applications[~applications["payment_id"].isin(dropped_ids)].reset_index(drop=True),
        invoices=ledger.invoices.assign(cleared_date=ledger.invoices["cleared_date"].where(
            ~ledger.invoices["invoice_id"].isin(reopened))))
    arriving = with_cash_to_apply(ledger, since)
    as_of = arriving.payments["received_date"].max()
    state = document_state(known_at(arriving, as_of), as_of, TOLERANCE)
    to_match = (~arriving.payments["payment_id"].isin(arriving.payment_applications["payment_id"])).sum()
    print(f"scale: {customers:,} customers x 36 months; {int(state['is_open'].sum()):,} open items, "
          f"{to_match:,} payments to match")
    started = time.perf_counter()
    result = apply_cash(arriving, as_of)
    seconds = time.perf_counter() - started
    decisions = result.drop_duplicates("payment_id")["decision"].value_counts().to_dict()
    print(f"apply_cash: {seconds:.1f} s ({seconds / to_match * 1000:.2f} ms per payment); decisions {decisions}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--since", default="2023-06-01")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale-customers", type=int, default=0)
    args = parser.parse_args()
    since = pd.Timestamp(args.since)
    if args.customers:
        quality(args.customers, args.months, since, args.seed)
    if args.scale_customers:
        scale(args.scale_customers, since, args.seed)


if __name__ == "__main__":
    main()
