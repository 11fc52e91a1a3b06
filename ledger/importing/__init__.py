"""Import ERP exports into a validated ledger (`arrisk import SOURCE... --mapping NAME_OR_FILE`).

A mapping (configs/mappings/*.yaml, checked by `ledger.importing.mappings`) says how the export's
columns become ledger tables; its `payments.derive` picks one of three readers. Bad input raises
`LedgerError` naming file, line and column; nothing is written here, so the caller's target
ledger is untouched on any error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ledger.errors import LedgerError, Problem
from ledger.importing.clearing_documents import line_items_import, line_items_ledger
from ledger.importing.ledger_tables import DERIVED_COLUMNS, ledger_tables_ledger, parsed_column, table_files
from ledger.importing.mappings import (
    LedgerTablesMapping,
    LineItemsMapping,
    SettledInvoicesMapping,
    load_mapping,
    shipped_mapping_names,
)
from ledger.importing.settled_invoices import settled_invoices_ledger, write_settled_invoices
from ledger.importing.sources import CHUNK_ROWS, SourceTable, match_columns, read_first_rows
from ledger.partitions import PartitionedWriter
from ledger.schema import SCHEMAS, columns_of
from ledger.store import Ledger

__all__ = ["FieldCheck", "FileCheck", "check_mapping", "import_ledger", "import_notes", "import_partitioned",
           "load_mapping", "shipped_mapping_names"]
CHECK_ROWS = 20  # data rows of each file whose cells `check_mapping` parses


def import_ledger(sources: Sequence[str | Path], mapping: str | Path, *, chunk_rows: int = CHUNK_ROWS) -> Ledger:
    """A validated ledger from export files (or, for generic_csv, one folder) and a mapping name or
    YAML path, files read `chunk_rows` lines at a time; `LedgerError` naming file, line and column on
    bad input."""
    return import_ledger_with_report(sources, mapping, chunk_rows=chunk_rows)[0]


def import_ledger_with_report(sources: Sequence[str | Path], mapping: str | Path, *,
                              chunk_rows: int = CHUNK_ROWS) -> tuple[Ledger, list[str]]:
    """`import_ledger` and what the import has to say besides the ledger: for line items, how many residual
    items and partial payments each rule linked to their invoice and what could not be kept."""
    name, config, paths = _resolved(sources, mapping)
    if isinstance(config, LineItemsMapping):
        ledger, report = line_items_import(paths, config, name, chunk_rows)
        return ledger, report.lines()
    return _import(name, config, paths, chunk_rows), []


def _import(name: str, config, paths: list[Path], chunk_rows: int) -> Ledger:
    if isinstance(config, SettledInvoicesMapping):
        return settled_invoices_ledger(paths, config, name, chunk_rows)
    if isinstance(config, LineItemsMapping):
        return line_items_ledger(paths, config, name, chunk_rows)
    if isinstance(config, LedgerTablesMapping):
        return ledger_tables_ledger(paths, config, name, chunk_rows)
    raise TypeError(f"no reader for {type(config).__name__}")  # pragma: no cover - MODEL_BY_DERIVE covers all


def import_partitioned(sources: Sequence[str | Path], mapping: str | Path, out: str | Path, partitions: int, *,
                       chunk_rows: int = CHUNK_ROWS) -> tuple[dict[str, int], list[str]]:
    """Import into a ledger at `out` partitioned into `partitions` buckets by customer, atomically; returns
    rows written per table and what the import has to say besides (as `import_ledger_with_report`). Flat
    invoice lists (ibm_sample) stream chunk by chunk into the buckets; the other layouts derive tables
    across rows, so their parsed rows are held and written in one go."""
    name, config, paths = _resolved(sources, mapping)
    report: list[str] = []
    with PartitionedWriter(out, partitions, config.base_currency, f"import:{name}") as writer:
        if isinstance(config, SettledInvoicesMapping):
            write_settled_invoices(paths, config, writer, chunk_rows)
        else:
            ledger, report = import_ledger_with_report(paths, mapping, chunk_rows=chunk_rows)
            writer.add(ledger)
        writer.finish()
        return dict(writer.rows), report


def _resolved(sources: Sequence[str | Path], mapping: str | Path) -> tuple[str, object, list[Path]]:
    name, config = load_mapping(mapping)
    paths = [Path(source) for source in sources]
    if not paths:
        raise LedgerError(Problem("SOURCE", None, None, "no export file given"), title="bad import source")
    return name, config, paths


@dataclass(frozen=True)
class FieldCheck:
    """How one ledger field is fed from a file: the source names tried, the header that matched (None:
    the file has none), whether the import needs it, and what went wrong parsing the first rows."""

    field: str
    names: tuple[str, ...]
    header: str | None
    required: bool
    derived: bool = False  # computed by the ledger when absent, checked when present
    problems: tuple[str, ...] = ()

    @property
    def missing(self) -> bool:
        return self.header is None

    @property
    def status(self) -> str:
        """ok, ok (synonym), missing: error, missing: note or derived."""
        if not self.missing:
            bad = f", {len(self.problems)} bad cell(s)" if self.problems else ""
            return ("ok (synonym)" if self.header != self.names[0] else "ok") + bad
        if self.derived:
            return "derived"
        return "missing: error" if self.required else "missing: note"


@dataclass(frozen=True)
class FileCheck:
    """A file's header and first rows checked against a mapping (`check_mapping`)."""

    file: str
    fields: list[FieldCheck]
    ignored: list[str] = field(default_factory=list)  # source columns no field reads
    unknown: list[str] = field(default_factory=list)  # source columns that are an error (generic_csv)
    rows: int = 0  # data rows parsed
    # Notes on absent optional columns: mapped columns (ERP layouts); not the ledger's own optional
    # columns in generic_csv, which are simply left out.
    notes_on_absent: bool = True

    @property
    def missing_required(self) -> list[FieldCheck]:
        return [check for check in self.fields if check.missing and check.required and not check.derived]

    @property
    def can_import(self) -> bool:
        """Whether the header allows the import (bad cells are reported by the import itself)."""
        return not self.missing_required and not self.unknown

    def notes(self) -> list[str]:
        """One line per mapped column the file lacks that the import can do without."""
        name = Path(self.file).name
        notes = []
        for check in self.fields:
            if check.missing and check.derived:
                notes.append(f"note: {name} has no {check.field} column: {check.field} is derived from the payments")
            elif check.missing and not check.required and self.notes_on_absent:
                notes.append(f"note: {name} has no {' / '.join(check.names)} column: {check.field} stays empty")
        return notes

    def reason(self) -> str:
        """What keeps the file from being imported, in one line ('' when nothing does)."""
        parts = [f"{' / '.join(check.names)} ({check.field})" for check in self.missing_required]
        lacks = f"lacks the required column(s) {', '.join(parts)}" if parts else ""
        unknown = f"has unknown column(s) {', '.join(self.unknown)}" if self.unknown else ""
        return f"{Path(self.file).name} " + " and ".join(part for part in (lacks, unknown) if part) if (
            lacks or unknown) else ""


