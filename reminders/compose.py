"""Dunning reminders as messages (issue 22): one per customer and level from the dunning proposal's
proposed rows, in the customer's language, with a statement of account PDF attached.

The language is the first recipient's (`email_contacts.language`), else the customer's country's
(`ReminderPolicy.countries`), else the policy default. The recipients are the customer's e-mail contacts
with a role in `recipient_roles`, or all of its contacts when none has one of those roles; a customer
without any contact gets a reminder with no recipients (it goes to the letter list). Held and skipped
rows of the proposal are never named: the message is built from the proposed rows only.
"""

from __future__ import annotations

import email.utils
import hashlib
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pandas as pd
from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, TemplateNotFound, select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, field_validator

from configs import config_path, validated_policy
from features.asof import known_at
from ledger import Ledger
from ledger.errors import BadInput
from reminders.formatting import calendar_date, locale_of, money
from reminders.statement import statement_pdf
from rules.dunning import PROPOSED

PROPOSAL_COLUMNS = ("customer_id", "invoice_id", "currency", "due_date", "days_past_due", "open_amount", "level",
                    "channel", "fee", "interest", "status")


class ReminderPolicyError(BadInput, ValueError):
    """A reminder policy file that cannot be read or does not validate."""


class PaymentInstructions(BaseModel):
    """Where and how to pay, printed in every reminder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    payee: str = Field(min_length=1)
    iban: str = Field(min_length=1)
    bic: str = Field(min_length=1)
    reference: str = Field(min_length=1, description="Reference text; may use {customer_id}, {level}, {as_of}.")

    @field_validator("reference")
    @classmethod
    def _reference_fields_known(cls, reference: str) -> str:
        try:
            reference.format(customer_id="C1", level=1, as_of="2024-03-31")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"reference may use only {{customer_id}}, {{level}} and {{as_of}}: {error}") from None
        return reference


class ReminderPolicy(BaseModel):
    """Languages, recipients, channels and payment instructions of the reminders; unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "default"
    default_language: str = Field("en", pattern=r"^[a-z]{2}$")
    locales: dict[str, str] = Field(description="Babel locale per language, e.g. en: en_GB, de: de_DE.")
    countries: dict[str, str] = Field(default_factory=dict, description="Language per ISO country code.")
    recipient_roles: tuple[str, ...] = ("billing", "accounts_payable")
    channels: tuple[str, ...] = Field(("email", "letter", "legal"),
                                      description="Dunning channels sent as a written reminder.")
    attach_statement: bool = True
    templates: str | None = Field(None, description="Folder of the Jinja templates; default: the shipped ones.")
    payment: PaymentInstructions

    @field_validator("locales")
    @classmethod
    def _locales_known(cls, locales: dict[str, str]) -> dict[str, str]:
        for language in locales:
            try:
                locale_of(language, locales)
            except BadInput as error:
                raise ValueError(str(error)) from None
        return locales

    def templates_folder(self) -> Path:
        """Where the Jinja templates are: the policy's folder, else the shipped one."""
        return Path(self.templates) if self.templates else config_path("reminders", "templates")


@dataclass(frozen=True)
class Attachment:
    """A file attached to a reminder."""

    filename: str
    content: bytes
    mimetype: str


@dataclass(frozen=True)
class Reminder:
    """One message to one customer for one dunning level as of a date."""

    key: str
    customer_id: str
    level: int
    language: str
    as_of: pd.Timestamp
    recipients: tuple[str, ...]
    subject: str
    text: str
    html: str
    attachments: tuple[Attachment, ...]
    items: tuple[dict, ...]
    totals: dict[str, float]


def reminder_key(customer_id: str, level: int, as_of: pd.Timestamp) -> str:
    """The idempotency key of a reminder: customer, level and run date."""
    return f"{customer_id}:{int(level)}:{pd.Timestamp(as_of):%Y-%m-%d}"


def load_reminder_policy(path: str | Path | None = None) -> ReminderPolicy:
    """Read and validate a reminder policy YAML (default: the shipped one)."""
    path = config_path("reminders", "default.yaml") if path is None else Path(path)
    return validated_policy(path, ReminderPolicy, ReminderPolicyError)


