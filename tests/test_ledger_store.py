"""Reading and writing ledgers: round trip, clear errors, and atomic replacement."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ledger import LedgerError, read_ledger, write_ledger
from tests.ledgers import tiny_ledger


def fingerprint(directory: Path) -> dict[str, str]:
    return {str(f.relative_to(directory)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(directory.rglob("*")) if f.is_file()}


def test_round_trip_keeps_every_table_and_dtype(tmp_path):
    original = tiny_ledger()
    write_ledger(original, tmp_path / "ledger")
    loaded = read_ledger(tmp_path / "ledger")
    for name, table in original.tables().items():
        pd.testing.assert_frame_equal(loaded.tables()[name], table, check_dtype=True)
    assert (loaded.base_currency, loaded.source) == ("EUR", "tests")


def test_extras_are_written_in_the_same_step(tmp_path):
    truth = pd.DataFrame({"customer_id": ["C1"], "risk": [0.3]})
    write_ledger(tiny_ledger(), tmp_path / "ledger", extras={"truth/customers.parquet": truth})
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ledger/truth/customers.parquet"), truth)
    assert read_ledger(tmp_path / "ledger").customers.shape[0] == 2


def test_an_error_mid_write_leaves_the_old_ledger_byte_identical(tmp_path, monkeypatch):
    target = tmp_path / "ledger"
    write_ledger(tiny_ledger(), target)
    before = fingerprint(target)

    newer = tiny_ledger()
    newer_customers = newer.customers.assign(name=["Changed", "Changed too"])
    written = []

    def failing_write_table(table, where, *args, **kwargs):
        written.append(where)
        if len(written) == 3:
            raise OSError("disk full")
        return real_write_table(table, where, *args, **kwargs)

    real_write_table = pq.write_table
    monkeypatch.setattr(pq, "write_table", failing_write_table)
    with pytest.raises(OSError, match="disk full"):
        write_ledger(newer.replace(customers=newer_customers), target)

    assert fingerprint(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger"]  # no staging directory left behind


def test_an_invalid_ledger_is_refused_before_anything_is_written(tmp_path):
    target = tmp_path / "ledger"
    write_ledger(tiny_ledger(), target)
    before = fingerprint(target)
    ledger = tiny_ledger()
    bad = ledger.invoices.assign(currency="EURO")
    with pytest.raises(LedgerError):
        write_ledger(ledger.replace(invoices=bad), target)
    assert fingerprint(target) == before


def test_a_successful_write_replaces_the_old_ledger_whole(tmp_path):
    target = tmp_path / "ledger"
    write_ledger(tiny_ledger(), target)
    (target / "stale.parquet").write_bytes(b"left from an older format")
    ledger = tiny_ledger()
    write_ledger(ledger.replace(customers=ledger.customers.assign(name=["A", "B"])), target)
    assert not (target / "stale.parquet").exists()
    assert read_ledger(target).customers["name"].tolist() == ["A", "B"]


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda d: (d / "ledger.json").unlink(), "ledger.json"),
        (lambda d: (d / "ledger.json").write_text("{not json"), "ledger.json"),
        (lambda d: (d / "ledger.json").write_text(json.dumps({"format": "other"})), "ledger.json"),
        (lambda d: (d / "invoices.parquet").unlink(), "invoices.parquet"),
        (lambda d: (d / "payments.parquet").write_bytes(b"garbage"), "payments.parquet"),
    ],
)
def test_unreadable_ledgers_get_an_error_naming_the_file(tmp_path, damage, named):
    write_ledger(tiny_ledger(), tmp_path / "ledger")
    damage(tmp_path / "ledger")
    with pytest.raises(LedgerError) as raised:
        read_ledger(tmp_path / "ledger")
    assert named in str(raised.value)


def test_reading_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(LedgerError, match="no such ledger directory"):
        read_ledger(tmp_path / "nowhere")


def test_fingerprint_changes_with_any_value_and_survives_a_round_trip(tmp_path):
    ledger = tiny_ledger()
    write_ledger(ledger, tmp_path / "ledger")
    assert read_ledger(tmp_path / "ledger").fingerprint() == ledger.fingerprint()
    changed = ledger.replace(payments=ledger.payments.assign(amount_base=[1000.0, 100.0, 50.01]))
    assert changed.fingerprint() != ledger.fingerprint()
