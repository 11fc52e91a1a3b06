"""Import mappings: YAML files that say how an ERP export's columns become ledger tables.

A mapping is checked by the pydantic models below, with unknown keys rejected. Its
`payments.derive` picks the reader, one per export layout:

- `settled_date`: one row per invoice with the date it was settled (the IBM sample);
- `clearing_documents`: customer line items with clearing documents (SAP FBL5N);
- `table`: one CSV per ledger table in the ledger's own columns (generic_csv).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from configs import config_path
from ledger.currencies import ISO_4217
from ledger.errors import LedgerError, Problem

MAPPINGS_DIR = config_path("mappings")
UNION_MEMBER = re.compile(r"^(int|float|str|bool|none|[a-z-]+\[.*\])$")



class SourceColumn(str):
    """A mapped source column: one header, or synonyms (`[Belegnummer, Document Number]`) of which the
    first one present in a file is read. It is the first name as a string, so readers use it as the key
    of the file's column (`SourceTable.require_columns` puts the matched header's cells under it);
    `required` says whether a file may lack it (set by the columns section it is in)."""

    names: tuple[str, ...]
    required: bool

    def __new__(cls, names: Sequence[str], required: bool = True) -> SourceColumn:
        column = super().__new__(cls, names[0])
        column.names, column.required = tuple(names), required
        return column

    def __repr__(self) -> str:
        return repr(list(self.names)) if len(self.names) > 1 else super().__repr__()

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        name = core_schema.str_schema(min_length=1, strip_whitespace=True)
        names = core_schema.union_schema([name, core_schema.list_schema(name, min_length=1)],
                                         custom_error_type="source_column",
                                         custom_error_message="expected a column name or a list of synonyms")
        return core_schema.no_info_after_validator_function(
            lambda value: cls([value] if isinstance(value, str) else value), names,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda column: column))


class StrictModel(BaseModel):
    """A mapping section: unknown keys are an error, so a typo never goes unnoticed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceColumns(StrictModel):
    """A `columns:` section: ledger field -> source column(s). The reader needs the fields in
    `REQUIRED` to build the ledger; a file may lack any other mapped column (the field stays empty and
    the import says so). `KINDS` says how each field's cells parse (text unless named)."""

    REQUIRED: ClassVar[frozenset[str]] = frozenset()
    KINDS: ClassVar[dict[str, str]] = {}

    @field_validator("*")
    @classmethod
    def _required_or_optional(cls, column: SourceColumn | None, info: ValidationInfo) -> SourceColumn | None:
        if column is None:
            return None
        return SourceColumn(column.names, required=info.field_name in cls.REQUIRED)

    def mapped(self) -> dict[str, SourceColumn]:
        """Each mapped field's source column(s), in the section's order."""
        return {field: column for field in type(self).model_fields if (column := getattr(self, field)) is not None}


def _iso_currency(code: str) -> str:
    if code not in ISO_4217:
        raise ValueError(f"expected an ISO 4217 currency code such as EUR, got {code!r}")
    return code


def _known_encoding(encoding: str) -> str:
    if encoding != "auto":
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {encoding!r}: expected auto, utf-8, cp1252, ...") from None
    return encoding


Currency = Annotated[str, AfterValidator(_iso_currency)]


class SourceFormat(StrictModel):
    """How the export writes text: separators, dates, numbers and empty cells."""

    delimiter: str = Field(",", min_length=1, max_length=1)
    encoding: Annotated[str, AfterValidator(_known_encoding)] = "auto"  # auto: UTF-8 (with or without BOM), else Windows-1252 as Excel writes it
    sheet: str | None = None  # .xlsx: the sheet to read (default: the first)
    date_format: str = "%Y-%m-%d"
    decimal: str = Field(".", min_length=1, max_length=1)
    thousands: str | None = Field(None, min_length=1, max_length=1)
    null_values: list[str] = Field(default_factory=lambda: [""])

    @model_validator(mode="after")
    def _separators_differ(self) -> SourceFormat:
        if self.thousands == self.decimal:
            raise ValueError("decimal and thousands separators must differ")
        return self


class CustomerDefaults(StrictModel):
    """Customer fields the export does not carry."""

    segment: str = "unknown"
    country: str = "unknown"
    # from_due_dates: each customer's most common (due date - invoice date) over its invoices.
    payment_terms_days: int | Literal["from_due_dates"] = "from_due_dates"
    credit_limit: float | None = Field(None, ge=0)


# --- settled_date: one row per invoice (IBM sample) -------------------------------------------------


