"""The ledger: data contract, validation, storage, ERP import and the synthetic generator."""

from ledger.errors import ArRiskError, BadInput, Conflict, LedgerError, NoModel, NotFound, Problem
from ledger.store import Ledger, read_ledger, write_ledger
from ledger.validation import ledger_problems, validate_tables

__all__ = ["ArRiskError", "BadInput", "Conflict", "Ledger", "LedgerError", "NoModel", "NotFound", "Problem", "ledger_problems", "read_ledger", "validate_tables", "write_ledger"]
