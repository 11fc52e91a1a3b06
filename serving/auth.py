"""Bearer API tokens with scopes: loaded from a YAML file or an environment string, stored hashed.

Every endpoint but health needs a token; each token carries scopes (collector, team_lead, credit,
treasury, cash, manager, finance, admin) that gate endpoints: admin implies all of them, team_lead implies collector. Which
customers and records a token may see or change is `serving.access`'s business. Only the SHA-256 of a token is ever kept,
and a presented token is compared with every stored hash in constant time. Pure Python: the service
maps `Unauthorized` to 401 and `Forbidden` to 403, using `AuthError.body()` and `AuthError.headers`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ledger.errors import BadInput
from ledger.importing.mappings import yaml_line

SCOPES = ("collector", "team_lead", "credit", "treasury", "cash", "manager", "finance", "admin")
ADMIN = "admin"
TEAM_LEAD = "team_lead"
# A flag written among the scopes of the environment format (`collector+all_portfolios`), not a scope.
ALL_PORTFOLIOS = "all_portfolios"
TOKEN_PREFIX = "arr_"
TOKENS_FILE_ENV = "ARRISK_TOKENS_FILE"
TOKENS_ENV = "ARRISK_API_TOKENS"
REALM = "ar-risk"
WWW_AUTHENTICATE = f'Bearer realm="{REALM}"'

Scope = Literal["collector", "team_lead", "credit", "treasury", "cash", "manager", "finance", "admin"]
HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
ENTRY_SEPARATORS = re.compile(r"[,\n]")


class AuthConfigError(BadInput, ValueError):
    """A token file or token environment string is missing or invalid."""


class TokenEntry(BaseModel):
    """One API token as stored: who holds it, what it may do, and the SHA-256 of the token."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Names appear in the `name:user:scopes:sha256` environment format, hence no ':' ',' or spaces.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Unique name of the token.")
    user: str = Field(min_length=1, description="Who holds the token (for audit trails).")
    scopes: tuple[Scope, ...] = Field(description="What the token may do (at least one); admin implies all.")
    sha256: str = Field(description="SHA-256 of the token, 64 lowercase hex characters.")
    collector: str | None = Field(None, description="Collector whose portfolio this user sees and changes.")
    all_portfolios: bool = Field(False, description="A collector who sees every portfolio (not its records).")

    @field_validator("scopes")
    @classmethod
    def _has_a_scope(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # A validator rather than min_length, which would also fire after an unknown scope was dropped.
        if not value:
            raise ValueError(f"needs at least one scope ({', '.join(SCOPES)})")
        return value

    @field_validator("sha256")
    @classmethod
    def _is_hex_sha256(cls, value: str) -> str:
        if not HEX_SHA256.fullmatch(value):
            raise ValueError(f"expected 64 lowercase hex characters (the SHA-256 of the token), "
                             f"got {len(value)} characters")
        return value


class TokenFile(BaseModel):
    """The token YAML file: a list of token entries under `tokens`."""

    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenEntry]


@dataclass(frozen=True)
class Principal:
    """Who made a request, as far as their token tells."""

    user: str
    name: str
    scopes: frozenset[str]
    collector: str | None = None
    all_portfolios: bool = False

    def has(self, scope: str) -> bool:
        """Whether this principal holds `scope` (admin holds every scope, a team lead is a collector)."""
        return (scope in self.scopes or ADMIN in self.scopes
                or (scope == "collector" and TEAM_LEAD in self.scopes))


class AuthError(Exception):
    """A request refused for lack of (valid or sufficient) credentials."""

    status: int = HTTPStatus.UNAUTHORIZED

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def body(self) -> dict[str, str]:
        """The JSON body of the error response."""
        return error_body(self.status, self.detail)

    @property
    def headers(self) -> dict[str, str]:
        """Extra response headers."""
        return {}


class Unauthorized(AuthError):
    """No token, a malformed Authorization header, or an unknown token: 401."""

    status = HTTPStatus.UNAUTHORIZED

    @property
    def headers(self) -> dict[str, str]:
        """The `WWW-Authenticate` challenge that RFC 7235 requires with a 401."""
        return {"WWW-Authenticate": WWW_AUTHENTICATE}


class Forbidden(AuthError):
    """A valid token without the scope the endpoint needs: 403."""

    status = HTTPStatus.FORBIDDEN

    def __init__(self, scope: str) -> None:
        super().__init__(f"this endpoint needs the '{scope}' scope (or admin)")
        self.scope = scope

    @property
    def headers(self) -> dict[str, str]:
        """RFC 6750 names the missing scope in the challenge."""
        return {"WWW-Authenticate": f'{WWW_AUTHENTICATE}, error="insufficient_scope", scope="{self.scope}"'}


