"""Remittance data on synthetic payments: valid, deterministic, every kind of noise the cash application
issue names, and a truth that says what each payment really pays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ledger import read_ledger
from ledger.remittance import (
    KINDS,
    RemittanceConfig,
    iban,
    id_token,
    memo_line,
    name_variant,
    with_remittance,
)
from ledger.synthetic import generate_ledger, write_synthetic


@pytest.fixture(scope="module")
def small():
    original, _ = generate_ledger(customers=80, months=8, seed=4)
    ledger, truth = with_remittance(original, seed=4)
    return original, ledger, truth


@pytest.fixture(scope="module")
def large():
    original, _ = generate_ledger(customers=300, months=12, seed=7)
    ledger, truth = with_remittance(original, seed=7)
    return original, ledger, truth


def flagged(truth: pd.DataFrame, kind: str) -> pd.Series:
    return truth["kinds"].str.split("|").apply(lambda kinds: kind in kinds)


def share(truth: pd.DataFrame, kind: str, among: pd.Series | None = None) -> float:
    flags = flagged(truth, kind)
    return float(flags[among].mean() if among is not None else flags.mean())


def test_result_validates_and_leaves_invoices_and_applications_alone(small):
    original, ledger, truth = small
    assert ledger.validate() is ledger
    pd.testing.assert_frame_equal(ledger.invoices, original.invoices)
    # Only the applications of payments net of a cash discount change (test below).
    discounted = set(truth.loc[flagged(truth, "discount").to_numpy(), "payment_id"])
    kept = ~original.payment_applications["payment_id"].isin(discounted)
    pd.testing.assert_frame_equal(ledger.payment_applications[kept], original.payment_applications[kept])
    assert set(original.payments["payment_id"]) <= set(ledger.payments["payment_id"])
    assert list(truth["payment_id"]) == list(ledger.payments["payment_id"])
    for column in ("payer_name", "payer_account", "statement_ref"):
        assert ledger.payments[column].notna().all(), column
    assert ledger.payments["statement_ref"].is_unique


def test_same_seed_same_result_and_another_seed_differs(small):
    original, ledger, truth = small
    again, again_truth = with_remittance(original, seed=4)
    for name, table in ledger.tables().items():
        pd.testing.assert_frame_equal(table, again.tables()[name])
    pd.testing.assert_frame_equal(truth, again_truth)
    other, _ = with_remittance(original, seed=5)
    assert not other.payments["remittance_text"].equals(ledger.payments["remittance_text"])


def test_every_kind_appears_on_a_small_ledger(small):
    _, _, truth = small
    seen = set("|".join(truth["kinds"]).split("|"))
    assert seen == set(KINDS)


def test_plain_text_quotes_every_id_and_no_reference_none(small):
    _, ledger, truth = small
    rows = truth.assign(text=ledger.payments["remittance_text"].to_numpy())
    plain = rows[flagged(truth, "plain")]
    assert len(plain) > 0
    for text, ids in zip(plain["text"], plain["invoice_ids"], strict=True):
        assert all(document_id in text for document_id in ids)
    blank = rows[flagged(truth, "no_reference")]
    assert len(blank) > 0
    for text in blank["text"]:
        assert text is None or not any(char.isdigit() for char in text)


def test_truncated_lines_fit_a_bank_line_and_typos_change_an_id(small):
    _, ledger, truth = small
    texts = ledger.payments["remittance_text"]
    assert (texts[flagged(truth, "truncated")].str.len() <= 140).all()
    typo = truth[flagged(truth, "typo") & ~flagged(truth, "no_prefix") & ~flagged(truth, "duplicate")
                 & ~flagged(truth, "truncated")]
    for text, ids in zip(texts[typo.index], typo["invoice_ids"], strict=True):
        assert not all(document_id in text for document_id in ids)


def test_duplicate_repeats_its_original_and_applies_nothing(small):
    _, ledger, truth = small
    payments = ledger.payments
    duplicate = flagged(truth, "duplicate")
    copies, originals = payments[duplicate.to_numpy()], payments[~duplicate.to_numpy()]
    assert len(copies) > 0 and copies["payment_id"].str.startswith("PAYX-").all()
    assert not copies["payment_id"].isin(ledger.payment_applications["payment_id"]).any()
    assert (truth.loc[duplicate, "invoice_ids"].apply(len) == 0).all()
    assert np.allclose(truth.loc[duplicate, "expected_residual"], copies["amount"])
    same = ["customer_id", "amount", "amount_base", "currency", "payer_name", "payer_account", "remittance_text"]
    matched = copies.fillna({"remittance_text": ""}).merge(originals.fillna({"remittance_text": ""}), on=same,
                                                            suffixes=("", "_original"))
    days = (matched["received_date"] - matched["received_date_original"]).dt.days
    matched = matched[(days >= 0) & (days <= 3)]
    assert set(matched["payment_id"]) == set(copies["payment_id"])


def test_parent_pays_from_its_own_account_for_its_subsidiary(small):
    _, ledger, truth = small
    customers = ledger.customers.set_index("customer_id")
    parent_of = truth["customer_id"].map(customers["parent_id"])
    by_parent = flagged(truth, "parent_payer")
    assert by_parent.sum() > 0 and parent_of[by_parent].notna().all()
    assert not customers.loc[parent_of[by_parent], "parent_id"].notna().any()  # no chains
    assert (ledger.payments.loc[by_parent, "customer_id"] == truth.loc[by_parent, "customer_id"]).all()
    owner = parent_of.where(by_parent, truth["customer_id"])
    assert (owner[by_parent] != truth.loc[by_parent, "customer_id"]).all()
    # Every account belongs to one customer: the parent's accounts are the parent's alone.
    assert (owner.groupby(ledger.payments["payer_account"]).nunique() == 1).all()
    as_named = by_parent & ~flagged(truth, "name_variant")
    assert (ledger.payments.loc[as_named, "payer_name"] == owner[as_named].map(customers["name"])).all()


def test_payer_names_vary_only_where_flagged(small):
    _, ledger, truth = small
    customers = ledger.customers.set_index("customer_id")
    by_parent = flagged(truth, "parent_payer")
    payer = truth["customer_id"].map(customers["parent_id"]).where(by_parent, truth["customer_id"])
    master = payer.map(customers["name"])
    varied = flagged(truth, "name_variant")
    assert (ledger.payments.loc[varied, "payer_name"] != master[varied]).all()
    assert (ledger.payments.loc[~varied, "payer_name"] == master[~varied]).all()


def test_residual_is_amount_minus_applied_and_positive_for_over_and_duplicate_payments(small):
    _, ledger, truth = small
    applied = ledger.payments["payment_id"].map(ledger.payment_applications.groupby("payment_id")["amount"].sum())
    assert np.allclose(truth["expected_residual"], ledger.payments["amount"] - applied.fillna(0.0), atol=0.005)
    extra = flagged(truth, "overpayment") | flagged(truth, "duplicate")
    assert (truth.loc[extra, "expected_residual"] > 0).all()
    assert (truth.loc[~extra, "expected_residual"].abs() < 0.005).all()


def test_a_cash_discount_lowers_payment_and_application_and_writes_the_discount_off(small):
    original, ledger, truth = small
    discounted = truth.loc[flagged(truth, "discount").to_numpy(), "payment_id"]
    assert len(discounted) > 0
    applications = ledger.payment_applications.set_index("payment_id").loc[discounted]
    paid = ledger.payments.set_index("payment_id").loc[discounted, "amount"]
    invoice = ledger.invoices.set_index("invoice_id").loc[applications["invoice_id"], "amount"].to_numpy()
    written = ledger.writeoffs.set_index("invoice_id").loc[applications["invoice_id"]]
    assert (applications["amount"].to_numpy() == paid.to_numpy()).all()
    rate = 1 - paid.to_numpy() / invoice
    assert ((abs(rate - 0.02) < 0.0005) | (abs(rate - 0.03) < 0.0005)).all()
    assert (abs(written["amount"].to_numpy() + paid.to_numpy() - invoice) < 0.005).all()
    assert (written["date"].to_numpy() == applications["applied_date"].to_numpy()).all()
    assert not flagged(truth, "deduction")[flagged(truth, "discount")].any()
    # Before: each settled its invoice alone, in full, with nothing written off.
    before = original.payments.set_index("payment_id").loc[discounted, "amount"].to_numpy()
    assert (abs(before - invoice) < 0.005).all()
    assert not original.writeoffs["invoice_id"].isin(applications["invoice_id"]).any()


def test_partial_and_deduction_follow_the_ledger(small):
    _, ledger, truth = small
    applications = ledger.payment_applications
    memo_ids = ledger.invoices.loc[ledger.invoices["doc_type"] == "credit_memo", "invoice_id"]
    nets_memo = ledger.payments["payment_id"].isin(applications.loc[applications["invoice_id"].isin(memo_ids),
                                                                    "payment_id"])
    assert (flagged(truth, "deduction")[nets_memo]).all()
    # An instalment: the invoice it pays gets more money later.
    later = applications.sort_values("applied_date").duplicated("invoice_id", keep="last")
    instalments = ledger.payments["payment_id"].isin(applications.loc[later.sort_index(), "payment_id"])
    assert flagged(truth, "partial")[instalments].all()


def test_shares_are_near_the_config_on_a_larger_ledger(large):
    original, ledger, truth = large
    config = RemittanceConfig()
    n = len(original.payments)
    first = truth.index < n
    quoting = first & ~flagged(truth, "no_reference")
    assert share(truth, "name_variant") == pytest.approx(config.name_variant_share, abs=0.03)
    assert share(truth, "no_reference", first) == pytest.approx(config.no_reference_share, abs=0.02)
    assert share(truth, "no_prefix", quoting) == pytest.approx(config.no_prefix_share, abs=0.03)
    assert share(truth, "word_prefix", quoting) == pytest.approx(config.word_prefix_share, abs=0.03)
    assert share(truth, "typo", quoting) == pytest.approx(config.typo_share, abs=0.015)
    assert (len(truth) - n) / n == pytest.approx(config.duplicate_share, abs=0.005)
    raised = ledger.payments["amount"].iloc[:n].to_numpy() > original.payments["amount"].to_numpy() + 0.005
    assert raised.mean() == pytest.approx(config.overpayment_share, abs=0.007)
    assert ledger.customers["parent_id"].notna().mean() == pytest.approx(config.subsidiary_share, abs=0.04)
    subsidiary = truth["customer_id"].isin(ledger.customers.loc[ledger.customers["parent_id"].notna(), "customer_id"])
    assert share(truth, "parent_payer", subsidiary) == pytest.approx(config.parent_pays_share, abs=0.08)
    accounts = ledger.payments.groupby(ledger.payments["payer_account"].str[:2])["payer_account"].nunique()
    assert accounts.sum() > len(ledger.customers)  # some customers pay from a second account


def test_half_unidentified_still_validates(small):
    original, _, _ = small
    ledger, truth = with_remittance(original, seed=4, config=RemittanceConfig(unidentified_share=0.5))
    assert ledger.validate() is ledger
    assert ledger.payments["customer_id"].isna().mean() == pytest.approx(0.5, abs=0.05)
    assert truth["customer_id"].notna().all()


def test_generate_ledger_with_remittance_writes_and_reads_back(tmp_path):
    plain, plain_truth = generate_ledger(customers=30, months=6, seed=2)
    ledger, truth = generate_ledger(customers=30, months=6, seed=2, remittance=True)
    assert "payer_name" not in plain.payments and "truth/remittance.parquet" not in plain_truth
    expected, expected_truth = with_remittance(plain, seed=2)
    pd.testing.assert_frame_equal(ledger.payments, expected.payments)
    pd.testing.assert_frame_equal(truth["truth/remittance.parquet"], expected_truth)
    write_synthetic(ledger, truth, tmp_path / "ledger")
    back = read_ledger(tmp_path / "ledger")
    assert back.payments["remittance_text"].equals(ledger.payments["remittance_text"])
    stored = pd.read_parquet(tmp_path / "ledger" / "truth" / "remittance.parquet")
    assert [list(ids) for ids in stored["invoice_ids"]] == [list(ids) for ids in expected_truth["invoice_ids"]]


def test_small_pieces_by_hand():
    assert id_token("INV000123", "full") == "INV000123"
    assert id_token("INV000123", "digits") == "000123"
    assert id_token("INV000123", "number") == "123"
    line, typo, cut = memo_line(["INV000123", "INV000124"], "full", "RE ", ", ", float("nan"), 1, 140)
    assert (line, typo, cut) == ("RE INV000123, INV000124", False, False)
    line, typo, cut = memo_line(["INV000123"] * 4, "full", "", " ", float("nan"), 1, 35)
    assert (line, cut) == ("INV000123 INV000123 INV000123 INV00", True)
    line, typo, _ = memo_line(["INV000123"], "number", "", " ", 0.99, 2, 140)
    assert (line, typo) == ("125", True)
    account = iban("DE", "370400440532013000")
    assert account == "DE89370400440532013000"  # the textbook example IBAN
    assert name_variant("Nordwind GmbH", "legal_form", 0.0, 0.0, 35) == "Nordwind GMBH"
    assert name_variant("Nordwind GmbH", "upper", 0.0, 0.0, 35) == "NORDWIND GMBH"
    assert name_variant("Nordwind GmbH", "extra_words", 0.0, 0.0, 20) == "NORDWIND GMBH ZAHLUN"
