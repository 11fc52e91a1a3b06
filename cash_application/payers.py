"""Who paid: the customer behind a payment, from what a bank statement line carries.

In order: the customer the ledger already names; the payer account seen before on that customer's payments;
the payer name, fuzzily, against the customer master and the payer names seen before (rapidfuzz); the
invoice numbers quoted in the memo line, when they all belong to one customer. A customer of a group
(`customers.parent_id`) pays for, or is paid for by, the other members: `group_of` names the group.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process

# Legal forms and filler that differ between a customer master and what a bank shows; left out of a name
# before comparing.
LEGAL_FORMS = {"GMBH", "MBH", "AG", "KG", "CO", "CORP", "CORPORATION", "INC", "LTD", "LIMITED", "LLC", "PLC",
               "SA", "SAS", "SARL", "SPA", "SRL", "BV", "NV", "OY", "AB", "AS", "KK", "PTY", "THE", "AND", "&"}
NOT_WORD = re.compile(r"[^A-Z0-9&]+")
METHODS = ("ledger", "account", "name", "reference", "none")


def normalised_name(name: object) -> str:
    """Upper case, punctuation and legal forms dropped, single spaces: 'Acme GmbH & Co. KG' -> 'ACME'."""
    if not isinstance(name, str):
        return ""
    words = [word for word in NOT_WORD.sub(" ", name.upper()).split() if word not in LEGAL_FORMS]
    return " ".join(words)


def group_of(customers: pd.DataFrame) -> pd.Series:
    """customer_id -> its group: the parent's id for a subsidiary, its own id otherwise."""
    own = customers["customer_id"]
    parent = customers["parent_id"] if "parent_id" in customers else pd.Series(None, index=customers.index)
    return pd.Series(parent.where(parent.notna(), own).to_numpy(), index=own.to_numpy())


def account_owners(payments: pd.DataFrame) -> pd.Series:
    """payer_account -> the customer that paid from it most often (ties: the smallest id), from payments
    whose customer is known."""
    if "payer_account" not in payments:
        return pd.Series(dtype=object)
    seen = payments.dropna(subset=["payer_account", "customer_id"])
    counts = seen.groupby(["payer_account", "customer_id"]).size().rename("n").reset_index()
    counts = counts.sort_values(["payer_account", "n", "customer_id"], ascending=[True, False, True])
    return counts.drop_duplicates("payer_account").set_index("payer_account")["customer_id"]


def name_choices(customers: pd.DataFrame, payments: pd.DataFrame,
                 aliases: pd.DataFrame | None = None) -> pd.DataFrame:
    """The names a customer is known by, normalised: the master's, the payer names on its past payments and
    confirmed aliases (payer_name, customer_id); a name two customers share is left out (it identifies
    neither)."""
    frames = [pd.DataFrame({"name": customers["name"], "customer_id": customers["customer_id"]})]
    if "payer_name" in payments:
        seen = payments.dropna(subset=["payer_name", "customer_id"])
        frames.append(pd.DataFrame({"name": seen["payer_name"], "customer_id": seen["customer_id"]}))
    if aliases is not None and len(aliases):
        frames.append(aliases.rename(columns={"payer_name": "name"})[["name", "customer_id"]])
    names = pd.concat(frames, ignore_index=True)
    names["key"] = names["name"].map(normalised_name)
    names = names[names["key"] != ""].drop_duplicates(["key", "customer_id"])
    return names[~names["key"].duplicated(keep=False)][["key", "customer_id"]].reset_index(drop=True)


def customers_by_name(payer_names: pd.Series, choices: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per payer name: the best-matching customer and its score (token_set_ratio on normalised names), or
    no customer when none reaches `threshold`, or when the best score is shared by two customers."""
    keys = payer_names.map(normalised_name)
    distinct = [key for key in pd.unique(keys) if key]
    found = {}
    for key in distinct:
        best = process.extract(key, choices["key"].tolist(), scorer=fuzz.token_set_ratio, limit=2,
                               score_cutoff=threshold)
        if not best:
            continue
        top = best[0]
        winners = {choices["customer_id"].iat[index] for _, score, index in best if score == top[1]}
        if len(winners) == 1:
            found[key] = (winners.pop(), top[1])
    customer = keys.map(lambda key: found.get(key, (None, 0.0))[0])
    score = keys.map(lambda key: found.get(key, (None, 0.0))[1]).astype(float)
    return pd.DataFrame({"customer_id": customer.to_numpy(), "name_score": score.to_numpy()}, index=payer_names.index)


def identified_customers(payments: pd.DataFrame, known_payments: pd.DataFrame, customers: pd.DataFrame,
                         referenced_customer: pd.Series, threshold: float,
                         aliases: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per payment (same index): `customer_id`, `identified_by` (one of METHODS) and `name_score`.
    `known_payments` are the payments whose payer is known (the history), `referenced_customer` the one
    customer the memo line's invoice numbers point to (None where they point to none or to several)."""
    customer = payments["customer_id"].copy() if "customer_id" in payments else pd.Series(None, index=payments.index)
    method = pd.Series(np.where(customer.notna(), "ledger", "none"), index=payments.index, dtype=object)
    owners = account_owners(known_payments)
    if "payer_account" in payments and len(owners):
        by_account = payments["payer_account"].map(owners)
        use = customer.isna() & by_account.notna()
        customer, method = customer.where(~use, by_account), method.where(~use, "account")
    score = pd.Series(0.0, index=payments.index)
    if "payer_name" in payments:
        named = customers_by_name(payments["payer_name"], name_choices(customers, known_payments, aliases),
                                  threshold)
        score = named["name_score"]
        use = customer.isna() & named["customer_id"].notna()
        customer, method = customer.where(~use, named["customer_id"]), method.where(~use, "name")
    use = customer.isna() & referenced_customer.notna()
    customer, method = customer.where(~use, referenced_customer), method.where(~use, "reference")
    return pd.DataFrame({"customer_id": customer, "identified_by": method, "name_score": score})