def check_mapping(sources: Sequence[str | Path], mapping: str | Path, *, rows: int = CHECK_ROWS) -> list[FileCheck]:
    """Per export file, which source column feeds each ledger field of the mapping (or that none does),
    which columns are ignored, and what fails to parse in the first `rows` rows; reads nothing more and
    writes nothing. `LedgerError` only when the mapping or a file cannot be read at all."""
    _, config, paths = _resolved(sources, mapping)
    if isinstance(config, LedgerTablesMapping):
        return [_table_file_check(table, read_first_rows(path, config.format, rows))
                for table, path in table_files(paths).items()]
    return [_mapped_file_check(config, read_first_rows(path, config.format, rows)) for path in paths]


def import_notes(checks: Sequence[FileCheck]) -> list[str]:
    """The notes of an import: per file, each mapped column it lacks and the ledger field left empty."""
    return [note for check in checks for note in check.notes()]


PARSERS = {"date": SourceTable.dates, "money": SourceTable.money, "whole": SourceTable.whole_numbers,
           "text": SourceTable.text}


def _mapped_file_check(config: SettledInvoicesMapping | LineItemsMapping, source: SourceTable) -> FileCheck:
    columns = config.columns
    header = list(source.cells.columns)
    matches = match_columns(header, columns.mapped())
    for match in matches:
        if match.header is not None:
            PARSERS[type(columns).KINDS.get(match.field, "text")](source, match.header)
    fields = [FieldCheck(match.field, match.column.names, match.header, match.column.required,
                         problems=_problems_of(source, match.header)) for match in matches]
    used = {match.header for match in matches}
    dropped = set(getattr(config, "dropped_columns", ()))
    return FileCheck(source.file, fields, ignored=[name for name in header if name not in used or name in dropped],
                     rows=len(source))


def _table_file_check(table: str, source: SourceTable) -> FileCheck:
    schema = SCHEMAS[table].columns
    required = set(columns_of(table, required_only=True))
    derived = set(DERIVED_COLUMNS.get(table, ()))
    fields = []
    for column, spec in schema.items():
        present = column in source.cells
        if present:
            parsed_column(source, column, str(spec.dtype), spec.nullable)
        fields.append(FieldCheck(column, (column,), column if present else None, column in required,
                                 derived=column in derived, problems=_problems_of(source, column)))
    unknown = [name for name in source.cells.columns if name not in schema]
    return FileCheck(source.file, fields, unknown=unknown, rows=len(source), notes_on_absent=False)


def _problems_of(source: SourceTable, column: str | None) -> tuple[str, ...]:
    return tuple(f"line {problem.row}: {problem.message}" for problem in source.problems
                 if column is not None and problem.column == column)