class NotPermitted(Forbidden):
    """A token with the right scope, refused for this customer or record (403 with the reason)."""

    def __init__(self, detail: str) -> None:
        AuthError.__init__(self, detail)
        self.scope = "portfolio"

    @property
    def headers(self) -> dict[str, str]:
        """No scope challenge: another token's scope would not help."""
        return {}


def error_body(status: int, message: str) -> dict[str, str]:
    """The JSON body of an error response, e.g. {"error": "unauthorized", "detail": "..."}."""
    return {"error": HTTPStatus(status).phrase.lower().replace(" ", "_"), "detail": message}


def hash_token(token: str) -> str:
    """The SHA-256 hex digest of a token, as stored."""
    # Tokens carry 256 random bits, so nothing can be guessed and a slow password hash (bcrypt, argon2)
    # would only add latency to every request; a plain SHA-256 is enough to keep the file harmless.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token: `arr_` and 32 random bytes, URL-safe (the prefix makes leaks greppable)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def duplicate_entries(entries: Sequence[TokenEntry]) -> list[tuple[int, str]]:
    """(index, problem) for each entry whose name or hash repeats an earlier entry's."""
    problems = []
    names: set[str] = set()
    name_by_hash: dict[str, str] = {}
    for index, entry in enumerate(entries):
        if entry.name in names:
            problems.append((index, f"duplicate name {entry.name!r}"))
        elif entry.sha256 in name_by_hash:
            problems.append((index, f"duplicate sha256 (the same token as {name_by_hash[entry.sha256]!r})"))
        names.add(entry.name)
        name_by_hash.setdefault(entry.sha256, entry.name)
    return problems


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; `Unauthorized` when missing or malformed."""
    if authorization is None or not authorization.strip():
        raise Unauthorized("missing Authorization header (expected 'Bearer <token>')")
    parts = authorization.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise Unauthorized("malformed Authorization header (expected 'Bearer <token>')")
    return parts[1]


class TokenStore:
    """The configured tokens (hashes only), able to tell who a bearer token belongs to."""

    def __init__(self, entries: Iterable[TokenEntry] = ()) -> None:
        self.entries = tuple(entries)
        duplicates = duplicate_entries(self.entries)
        if duplicates:
            raise AuthConfigError("; ".join(problem for _, problem in duplicates))

    def __len__(self) -> int:
        return len(self.entries)

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an Authorization header; `Unauthorized` when missing, malformed or unknown."""
        presented = hash_token(bearer_token(authorization))
        # A list, not any()/next(): every stored hash is compared, so the time taken does not reveal
        # which entry (or whether an early one) matched.
        matches = [entry for entry in self.entries if hmac.compare_digest(entry.sha256, presented)]
        if not matches:
            raise Unauthorized("invalid or unknown token")
        entry = matches[0]
        return Principal(user=entry.user, name=entry.name, scopes=frozenset(entry.scopes),
                         collector=entry.collector, all_portfolios=entry.all_portfolios)

    def authorize(self, authorization: str | None, scope: str) -> Principal:
        """Authenticate and require `scope` in one step (401, then 403)."""
        principal = self.authenticate(authorization)
        require(principal, scope)
        return principal


def require(principal: Principal, scope: str) -> None:
    """Raise `Forbidden` unless the principal holds `scope` or admin."""
    if scope not in SCOPES:
        # A typo in an endpoint's scope must fail loudly, not lock everyone but admins out.
        raise ValueError(f"unknown scope {scope!r}: expected one of {', '.join(SCOPES)}")
    if not principal.has(scope):
        raise Forbidden(scope)


def load_tokens(path: str | Path) -> TokenStore:
    """Read and validate a token YAML file; `AuthConfigError` names the file, line and problem."""
    return TokenStore(read_token_file(path).tokens)


