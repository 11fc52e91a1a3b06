"""Import ERP exports into a validated ledger (`arrisk import SOURCE... --mapping NAME_OR_FILE`).

A mapping (configs/mappings/*.yaml, checked by `ledger.importing.mappings`) says how the export's
columns become ledger tables; its `payments.derive` picks one of three readers. Bad input raises
`LedgerError` naming file, line and column; nothing is written here, so the caller's target
ledger is untouched on any error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ledger.errors import LedgerError, Problem
from ledger.importing.clearing_documents import line_items_ledger
from ledger.importing.ledger_tables import ledger_tables_ledger
from ledger.importing.mappings import (
    LedgerTablesMapping,
    LineItemsMapping,
    SettledInvoicesMapping,
    load_mapping,
    shipped_mapping_names,
)
from ledger.importing.settled_invoices import settled_invoices_ledger
from ledger.store import Ledger

__all__ = ["import_ledger", "load_mapping", "shipped_mapping_names"]


def import_ledger(sources: Sequence[str | Path], mapping: str | Path) -> Ledger:
    """A validated ledger from export files (or, for generic_csv, one folder) and a mapping name or
    YAML path; `LedgerError` naming file, line and column on bad input."""
    name, config = load_mapping(mapping)
    paths = [Path(source) for source in sources]
    if not paths:
        raise LedgerError(Problem("SOURCE", None, None, "no export file given"), title="bad import source")
    if isinstance(config, SettledInvoicesMapping):
        return settled_invoices_ledger(paths, config, name)
    if isinstance(config, LineItemsMapping):
        return line_items_ledger(paths, config, name)
    if isinstance(config, LedgerTablesMapping):
        return ledger_tables_ledger(paths, config, name)
    raise TypeError(f"no reader for {type(config).__name__}")  # pragma: no cover - MODEL_BY_DERIVE covers all
