"""A ledger partitioned by customer (issue 17, item 1): written chunk by chunk, read whole or a bucket at a
time, checked across buckets, written atomically; chunked generation and partitioned import."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ledger import read_ledger, write_ledger
from ledger.errors import LedgerError
from ledger.importing import import_ledger, import_ledger_with_report, import_partitioned
from ledger.partitions import (
    PartitionedWriter,
    bucket_of,
    is_partitioned,
    partition_count,
    read_partition,
)
from ledger.schema import SCHEMAS
from ledger.store import Ledger
from ledger.synthetic import generate_chunks, generate_ledger
from serving.cli import app

ROOT = Path(__file__).resolve().parents[1]
IBM = ROOT / "samples" / "ibm" / "ibm_wa_accounts_receivable.csv"
FBL5N = ROOT / "tests" / "fixtures" / "fbl5n"
GENERIC = ROOT / "tests" / "fixtures" / "generic_csv"
runner = CliRunner()


@pytest.fixture(scope="module")
def small() -> Ledger:
    return generate_ledger(60, 6, seed=5)[0]


def sorted_tables(ledger: Ledger) -> dict[str, pd.DataFrame]:
    """Each table in a canonical row order (all columns), so layouts that order rows differently compare."""
    result = {}
    for name, table in ledger.tables().items():
        columns = list(table.columns)
        result[name] = table.sort_values(columns, kind="stable", na_position="first").reset_index(drop=True)
    return result


def assert_same_ledger(left: Ledger, right: Ledger) -> None:
    a, b = sorted_tables(left), sorted_tables(right)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_dtype=False, obj=name)


def test_writing_partitioned_and_reading_whole_gives_the_ledger_back(tmp_path, small):
    write_ledger(small, tmp_path / "ledger", partitions=4)
    assert is_partitioned(tmp_path / "ledger") and partition_count(tmp_path / "ledger") == 4
    assert_same_ledger(read_ledger(tmp_path / "ledger"), small)


def test_the_buckets_together_are_the_ledger_and_each_holds_whole_customers(tmp_path, small):
    write_ledger(small, tmp_path / "ledger", partitions=4)
    buckets = [read_partition(tmp_path / "ledger", bucket) for bucket in range(4)]
    together = Ledger(**{name: pd.concat([b.tables()[name] for b in buckets], ignore_index=True)
                         for name in small.tables()})
    assert_same_ledger(together, small)
    for bucket, part in enumerate(buckets):
        assert (bucket_of(part.customers["customer_id"], 4) == bucket).all()
        # Every invoice of a customer in the bucket is in the bucket: whole customers, nothing split.
        theirs = small.invoices[small.invoices["customer_id"].isin(part.customers["customer_id"])]
        assert set(theirs["invoice_id"]) == set(part.invoices["invoice_id"])


def test_buckets_are_stable_across_processes_and_versions():
    # A literal, not a recomputation: a change of hash would silently reshuffle every stored ledger.
    assert bucket_of(["C000001", "C000002", "CUST-42"], 8).tolist() == [0, 7, 5]


def test_chunked_generation_gives_a_valid_ledger_with_ids_unique_across_chunks():
    chunks = list(generate_chunks(25, 6, seed=3, chunk_customers=10))
    assert len(chunks) == 3
    ledger = Ledger(**{name: pd.concat([c.tables()[name] for c, _ in chunks], ignore_index=True)
                       for name in chunks[0][0].tables()})
    ledger.validate()
    assert len(ledger.customers) == 25
    for name, key in (("customers", "customer_id"), ("invoices", "invoice_id"), ("payments", "payment_id"),
                      ("disputes", "dispute_id"), ("promises", "promise_id"), ("contacts", "contact_id")):
        assert ledger.tables()[name][key].is_unique, name
    # One width for the whole ledger, so ids sort like their numbers.
    numbers = pd.concat([ledger.customers["customer_id"].str[1:], ledger.payments["payment_id"].str[3:],
                         ledger.invoices["invoice_id"].str.extract(r"(\d+)$")[0]])
    assert numbers.str.len().nunique() == 1
    assert ledger.customers["customer_id"].tolist() == sorted(ledger.customers["customer_id"])
    # Chunks draw from their own streams: the second is not a copy of the first.
    assert not np.array_equal(chunks[0][0].invoices["amount"].head(5), chunks[1][0].invoices["amount"].head(5))
    assert "truth/fx_rates.parquet" in chunks[0][1] and "truth/fx_rates.parquet" not in chunks[1][1]
    assert "truth/invoices/chunk-00002.parquet" in chunks[2][1]


def test_generate_with_partitions_through_the_cli_writes_a_readable_partitioned_ledger(tmp_path):
    out = tmp_path / "ledger"
    result = runner.invoke(app, ["generate", "--out", str(out), "--customers", "30", "--months", "6",
                                 "--partitions", "3", "--chunk-customers", "12"])
    assert result.exit_code == 0, result.output
    assert partition_count(out) == 3
    ledger = read_ledger(out)
    assert len(ledger.customers) == 30
    truth = pd.concat([pd.read_parquet(f) for f in sorted((out / "truth" / "invoices").glob("*.parquet"))])
    assert set(truth["invoice_id"]) == set(ledger.invoices.loc[ledger.invoices["doc_type"] == "invoice",
                                                                 "invoice_id"])
    assert (out / "truth" / "fx_rates.parquet").is_file()


def test_chunk_customers_without_partitions_is_refused_in_one_line(tmp_path):
    result = runner.invoke(app, ["generate", "--out", str(tmp_path / "x"), "--chunk-customers", "5"])
    assert result.exit_code != 0 and "--partitions" in result.output
    assert not (tmp_path / "x").exists()


def two_customers(first: str, second: str, invoice_ids: tuple[str, str]) -> Ledger:
    """A ledger of two customers with one open invoice each."""
    day = pd.Timestamp("2024-01-10")
    customers = pd.DataFrame({"customer_id": [first, second], "name": ["A", "B"], "segment": "small",
                              "country": "DE", "currency": "EUR", "payment_terms_days": 30,
                              "credit_limit": 1000.0, "created_date": pd.Timestamp("2023-01-01")})
    invoices = pd.DataFrame({"invoice_id": list(invoice_ids), "customer_id": [first, second],
                             "doc_type": "invoice", "invoice_date": day, "due_date": day + pd.Timedelta(days=30),
                             "amount": 100.0, "currency": "EUR", "amount_base": 100.0,
                             "cleared_date": pd.NaT})
    empty = generate_ledger(1, 1, 0)[0]
    return Ledger(customers=customers, invoices=invoices, payments=empty.payments.iloc[:0],
                  payment_applications=empty.payment_applications.iloc[:0])


def customers_in_different_buckets(partitions: int) -> tuple[str, str]:
    ids = [f"C{n}" for n in range(20)]
    buckets = bucket_of(ids, partitions)
    return ids[0], next(i for i, b in zip(ids, buckets, strict=True) if b != buckets[0])


def test_a_duplicate_invoice_id_in_two_buckets_is_reported_at_both_places(tmp_path):
    first, second = customers_in_different_buckets(4)
    target = tmp_path / "ledger"
    with pytest.raises(LedgerError) as caught, PartitionedWriter(target, 4) as writer:
        # Each chunk is a valid ledger alone; only together do they hold INV-1 twice.
        writer.add(two_customers(first, "X1", ("INV-1", "INV-X")))
        writer.add(two_customers("Y1", second, ("INV-Y", "INV-1")))
        writer.finish()
    duplicates = [p for p in caught.value.problems if p.column == "invoice_id" and "duplicate" in p.message]
    assert len(duplicates) == 2
    buckets = {f"part-{int(bucket_of([c], 4)[0]):05d}" for c in (first, second)}
    assert {Path(p.where).parent.name for p in duplicates} == buckets
    assert all(p.key == "INV-1" and "also at" in p.message for p in duplicates)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_a_payment_applied_to_another_bucket_customers_invoice_is_refused(tmp_path):
    first, second = customers_in_different_buckets(4)
    ledger = two_customers(first, second, ("INV-1", "INV-2"))
    day = pd.Timestamp("2024-01-20")
    ledger = ledger.replace(
        payments=pd.DataFrame({"payment_id": ["PAY-1"], "customer_id": [first], "received_date": [day],
                               "amount": [100.0], "currency": ["EUR"], "amount_base": [100.0]}),
        payment_applications=pd.DataFrame({"payment_id": ["PAY-1"], "invoice_id": ["INV-2"], "applied_date": [day],
                                           "amount": [100.0]}))
    with pytest.raises(LedgerError) as caught:
        write_ledger(ledger, tmp_path / "ledger", validate=False, partitions=4)
    assert "different buckets" in str(caught.value) and "write it unpartitioned" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_the_previous_ledger_and_no_staging_folder(tmp_path, small):
    target = tmp_path / "ledger"
    write_ledger(small, target, partitions=2)
    before = sorted((p.relative_to(target), p.read_bytes()) for p in target.rglob("*") if p.is_file())
    with pytest.raises(KeyboardInterrupt), PartitionedWriter(target, 2) as writer:
        writer.add(small)
        raise KeyboardInterrupt  # Ctrl-C half way
    with pytest.raises(LedgerError), PartitionedWriter(target, 2) as writer:
        writer.add(small.replace(invoices=small.invoices.assign(amount_base=-1.0)))
        writer.finish()
    after = sorted((p.relative_to(target), p.read_bytes()) for p in target.rglob("*") if p.is_file())
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["ledger"]


def test_a_bucket_problem_names_the_file_and_its_row(tmp_path, small):
    bad = small.replace(invoices=small.invoices.assign(
        due_date=small.invoices["due_date"].where(small.invoices.index != 3, pd.Timestamp("1990-01-01"))))
    with pytest.raises(LedgerError) as caught, PartitionedWriter(tmp_path / "ledger", 2) as writer:
        writer.add(bad)
        writer.finish()
    problem = next(p for p in caught.value.problems if p.column == "due_date")
    assert problem.where.endswith(".parquet") and "/invoices/part-0000" in problem.where
    assert not (tmp_path / "ledger").exists()


@pytest.mark.parametrize(("sources", "mapping"), [([IBM], "ibm_sample"), ([FBL5N / "fbl5n_export.csv"], "sap_fbl5n"),
                                                  ([GENERIC], "generic_csv")], ids=["ibm", "fbl5n", "generic"])
def test_import_with_partitions_equals_import_without(tmp_path, sources, mapping):
    whole, whole_report = import_ledger_with_report(sources, mapping)
    rows, report = import_partitioned(sources, mapping, tmp_path / "ledger", 4, chunk_rows=500)
    assert report == whole_report and (mapping != "sap_fbl5n" or len(report) == 3)
    partitioned = read_ledger(tmp_path / "ledger")
    assert rows["invoices"] == len(whole.invoices) and partition_count(tmp_path / "ledger") == 4
    assert_same_ledger(partitioned, whole)
    assert partitioned.source == whole.source


def ibm_head(tmp_path: Path, lines: int) -> Path:
    """The first lines of the IBM sample (header included) as a file of its own."""
    head = tmp_path / "ibm_head.csv"
    head.write_text("\n".join(IBM.read_text().splitlines()[:lines]) + "\n")
    return head


def test_a_csv_bigger_than_the_chunk_imports_to_the_same_ledger_as_in_one_piece(tmp_path):
    head = ibm_head(tmp_path, 300)
    assert_same_ledger(import_ledger([head], "ibm_sample", chunk_rows=37), import_ledger([head], "ibm_sample"))
    for export in (FBL5N / "fbl5n_export.csv", FBL5N / "fbl5n_export.xlsx"):
        assert_same_ledger(import_ledger([export], "sap_fbl5n", chunk_rows=7), import_ledger([export], "sap_fbl5n"))


def test_a_bad_cell_after_the_first_chunk_keeps_its_line_number(tmp_path):
    lines = IBM.read_text().splitlines()[:120]
    cells = lines[40].split(",")
    header = lines[0].split(",")
    cells[header.index("InvoiceAmount")] = "12.3.4"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([*lines[:40], ",".join(cells), *lines[41:]]) + "\n")
    with pytest.raises(LedgerError) as caught:
        import_partitioned([bad], "ibm_sample", tmp_path / "ledger", 4, chunk_rows=25)
    assert [(Path(p.where).name, p.row, p.column) for p in caught.value.problems] == [
        ("bad.csv", 41, "InvoiceAmount")]
    assert [p.name for p in tmp_path.iterdir()] == ["bad.csv"]


def test_import_through_the_cli_with_partitions(tmp_path):
    result = runner.invoke(app, ["import", str(IBM), "--mapping", "ibm_sample", "--out", str(tmp_path / "ledger"),
                                 "--partitions", "3", "--chunk-rows", "1000"])
    assert result.exit_code == 0, result.output
    assert partition_count(tmp_path / "ledger") == 3 and len(read_ledger(tmp_path / "ledger").invoices) == 2466


def test_the_keys_checked_across_buckets_are_the_contracts_unique_keys():
    from ledger.partitions import UNIQUE_KEYS

    unique = {(table, column) for table, schema in SCHEMAS.items() for column, spec in schema.columns.items()
              if spec.unique}
    assert set(UNIQUE_KEYS) == unique
