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
from ledger.importing.settled_invoices import settled_invoices_ledger, write_settled_invoices
from ledger.importing.sources import CHUNK_ROWS
from ledger.partitions import PartitionedWriter
from ledger.store import Ledger

__all__ = ["import_ledger", "import_partitioned", "load_mapping", "shipped_mapping_names"]


def import_ledger(sources: Sequence[str | Path], mapping: str | Path, *, chunk_rows: int = CHUNK_ROWS) -> Ledger:
    """A validated ledger from export files (or, for generic_csv, one folder) and a mapping name or
    YAML path, files read `chunk_rows` lines at a time; `LedgerError` naming file, line and column on
    bad input."""
    name, config, paths = _resolved(sources, mapping)
    if isinstance(config, SettledInvoicesMapping):
        return settled_invoices_ledger(paths, config, name, chunk_rows)
    if isinstance(config, LineItemsMapping):
        return line_items_ledger(paths, config, name, chunk_rows)
    if isinstance(config, LedgerTablesMapping):
        return ledger_tables_ledger(paths, config, name, chunk_rows)
    raise TypeError(f"no reader for {type(config).__name__}")  # pragma: no cover - MODEL_BY_DERIVE covers all


def import_partitioned(sources: Sequence[str | Path], mapping: str | Path, out: str | Path, partitions: int, *,
                       chunk_rows: int = CHUNK_ROWS) -> dict[str, int]:
    """Import into a ledger at `out` partitioned into `partitions` buckets by customer, atomically; returns
    rows written per table. Flat invoice lists (ibm_sample) stream chunk by chunk into the buckets; the
    other layouts derive tables across rows, so their parsed rows are held and written in one go."""
    name, config, paths = _resolved(sources, mapping)
    with PartitionedWriter(out, partitions, config.base_currency, f"import:{name}") as writer:
        if isinstance(config, SettledInvoicesMapping):
            write_settled_invoices(paths, config, writer, chunk_rows)
        else:
            writer.add(import_ledger(paths, mapping, chunk_rows=chunk_rows))
        writer.finish()
        return dict(writer.rows)


def _resolved(sources: Sequence[str | Path], mapping: str | Path) -> tuple[str, object, list[Path]]:
    name, config = load_mapping(mapping)
    paths = [Path(source) for source in sources]
    if not paths:
        raise LedgerError(Problem("SOURCE", None, None, "no export file given"), title="bad import source")
    return name, config, paths