def read_token_file(path: str | Path) -> TokenFile:
    """The validated content of a token YAML file (duplicates rejected); `AuthConfigError` on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except FileNotFoundError:
        raise AuthConfigError(f"{path}: no such token file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise AuthConfigError(f"{path}: cannot read the token file ({error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        reason = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise AuthConfigError(f"{path}: {where}not valid YAML ({reason})") from None
    if data is None:
        raise AuthConfigError(f"{path}: the file is empty (expected a mapping with a 'tokens' list)")
    if not isinstance(data, dict):
        raise AuthConfigError(f"{path}: expected a mapping with a 'tokens' list, got {type(data).__name__}")
    try:
        token_file = TokenFile.model_validate(data)
    except ValidationError as error:
        problems = [_located(yaml_line(node, detail["loc"]), _problem(detail)) for detail in error.errors()]
        raise AuthConfigError(f"{path}: " + "; ".join(problems)) from None
    duplicates = duplicate_entries(token_file.tokens)
    if duplicates:
        problems = [_located(yaml_line(node, ("tokens", index)), f"tokens.{index}: {problem}")
                    for index, problem in duplicates]
        raise AuthConfigError(f"{path}: " + "; ".join(problems))
    return token_file


def token_entry(fields: Mapping[str, Any], where: str) -> TokenEntry:
    """One validated token entry; `AuthConfigError` starting with `where` names each bad field."""
    try:
        return TokenEntry.model_validate(fields)
    except ValidationError as error:
        raise AuthConfigError(f"{where}: " + "; ".join(_problem(detail) for detail in error.errors())) from None


def parse_token_entries(text: str, source: str = TOKENS_ENV) -> list[TokenEntry]:
    """Entries `name:user:scope1+scope2:sha256[:collector]` separated by commas or newlines; the flag
    `all_portfolios` may stand among the scopes (`collector+all_portfolios`)."""
    entries = []
    for number, raw in enumerate((part.strip() for part in ENTRY_SEPARATORS.split(text) if part.strip()), 1):
        fields = [field.strip() for field in raw.split(":")]
        if len(fields) not in (4, 5):
            # The entry itself is not echoed: someone may have pasted a plain token by mistake.
            raise AuthConfigError(f"{source} entry {number}: expected name:user:scope1+scope2:sha256[:collector], "
                                  f"got {len(fields)} ':'-separated fields")
        name, user, scopes, sha256, *collector = fields
        listed = [s for s in scopes.split("+") if s]
        fields_by_key = {"name": name, "user": user, "scopes": [s for s in listed if s != ALL_PORTFOLIOS],
                         "sha256": sha256, "collector": collector[0] if collector and collector[0] else None,
                         "all_portfolios": ALL_PORTFOLIOS in listed}
        entries.append(token_entry(fields_by_key, where=f"{source} entry {number} ({name!r})"))
    duplicates = duplicate_entries(entries)
    if duplicates:
        raise AuthConfigError("; ".join(f"{source} entry {index + 1}: {problem}" for index, problem in duplicates))
    return entries


def token_store_from_env(environ: Mapping[str, str]) -> TokenStore:
    """The tokens of `ARRISK_TOKENS_FILE` and `ARRISK_API_TOKENS` together; empty when neither is set."""
    entries: list[TokenEntry] = []
    if environ.get(TOKENS_FILE_ENV, "").strip():
        entries += read_token_file(environ[TOKENS_FILE_ENV].strip()).tokens
    if environ.get(TOKENS_ENV, "").strip():
        entries += parse_token_entries(environ[TOKENS_ENV])
    try:
        return TokenStore(entries)
    except AuthConfigError as error:
        raise AuthConfigError(f"{TOKENS_FILE_ENV} and {TOKENS_ENV} together: {error}") from None


def _problem(detail: Any) -> str:
    """One pydantic error as `key.path: message`, in plain words."""
    loc = ".".join(str(part) for part in detail["loc"]) or "top level"
    if detail["type"] == "extra_forbidden":
        known = _known_keys(detail["loc"])
        expected = f" (expected one of {', '.join(known)})" if known else ""
        message = f"unknown key {detail['loc'][-1]!r}{expected}"
        loc = ".".join(str(part) for part in detail["loc"][:-1]) or "top level"
    elif detail["type"] == "missing":
        message = "missing key"
    elif detail["type"] == "string_pattern_mismatch":
        message = f"{detail['input']!r} is not a valid name (letters, digits, '_', '.', '-'; no spaces)"
    elif detail["type"] == "literal_error":
        message = f"unknown scope {detail['input']!r} (expected one of {', '.join(SCOPES)})"
    else:
        message = detail["msg"].removeprefix("Value error, ")
    return f"{loc}: {message}"


def _known_keys(loc: Sequence[Any]) -> list[str]:
    """The keys allowed in the mapping that holds `loc`'s last part."""
    parents = [part for part in loc[:-1] if not isinstance(part, int)]
    model = TokenEntry if parents else TokenFile
    return list(model.model_fields)


def _located(line: int | None, problem: str) -> str:
    return f"line {line}, {problem}" if line is not None else problem
