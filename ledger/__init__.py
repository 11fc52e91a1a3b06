"""The ledger: data contract, validation, storage, ERP import and the synthetic generator."""

from ledger.errors import LedgerError, Problem
from ledger.store import Ledger, read_ledger, write_ledger
from ledger.validation import ledger_problems, validate_tables

__all__ = ["Ledger", "LedgerError", "Problem", "ledger_problems", "read_ledger", "validate_tables", "write_ledger"]