class SettledInvoiceColumns(SourceColumns):
    """Source column for each ledger field; optional ones fall back to `constants`."""

    REQUIRED = frozenset({"customer_id", "invoice_id", "invoice_date", "due_date", "amount", "settled_date"})
    KINDS = {"invoice_date": "date", "due_date": "date", "settled_date": "date", "amount": "money"}

    customer_id: SourceColumn
    invoice_id: SourceColumn
    invoice_date: SourceColumn
    due_date: SourceColumn
    amount: SourceColumn
    settled_date: SourceColumn
    customer_name: SourceColumn | None = None
    country: SourceColumn | None = None
    currency: SourceColumn | None = None
    disputed: SourceColumn | None = None
    delivery_channel: SourceColumn | None = None


class Constants(StrictModel):
    """Values the export lacks, the same for every row."""

    currency: Currency | None = None


class SettledPayments(StrictModel):
    """Each settled invoice gets one payment, received and fully applied on its settled date."""

    derive: Literal["settled_date"]


class FlagDisputes(StrictModel):
    """A yes/no column becomes one dispute per flagged invoice, over its whole amount."""

    flag_values: list[str] = Field(default_factory=lambda: ["Yes"], min_length=1)
    # The flag has no date. invoice_date: disputes are raised on receipt of the invoice;
    # due_date: raised by the due date at the latest (never after the invoice was settled).
    opened_at: Literal["invoice_date", "due_date"] = "invoice_date"
    reason: str = Field("disputed", min_length=1)


class SettledInvoicesMapping(StrictModel):
    """A flat invoice list: one row per invoice, a settled date when paid."""

    base_currency: Currency
    format: SourceFormat = SourceFormat()
    columns: SettledInvoiceColumns
    constants: Constants = Constants()
    customers: CustomerDefaults = CustomerDefaults()
    # Columns never imported, e.g. labels computed from the outcome (days late): listed so the
    # mapping says so, and so that mapping one of them is an error.
    dropped_columns: list[str] = Field(default_factory=list)
    disputes: FlagDisputes | None = None
    # Source value -> ledger delivery channel (paper / electronic), used with columns.delivery_channel.
    delivery_channels: dict[str, Literal["paper", "electronic"]] = Field(default_factory=dict)
    payments: SettledPayments

    @model_validator(mode="after")
    def _consistent(self) -> SettledInvoicesMapping:
        if self.columns.currency is None and self.constants.currency is None:
            raise ValueError("set columns.currency or constants.currency")
        if self.columns.currency is None and self.constants.currency != self.base_currency:
            raise ValueError("constants.currency must be the base_currency: this layout has no base amounts")
        if self.columns.disputed is None and self.disputes is not None:
            raise ValueError("disputes needs columns.disputed")
        mapped = {name for column in self.columns.mapped().values() for name in column.names}
        if leaked := sorted(mapped & set(self.dropped_columns)):
            raise ValueError(f"dropped columns are mapped in columns: {', '.join(leaked)}")
        return self


# --- clearing_documents: customer line items (SAP FBL5N) --------------------------------------------


class LineItemColumns(SourceColumns):
    """Source column for each line-item field (SAP FBL5N names, German and English, in the shipped
    mapping). Without the required ones no ledger can be built; the others enrich it when present."""

    REQUIRED = frozenset({"customer_id", "document", "document_type", "invoice_date", "posting_date", "due_date",
                          "amount", "currency", "amount_base", "clearing_document", "clearing_date"})
    KINDS = {"invoice_date": "date", "posting_date": "date", "due_date": "date", "clearing_date": "date",
             "dunning_date": "date", "amount": "money", "amount_base": "money", "dunning_level": "whole"}

    customer_id: SourceColumn
    document: SourceColumn
    document_type: SourceColumn
    invoice_date: SourceColumn
    posting_date: SourceColumn
    due_date: SourceColumn
    amount: SourceColumn
    currency: SourceColumn
    amount_base: SourceColumn
    clearing_document: SourceColumn
    clearing_date: SourceColumn
    base_currency: SourceColumn  # optional in a file: checked against the mapping's base_currency when there
    invoice_reference: SourceColumn | None = None
    assignment: SourceColumn | None = None  # Zuordnung (ZUONR): often the customer's order number
    reference: SourceColumn | None = None  # Referenz (XBLNR): the reference document number
    text: SourceColumn | None = None  # the item text
    payment_terms: SourceColumn | None = None  # Zahlungsbedingung, e.g. ZB30
    customer_name: SourceColumn | None = None
    # A dunning level without the date of the last notice is accepted: the level is kept, its date unknown.
    dunning_level: SourceColumn | None = None
    dunning_date: SourceColumn | None = None
    dunning_block: SourceColumn | None = None


class ClearingPayments(StrictModel):
    """Payments and applications rebuilt from the clearing documents."""

    derive: Literal["clearing_documents"]


