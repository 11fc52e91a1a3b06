"""Time ledger validation on the synthetic 10,000 customers x 36 months ledger (issue 18 item 5: under
5 s for a nightly import), next to a naive reference in the same run, and print both.

The reference is validation as it was before it was vectorised:
- the pandera schemas with pandera's own `str` dtype (whose check calls `isinstance` per element) and
  its builtin `Check.str_length(min_value=1)` (one `len` per element) on identifiers;
- the cross-table rules joining, `isin`-ing and grouping on the string keys for every rule, rather
  than looking each reference up once (`KeyLookup` replaced by one that never answers, so the rules
  take their join-on-values paths, which are the code they ran before).
Both must report the same problems; the script checks that on the clean ledger and on a copy with a
few bad values (an empty id, a bad currency code, a non-finite amount, a dangling reference).

    .venv/bin/python benchmarks/bench_validation.py [--customers 10000] [--months 36] [--seed 0]
        [--cache /tmp/val36] [--repeat 1]

The generated ledger is written to `--cache` (unvalidated) and read from there when present.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pandera.pandas as pa

from ledger import ledger_problems, read_ledger, validation, write_ledger
from ledger.schema import SCHEMAS, STR
from ledger.synthetic import generate_ledger


class NoLookup(validation.KeyLookup):
    """Answers no reference, so every rule joins on the key values as before."""

    def positions(self, child: str, column: str, parent: str, parent_column: str) -> None:
        return None


def naive_schema(schema: pa.DataFrameSchema) -> pa.DataFrameSchema:
    """The schema with pandera's element-wise `str` dtype and builtin `str_length` check back."""
    columns = {}
    for name, column in schema.columns.items():
        checks = [pa.Check.str_length(min_value=1) if check.name == "str_length" else check
                  for check in column.checks]
        columns[name] = pa.Column(str if column.dtype is STR else column.dtype, checks, nullable=column.nullable,
                                  unique=column.unique, required=column.required)
    return pa.DataFrameSchema(columns, name=schema.name)


@contextmanager
def naive_validation():
    """Validation as before, for the duration of the block."""
    naive = {name: naive_schema(schema) for name, schema in SCHEMAS.items()}
    with mock.patch.dict(validation.SCHEMAS, naive), mock.patch.object(validation, "KeyLookup", NoLookup):
        yield


def naive_problems(tables: Mapping[str, pd.DataFrame]) -> list:
    with naive_validation():
        return ledger_problems({name: table.reset_index(drop=True) for name, table in tables.items()})


def timed(action: Callable[[], Any], repeat: int) -> tuple[Any, float]:
    """The action's result and its best wall-clock seconds over `repeat` runs."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - started)
    return result, best


def corrupted(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """A copy with one bad value of each kind the vectorised checks must still catch."""
    tables = {name: table.copy() for name, table in tables.items()}
    invoices, payments, applications = tables["invoices"], tables["payments"], tables["payment_applications"]
    invoices.loc[3, "customer_id"] = ""
    invoices.loc[5, "currency"] = "EURO"
    invoices.loc[7, "amount_base"] = np.inf
    payments.loc[2, "payment_id"] = ""
    payments.loc[4, "amount"] = np.nan
    applications.loc[6, "invoice_id"] = "NOPE"
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/val36"))
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    if (args.cache / "ledger.json").exists():
        ledger = read_ledger(args.cache, validate=False)
        print(f"ledger read from {args.cache}")
    else:
        ledger, _ = generate_ledger(customers=args.customers, months=args.months, seed=args.seed)
        write_ledger(ledger, args.cache, validate=False)
        print(f"ledger generated and written to {args.cache}")
    tables = ledger.tables()
    print("rows: " + ", ".join(f"{name} {len(table):,}" for name, table in tables.items()))

    new, new_s = timed(lambda: ledger_problems(tables), args.repeat)
    old, old_s = timed(lambda: naive_problems(tables), args.repeat)
    print(f"validation, vectorised:       {new_s:7.2f} s  ({len(new)} problems)")
    print(f"validation, naive reference:  {old_s:7.2f} s  ({len(old)} problems)  x{old_s / new_s:.1f}")
    assert new == old, "the vectorised validation reports other problems than the reference"

    bad = corrupted(tables)
    new_bad, new_bad_s = timed(lambda: ledger_problems(bad), 1)
    old_bad, old_bad_s = timed(lambda: naive_problems(bad), 1)
    print(f"with bad values, vectorised:  {new_bad_s:7.2f} s  ({len(new_bad)} problems)")
    print(f"with bad values, naive:       {old_bad_s:7.2f} s  ({len(old_bad)} problems)")
    assert new_bad == old_bad, "the vectorised validation reports other problems than the reference"
    print("same problems as the reference: yes")


if __name__ == "__main__":
    main()
