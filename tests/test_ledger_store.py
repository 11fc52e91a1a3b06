"""Reading and writing ledgers: round trip, clear errors, and atomic replacement."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
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


# -- a write never deletes what it did not write (issue 14) ------------------------------------------


def test_a_folder_that_is_not_a_ledger_is_refused_and_left_as_it_was(tmp_path):
    target = tmp_path / "x"
    (target / "sub").mkdir(parents=True)
    (target / "important.txt").write_text("precious\n")
    before = fingerprint(target)
    with pytest.raises(LedgerError, match=r"x: is a folder that is not an ar-risk ledger .*important.txt, sub/"):
        write_ledger(tiny_ledger(), target)
    assert fingerprint(target) == before and (target / "sub").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_a_file_or_a_link_in_the_ledgers_place_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(LedgerError, match="is a file"):
        write_ledger(tiny_ledger(), tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    # A link, even to a real ledger, is not followed: the ledger behind it stays as it was.
    write_ledger(tiny_ledger(), tmp_path / "real")
    before = fingerprint(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(LedgerError, match="is a symbolic link"):
        write_ledger(tiny_ledger().replace(source="other"), tmp_path / "link")
    assert fingerprint(tmp_path / "real") == before


def test_dot_is_refused_by_its_real_name(tmp_path, monkeypatch):
    (tmp_path / "README.md").write_text("the project")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LedgerError, match=f"{tmp_path}: is a folder that is not an ar-risk ledger"):
        write_ledger(tiny_ledger(), ".")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]


def test_an_empty_folder_and_a_ledger_of_the_previous_version_are_replaced(tmp_path):
    (tmp_path / "empty").mkdir()
    write_ledger(tiny_ledger(), tmp_path / "empty")
    assert read_ledger(tmp_path / "empty").source == "tests"

    # What the previous code wrote: the Parquet tables and ledger.json, no other marker.
    old = tmp_path / "old"
    old.mkdir()
    for name, table in tiny_ledger().tables().items():
        table.to_parquet(old / f"{name}.parquet", index=False)
    (old / "ledger.json").write_text(json.dumps({"format": "ar-risk-ledger", "version": 1, "base_currency": "EUR",
                                                 "source": "old version", "rows": {}}))
    (old / "truth").mkdir()
    (old / "truth" / "customers.parquet").write_bytes(b"old truth")
    write_ledger(tiny_ledger(), old)
    assert read_ledger(old).source == "tests" and not (old / "truth").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "old"]


def test_something_swapped_in_after_the_check_is_put_back_not_deleted(tmp_path, monkeypatch):
    # Another process replaces the ledger by a folder of its own between the check and the swap: the
    # check after the swap puts that folder back whole instead of deleting it.
    import ledger.store as store

    target = tmp_path / "ledger"
    write_ledger(tiny_ledger(), target)
    real_check = store.refuse_unless_replaceable

    def check_then_swap_in_a_stranger(path):
        real_check(path)
        shutil.rmtree(target)
        (target / "sub").mkdir(parents=True)
        (target / "important.txt").write_text("precious\n")

    monkeypatch.setattr(store, "refuse_unless_replaceable", check_then_swap_in_a_stranger)
    with pytest.raises(LedgerError, match="not an ar-risk ledger"):
        write_ledger(tiny_ledger(), target)
    assert (target / "important.txt").read_text() == "precious\n" and (target / "sub").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger"]


# -- staging a killed writer left behind -------------------------------------------------------------


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_the_next_write_removes_a_dead_writers_staging_and_keeps_a_live_ones(tmp_path):
    target = tmp_path / "ledger"
    write_ledger(tiny_ledger(), target)
    dead = dead_pid()
    leftovers = [tmp_path / f".ledger.{dead}.abcd1234.tmp", tmp_path / f".ledger.{dead}.abcd1234.old"]
    for folder in leftovers:
        folder.mkdir()
        (folder / "customers.parquet").write_bytes(b"half written")
    with subprocess.Popen(["sleep", "60"]) as live_writer:
        live = tmp_path / f".ledger.{live_writer.pid}.efgh5678.tmp"
        live.mkdir()
        not_ours = [tmp_path / ".ledger.notes", tmp_path / f".other.{dead}.abcd1234.tmp"]
        for folder in not_ours:
            folder.mkdir()

        write_ledger(tiny_ledger(), target)

        assert not any(folder.exists() for folder in leftovers)
        assert live.is_dir() and all(folder.is_dir() for folder in not_ours)
        live_writer.kill()
    assert read_ledger(target).source == "tests"