def compose_reminders(ledger: Ledger, as_of: pd.Timestamp, proposal: pd.DataFrame, policy: ReminderPolicy, *,
                      excluded_customers: frozenset[str] = frozenset()) -> list[Reminder]:
    """One reminder per customer and level of the proposal's proposed rows, in customer order."""
    as_of = pd.Timestamp(as_of).normalize()
    rows = proposed_rows(proposal, policy, excluded_customers)
    if rows.empty:
        return []
    known = known_at(ledger, as_of)
    customers = known.customers.set_index("customer_id")
    environment = template_environment(policy)
    reminders = []
    for (customer_id, level), items in rows.groupby(["customer_id", "level"], sort=True):
        if customer_id not in customers.index:
            raise BadInput(f"dunning proposal: customer {customer_id!r} is not in the ledger as of {as_of:%Y-%m-%d}")
        customer = customers.loc[customer_id]
        contacts = recipients(known.email_contacts, customer_id, policy.recipient_roles)
        language = reminder_language(contacts, customer.get("country"), policy)
        reminders.append(reminder(known, as_of, customer_id, str(customer["name"]), int(level), language, contacts,
                                  items, policy, environment))
    return reminders


def proposed_rows(proposal: pd.DataFrame, policy: ReminderPolicy, excluded_customers: frozenset[str]) -> pd.DataFrame:
    """The proposal's rows a reminder names: proposed (never held or skipped), on a written channel, of a
    customer not handed to legal."""
    missing = [column for column in PROPOSAL_COLUMNS if column not in proposal]
    if missing:
        raise BadInput(f"dunning proposal: column(s) missing: {', '.join(missing)}")
    keep = ((proposal["status"] == PROPOSED) & proposal["channel"].isin(policy.channels)
            & ~proposal["customer_id"].isin(excluded_customers))
    return proposal[keep].sort_values(["customer_id", "level", "invoice_id"])


def recipients(email_contacts: pd.DataFrame, customer_id: str, roles: tuple[str, ...]) -> pd.DataFrame:
    """The customer's contacts a reminder goes to: those with one of `roles` (in the roles' order), else all of
    its contacts; none when it has none."""
    contacts = email_contacts[email_contacts["customer_id"] == customer_id]
    with_role = contacts[contacts["role"].isin(roles)]
    if with_role.empty:
        return contacts
    rank = with_role["role"].map({role: number for number, role in enumerate(roles)})
    return with_role.assign(_rank=rank).sort_values("_rank", kind="mergesort").drop(columns="_rank")


def reminder_language(contacts: pd.DataFrame, country: str | None, policy: ReminderPolicy) -> str:
    """The first recipient's language when the policy writes it, else the country's, else the default."""
    if "language" in contacts:
        spoken = [language for language in contacts["language"].dropna() if language in policy.locales]
        if spoken:
            return spoken[0]
    by_country = policy.countries.get(str(country)) if country is not None else None
    return by_country if by_country in policy.locales else policy.default_language