class LineItemsMapping(StrictModel):
    """Customer line items: documents, their types and the documents that cleared them."""

    base_currency: Currency
    format: SourceFormat = SourceFormat()
    columns: LineItemColumns
    document_types: dict[str, Literal["invoice", "credit_memo", "payment", "clearing"]] = Field(min_length=1)
    customers: CustomerDefaults = CustomerDefaults()
    payments: ClearingPayments


# --- table: the ledger's own tables as CSV (generic_csv) ---------------------------------------------


class TablePayments(StrictModel):
    """Payments and applications are read from payments.csv and payment_applications.csv."""

    derive: Literal["table"]


class LedgerTablesMapping(StrictModel):
    """One CSV per ledger table, named after it, with the ledger's column names."""

    base_currency: Currency
    format: SourceFormat = SourceFormat()
    payments: TablePayments


ImportMapping = SettledInvoicesMapping | LineItemsMapping | LedgerTablesMapping
MODEL_BY_DERIVE: dict[str, type[StrictModel]] = {
    "settled_date": SettledInvoicesMapping,
    "clearing_documents": LineItemsMapping,
    "table": LedgerTablesMapping,
}


def shipped_mapping_names() -> list[str]:
    """Names of the mappings shipped in configs/mappings."""
    return sorted(path.stem for path in MAPPINGS_DIR.glob("*.yaml"))


def mapping_file(mapping: str | Path) -> Path:
    """The YAML file a mapping name or path stands for; `LedgerError` when there is none."""
    text = str(mapping)
    is_path = isinstance(mapping, Path) or text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text
    if is_path:
        path = Path(mapping)
        if not path.is_file():
            raise LedgerError(Problem(text, None, None, "no such mapping file"), title="bad mapping")
        return path
    path = MAPPINGS_DIR / f"{text}.yaml"
    if not path.is_file():
        names = ", ".join(shipped_mapping_names())
        raise LedgerError(Problem(text, None, None, f"unknown mapping name: expected one of {names} "
                                                    "or the path of a YAML file"), title="bad mapping")
    return path


def load_mapping(mapping: str | Path) -> tuple[str, ImportMapping]:
    """The mapping's name and its checked model; `LedgerError` naming file, line and key otherwise."""
    path = mapping_file(mapping)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as error:
        raise LedgerError(Problem(where, None, None, f"cannot read the mapping ({error})"),
                          title="bad mapping") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(error, "problem", None) or str(error)
        raise LedgerError(Problem(where, line, None, f"not valid YAML: {reason}"), title="bad mapping") from None
    if not isinstance(data, dict):
        raise LedgerError(Problem(where, 1, None, "expected a mapping of keys (payments, columns, ...)"),
                          title="bad mapping")
    derive = (data.get("payments") or {}).get("derive") if isinstance(data.get("payments"), dict) else None
    model = MODEL_BY_DERIVE.get(derive) if isinstance(derive, str) else None
    if model is None:
        expected = ", ".join(MODEL_BY_DERIVE)
        raise LedgerError(Problem(where, yaml_line(node, ("payments", "derive")), "payments.derive",
                                  f"expected one of {expected}, got {derive!r}"), title="bad mapping")
    try:
        return path.stem, model.model_validate(data)
    except ValidationError as error:
        problems = [_mapping_problem(where, node, model, detail) for detail in error.errors()]
        raise LedgerError(_merged(problems), title="bad mapping") from None


def _merged(problems: list[Problem]) -> list[Problem]:
    """One problem per key: the alternatives of a union (an int or 'from_due_dates') joined by 'or'."""
    by_key: dict[tuple, list[str]] = {}
    for problem in problems:
        by_key.setdefault((problem.where, problem.row, problem.column), []).append(problem.message)
    return [Problem(where, row, column, " or ".join(dict.fromkeys(messages)))
            for (where, row, column), messages in by_key.items()]


def _mapping_problem(where: str, node: yaml.Node | None, model: type[BaseModel], detail: Any) -> Problem:
    # pydantic adds the member of a union that failed (int, literal['x'], ...) to the location.
    loc = tuple(part for part in detail["loc"] if not UNION_MEMBER.match(str(part)))
    key = ".".join(str(part) for part in loc) or None
    if detail["type"] == "extra_forbidden":
        known = _known_keys(model, loc[:-1])
        message = f"unknown key {loc[-1]!r}" + (f": expected one of {', '.join(known)}" if known else "")
    elif detail["type"] == "missing":
        message = "missing key"
    else:
        message = detail["msg"].removeprefix("Value error, ")
    return Problem(where, yaml_line(node, loc), key, message)


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys allowed at `loc` when it names a nested section; [] when it cannot tell."""
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def yaml_line(node: yaml.Node | None, loc: Sequence) -> int | None:
    """The line (from 1) of the deepest YAML node found along `loc`."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