def template_environment(policy: ReminderPolicy) -> SandboxedEnvironment:
    """The Jinja environment of the templates: HTML escaped, undefined names an error."""
    return SandboxedEnvironment(loader=FileSystemLoader(policy.templates_folder()), undefined=StrictUndefined,
                                autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
                                trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def reminder(known: Ledger, as_of: pd.Timestamp, customer_id: str, customer_name: str, level: int, language: str,
             contacts: pd.DataFrame, items: pd.DataFrame, policy: ReminderPolicy,
             environment: SandboxedEnvironment) -> Reminder:
    """The reminder of one customer and level: rendered, with its statement attached."""
    locale = locale_of(language, policy.locales)
    named = reminder_items(items)
    totals = totals_per_currency(named)
    context = template_context(customer_id, customer_name, level, as_of, locale, contacts, named, totals, policy)
    attachments = ()
    if policy.attach_statement:
        attachments = (Attachment(f"statement-{customer_id}-{as_of:%Y-%m-%d}.pdf",
                                  statement_pdf(known, as_of, customer_id, language, locale=locale),
                                  "application/pdf"),)
    subject, text, html = (rendered(environment, f"{language}/level_{level}.{part}", context)
                           for part in ("subject.txt", "txt", "html"))
    return Reminder(key=reminder_key(customer_id, level, as_of), customer_id=customer_id, level=level,
                    language=language, as_of=as_of, recipients=tuple(contacts["email"]),
                    subject=" ".join(subject.split()), text=text, html=html, attachments=attachments,
                    items=tuple(named), totals=totals)


def reminder_items(items: pd.DataFrame) -> list[dict]:
    """The invoices a reminder names, amounts in cents as the proposal computes them."""
    return [{"invoice_id": str(row.invoice_id), "currency": str(row.currency),
             "open_amount": round(float(row.open_amount), 2), "fee": round(float(row.fee), 2),
             "interest": round(float(row.interest), 2), "level": int(row.level),
             "due_date": f"{row.due_date:%Y-%m-%d}", "days_past_due": int(row.days_past_due)}
            for row in items.itertuples(index=False)]


def totals_per_currency(items: list[dict]) -> dict[str, float]:
    """Total due per currency: open amounts, fees and interest."""
    totals: dict[str, float] = {}
    for item in items:
        due = item["open_amount"] + item["fee"] + item["interest"]
        totals[item["currency"]] = round(totals.get(item["currency"], 0.0) + due, 2)
    return dict(sorted(totals.items()))


def template_context(customer_id: str, customer_name: str, level: int, as_of: pd.Timestamp, locale: str,
                     contacts: pd.DataFrame, items: list[dict], totals: dict[str, float],
                     policy: ReminderPolicy) -> dict:
    """What the templates may use, money and dates already written for the locale."""
    names = contacts["name"].dropna().tolist() if "name" in contacts else []
    as_of_text = f"{as_of:%Y-%m-%d}"
    return {
        "customer_id": customer_id, "customer_name": customer_name, "level": level,
        "as_of": calendar_date(as_of, locale), "contact_name": names[0] if names else None,
        "items": [{"invoice_id": item["invoice_id"], "currency": item["currency"],
                   "due_date": calendar_date(pd.Timestamp(item["due_date"]), locale),
                   "days_past_due": item["days_past_due"],
                   "open_amount": money(item["open_amount"], item["currency"], locale),
                   "fee": money(item["fee"], item["currency"], locale),
                   "interest": money(item["interest"], item["currency"], locale)} for item in items],
        "totals": [{"currency": currency, "total": money(total, currency, locale),
                    **{part: money(sum(item[part] for item in items if item["currency"] == currency), currency, locale)
                       for part in ("open_amount", "fee", "interest")}}
                   for currency, total in totals.items()],
        "show_fees": any(item["fee"] for item in items),
        "show_interest": any(item["interest"] for item in items),
        "statement_attached": policy.attach_statement,
        "payment": {"payee": policy.payment.payee, "iban": policy.payment.iban, "bic": policy.payment.bic,
                    "reference": policy.payment.reference.format(customer_id=customer_id, level=level,
                                                                 as_of=as_of_text)},
    }


def rendered(environment: SandboxedEnvironment, name: str, context: dict) -> str:
    """One template rendered; a missing or broken template is a `ReminderPolicyError` naming it."""
    try:
        return environment.get_template(name).render(context)
    except TemplateNotFound:
        raise ReminderPolicyError(f"reminder template {name} not found in {environment.loader.searchpath[0]}") from None
    except TemplateError as error:
        raise ReminderPolicyError(f"reminder template {name}: {error}") from None


def message_id(key: str, sender: str) -> str:
    """The Message-ID of a reminder: derived from its key, so a resend carries the same one."""
    domain = sender.rpartition("@")[2] or "ar-risk.invalid"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def mime_message(reminder: Reminder, sender: str) -> EmailMessage:
    """The reminder as an e-mail: text with an HTML alternative, the attachments, a Message-ID from the key
    and the header X-ArRisk-Key."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(reminder.recipients)
    message["Subject"] = reminder.subject
    message["Date"] = email.utils.format_datetime(reminder.as_of.to_pydatetime().replace(tzinfo=None))
    message["Message-ID"] = message_id(reminder.key, sender)
    message["X-ArRisk-Key"] = reminder.key
    message.set_content(reminder.text)
    message.add_alternative(reminder.html, subtype="html")
    for attachment in reminder.attachments:
        maintype, _, subtype = attachment.mimetype.partition("/")
        message.add_attachment(attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename)
    # After the parts: a content header set before `set_content` moves into the first part.
    message["Content-Language"] = reminder.language
    return message
