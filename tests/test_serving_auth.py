"""API tokens: hashed storage, bearer parsing, scopes, loader errors, env strings and the token CLI."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from serving import auth
from serving.auth import (
    SCOPES,
    AuthConfigError,
    Forbidden,
    NotPermitted,
    Principal,
    TokenEntry,
    TokenStore,
    Unauthorized,
    error_body,
    hash_token,
    load_tokens,
    new_token,
    parse_token_entries,
    require,
    token_store_from_env,
)
from serving.cli.serving import tokens_app

runner = CliRunner()
EXAMPLE = Path("configs/tokens.example.yaml")
DEMO_TOKENS = {scope: f"arr_demo_{scope}" for scope in SCOPES}
HASH = "a" * 64


def entry(name: str, token: str, *scopes: str, collector: str | None = None) -> TokenEntry:
    return TokenEntry(name=name, user=f"user of {name}", scopes=scopes, sha256=hash_token(token),
                      collector=collector)


@pytest.fixture
def store() -> TokenStore:
    return TokenStore([entry(scope, f"token-{scope}", scope) for scope in SCOPES])


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def token_yaml(**overrides: object) -> str:
    fields = {"name": "anna", "user": "Anna Berg", "scopes": ["collector"], "sha256": HASH, **overrides}
    token = {key: value for key, value in fields.items() if value is not None}
    return yaml.safe_dump({"tokens": [token]}, sort_keys=False, default_flow_style=None)


# Tokens and hashes


def test_new_tokens_are_prefixed_random_and_long():
    tokens = {new_token() for _ in range(20)}
    assert len(tokens) == 20
    assert all(token.startswith("arr_") and len(token) >= 4 + 43 for token in tokens)


def test_hash_token_is_sha256_hex():
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# Authentication and scopes


@pytest.mark.parametrize("scope", SCOPES)
def test_valid_token_gives_its_principal(store: TokenStore, scope: str):
    principal = store.authenticate(f"Bearer token-{scope}")
    assert (principal.name, principal.user, principal.scopes) == (scope, f"user of {scope}", frozenset({scope}))
    require(principal, scope)


def test_scheme_is_case_insensitive_and_whitespace_tolerant(store: TokenStore):
    assert store.authenticate("bearer   token-credit  ").name == "credit"
    assert store.authenticate("BEARER token-credit").name == "credit"


def test_admin_implies_every_scope(store: TokenStore):
    admin = store.authenticate("Bearer token-admin")
    for scope in SCOPES:
        require(admin, scope)


@pytest.mark.parametrize("scope", ["credit", "treasury", "admin"])
def test_missing_scope_is_forbidden(store: TokenStore, scope: str):
    collector = store.authenticate("Bearer token-collector")
    with pytest.raises(Forbidden) as raised:
        require(collector, scope)
    assert raised.value.status == 403 and raised.value.scope == scope
    assert raised.value.body() == {"error": "forbidden",
                                   "detail": f"this endpoint needs the '{scope}' scope (or admin)"}
    assert f'scope="{scope}"' in raised.value.headers["WWW-Authenticate"]


def test_require_rejects_an_unknown_scope_name(store: TokenStore):
    with pytest.raises(ValueError, match="unknown scope 'creditt'"):
        require(store.authenticate("Bearer token-admin"), "creditt")


def test_authorize_checks_token_then_scope(store: TokenStore):
    assert store.authorize("Bearer token-treasury", "treasury").name == "treasury"
    with pytest.raises(Forbidden):
        store.authorize("Bearer token-treasury", "credit")
    with pytest.raises(Unauthorized):
        store.authorize("Bearer nope", "credit")


@pytest.mark.parametrize(("header", "reason"), [
    (None, "missing Authorization header"),
    ("", "missing Authorization header"),
    ("   ", "missing Authorization header"),
    ("Basic dXNlcjpwYXNz", "malformed Authorization header"),
    ("Bearer", "malformed Authorization header"),
    ("Bearer ", "malformed Authorization header"),
    ("Bearer token-credit extra", "malformed Authorization header"),
    ("token-credit", "malformed Authorization header"),
    ("Bearer token-wrong", "invalid or unknown token"),
    ("Bearer " + hash_token("token-credit"), "invalid or unknown token"),  # the hash is not the token
])
def test_bad_credentials_are_unauthorized(store: TokenStore, header: str | None, reason: str):
    with pytest.raises(Unauthorized, match=reason) as raised:
        store.authenticate(header)
    assert raised.value.status == 401
    assert raised.value.body()["error"] == "unauthorized"
    assert raised.value.headers == {"WWW-Authenticate": 'Bearer realm="ar-risk"'}


def test_empty_store_refuses_everyone():
    with pytest.raises(Unauthorized):
        TokenStore().authenticate("Bearer anything")


def test_error_body_shape():
    assert error_body(401, "no token") == {"error": "unauthorized", "detail": "no token"}
    assert error_body(403, "no scope") == {"error": "forbidden", "detail": "no scope"}


def test_authenticate_compares_every_entry(store: TokenStore, monkeypatch: pytest.MonkeyPatch):
    calls = []
    compare = auth.hmac.compare_digest

    def counting(a: str, b: str) -> bool:
        calls.append(a)
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    first = store.entries[0]
    assert store.authenticate(f"Bearer token-{first.name}").name == first.name
    assert calls == [known.sha256 for known in store.entries]
    calls.clear()
    with pytest.raises(Unauthorized):
        store.authenticate("Bearer unknown")
    assert len(calls) == len(store.entries)


def test_store_never_keeps_a_plaintext_token(store: TokenStore):
    token = new_token()
    store = TokenStore([*store.entries, entry("fresh", token, "credit")])
    principal = store.authenticate(f"Bearer {token}")
    kept_forms = (pickle.dumps(store), pickle.dumps(principal), repr(vars(store)).encode(), repr(principal).encode())
    for kept in kept_forms:
        assert token.encode() not in kept


def test_store_rejects_duplicates():
    with pytest.raises(AuthConfigError, match="duplicate name 'a'"):
        TokenStore([entry("a", "t1", "credit"), entry("a", "t2", "credit")])
    with pytest.raises(AuthConfigError, match="duplicate sha256 \\(the same token as 'a'\\)"):
        TokenStore([entry("a", "t1", "credit"), entry("b", "t1", "credit")])


def test_a_team_lead_is_a_collector_and_no_more(store: TokenStore):
    lead = store.authenticate("Bearer token-team_lead")
    require(lead, "collector")
    require(lead, "team_lead")
    for scope in ("credit", "treasury", "admin"):
        with pytest.raises(Forbidden):
            require(lead, scope)
    with pytest.raises(Forbidden):
        require(store.authenticate("Bearer token-collector"), "team_lead")


def test_not_permitted_is_a_403_with_the_reason_and_no_scope_challenge():
    error = NotPermitted("customer C1 is not in your portfolio")
    assert isinstance(error, Forbidden) and error.status == 403
    assert error.body() == {"error": "forbidden", "detail": "customer C1 is not in your portfolio"}
    assert error.headers == {}


def test_all_portfolios_comes_from_the_file_and_the_environment(tmp_path: Path):
    store = load_tokens(write(tmp_path / "t.yaml", token_yaml(all_portfolios=True)))
    assert store.entries[0].all_portfolios
    token = new_token()
    entries = parse_token_entries(f"lea:Lea:collector+all_portfolios:{hash_token(token)}:Lea")
    assert entries[0].scopes == ("collector",) and entries[0].collector == "Lea"
    assert TokenStore(entries).authenticate(f"Bearer {token}").all_portfolios
    assert not parse_token_entries(f"ana:Ana:collector:{HASH}")[0].all_portfolios
    assert Principal("u", "n", frozenset({"collector"})).all_portfolios is False


# The token file


def test_example_file_holds_the_documented_demo_tokens():
    store = load_tokens(EXAMPLE)
    for scope, token in DEMO_TOKENS.items():
        principal = store.authenticate(f"Bearer {token}")
        assert principal.scopes == {scope}
        assert token in EXAMPLE.read_text()  # documented in the header
    assert store.authenticate("Bearer arr_demo_collector").collector == "Anna Berg"


def test_loader_reads_a_valid_file(tmp_path: Path):
    store = load_tokens(write(tmp_path / "t.yaml", token_yaml(collector="Anna Berg")))
    assert [(e.name, e.scopes, e.collector) for e in store.entries] == [("anna", ("collector",), "Anna Berg")]


@pytest.mark.parametrize(("text", "problem"), [
    (token_yaml(colector="Anna"), "line 6, tokens.0: unknown key 'colector' (expected one of name, user"),
    ("tokenz: []\n", "top level: unknown key 'tokenz'"),
    (token_yaml(scopes=["collector", "credt"]), "tokens.0.scopes.1: unknown scope 'credt' (expected one of"),
    (token_yaml(scopes=[]), "tokens.0.scopes: needs at least one scope"),
    (token_yaml(sha256="abc123"), "line 5, tokens.0.sha256: expected 64 lowercase hex characters"),
    (token_yaml(sha256="A" * 64), "tokens.0.sha256: expected 64 lowercase hex characters"),
    (token_yaml(user=None), "tokens.0.user: missing key"),
    (token_yaml(name="anna berg"), "tokens.0.name: 'anna berg' is not a valid name"),
    ("tokens:\n  - name: a\n   user: [\n", "line 3: not valid YAML"),
    ("", "the file is empty"),
    ("- a\n- b\n", "expected a mapping with a 'tokens' list"),
])
def test_loader_names_the_problem(tmp_path: Path, text: str, problem: str):
    path = write(tmp_path / "tokens.yaml", text)
    with pytest.raises(AuthConfigError) as raised:
        load_tokens(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def test_loader_rejects_duplicate_names_and_hashes(tmp_path: Path):
    doubled = yaml.safe_load(token_yaml())
    doubled["tokens"].append({**doubled["tokens"][0], "user": "someone else"})
    path = write(tmp_path / "t.yaml", yaml.safe_dump(doubled, sort_keys=False, default_flow_style=None))
    with pytest.raises(AuthConfigError, match=r"line 6, tokens.1: duplicate name 'anna'"):
        load_tokens(path)
    doubled["tokens"][1]["name"] = "other"
    write(path, yaml.safe_dump(doubled, sort_keys=False, default_flow_style=None))
    with pytest.raises(AuthConfigError, match=r"tokens.1: duplicate sha256 \(the same token as 'anna'\)"):
        load_tokens(path)


def test_loader_reports_a_missing_file(tmp_path: Path):
    with pytest.raises(AuthConfigError, match=r"nope\.yaml: no such token file"):
        load_tokens(tmp_path / "nope.yaml")


# Environment


def test_env_string_entries_by_comma_and_newline():
    text = f" anna:Anna Berg:collector:{HASH}:Anna Berg ,\n\nboss:The Boss:credit+treasury:{'b' * 64}\n"
    entries = parse_token_entries(text)
    assert [(e.name, e.user, e.scopes, e.collector) for e in entries] == [
        ("anna", "Anna Berg", ("collector",), "Anna Berg"), ("boss", "The Boss", ("credit", "treasury"), None)]


@pytest.mark.parametrize(("text", "problem"), [
    ("anna:Anna:collector", "ARRISK_API_TOKENS entry 1: expected name:user:scope1+scope2:sha256"),
    (f"anna:Anna:collector:{HASH},bob:Bob:boss:{'b' * 64}", "entry 2 ('bob'): scopes.0: unknown scope 'boss'"),
    ("anna:Anna:collector:abc", "entry 1 ('anna'): sha256: expected 64 lowercase hex characters"),
    (f"anna:Anna::{HASH}", "entry 1 ('anna'): scopes: needs at least one scope"),
    (f"anna:Anna:credit:{HASH}\nanna:Bob:admin:{'b' * 64}", "ARRISK_API_TOKENS entry 2: duplicate name 'anna'"),
])
def test_env_string_errors(text: str, problem: str):
    with pytest.raises(AuthConfigError, match=re.escape(problem)):
        parse_token_entries(text)


def test_env_string_errors_do_not_echo_the_entry():
    with pytest.raises(AuthConfigError) as raised:
        parse_token_entries("arr_pasted_a_plain_token_by_mistake")
    assert "arr_pasted" not in str(raised.value)


def test_store_from_env_is_empty_when_nothing_is_set():
    assert len(token_store_from_env({})) == 0
    assert len(token_store_from_env({"ARRISK_TOKENS_FILE": " ", "ARRISK_API_TOKENS": ""})) == 0


def test_store_from_env_joins_file_and_string():
    token = new_token()
    environ = {"ARRISK_TOKENS_FILE": str(EXAMPLE), "ARRISK_API_TOKENS": f"ci:CI bot:treasury:{hash_token(token)}"}
    store = token_store_from_env(environ)
    assert len(store) == 9  # the example's eight demo tokens and the one of the environment
    assert store.authenticate(f"Bearer {token}").user == "CI bot"
    assert store.authenticate("Bearer arr_demo_admin").name == "demo-admin"
    assert store.authenticate("Bearer arr_demo_manager").scopes == frozenset({"manager"})
    assert store.authenticate("Bearer arr_demo_finance").scopes == frozenset({"finance"})


def test_store_from_env_rejects_duplicates_across_sources():
    environ = {"ARRISK_TOKENS_FILE": str(EXAMPLE), "ARRISK_API_TOKENS": f"demo-admin:x:admin:{HASH}"}
    with pytest.raises(AuthConfigError, match="ARRISK_TOKENS_FILE and ARRISK_API_TOKENS together: duplicate name"):
        token_store_from_env(environ)


def test_store_from_env_reports_a_missing_file(tmp_path: Path):
    with pytest.raises(AuthConfigError, match="no such token file"):
        token_store_from_env({"ARRISK_TOKENS_FILE": str(tmp_path / "gone.yaml")})


# The token command line


def create(path: Path, name: str, *scopes: str, collector: str | None = None):
    args = ["create", "--file", str(path), "--name", name, "--user", f"user {name}"]
    args += [arg for scope in scopes for arg in ("--scope", scope)]
    args += ["--collector", collector] if collector else []
    return runner.invoke(tokens_app, args)


def test_cli_create_then_list_round_trip(tmp_path: Path):
    path = tmp_path / "secrets" / "tokens.yaml"
    first = create(path, "anna", "collector", collector="Anna Berg")
    second = create(path, "boss", "credit", "treasury")
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    tokens = [first.stdout.strip(), second.stdout.strip()]
    assert all(token.startswith("arr_") for token in tokens)
    assert "shown only this once" in first.stderr
    assert not any(token in path.read_text() for token in tokens)

    store = load_tokens(path)
    assert store.authenticate(f"Bearer {tokens[0]}").collector == "Anna Berg"
    assert store.authenticate(f"Bearer {tokens[1]}").scopes == {"credit", "treasury"}

    listed = runner.invoke(tokens_app, ["list", "--file", str(path)])
    assert listed.exit_code == 0, listed.output
    for expected in ("anna", "user anna", "collector", "Anna Berg", "boss", "credit, treasury"):
        assert expected in listed.stdout
    assert not any(known.sha256 in listed.output for known in store.entries)


def test_cli_create_keeps_the_comments_of_an_existing_file(tmp_path: Path):
    path = write(tmp_path / "tokens.yaml", EXAMPLE.read_text())
    result = create(path, "extra", "credit")
    assert result.exit_code == 0, result.output
    assert path.read_text().startswith(EXAMPLE.read_text())
    assert [e.name for e in load_tokens(path).entries][-2:] == ["demo-admin", "extra"]


def test_cli_create_into_a_flow_style_list(tmp_path: Path):
    path = write(tmp_path / "tokens.yaml", "tokens: []\n")
    assert create(path, "a", "credit").exit_code == 0
    assert create(path, "b", "admin").exit_code == 0
    assert [e.name for e in load_tokens(path).entries] == ["a", "b"]


def test_cli_duplicate_name_exits_1_and_leaves_the_file(tmp_path: Path):
    path = tmp_path / "tokens.yaml"
    assert create(path, "anna", "collector").exit_code == 0
    before = path.read_bytes()
    result = create(path, "anna", "admin")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == f"error: {path}: a token named 'anna' already exists; choose another --name"
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["tokens.yaml"]  # no temporary file left behind


def test_cli_bad_scope_exits_1_with_one_line(tmp_path: Path):
    path = tmp_path / "tokens.yaml"
    result = create(path, "anna", "boss")
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "unknown scope 'boss'" in result.stderr
    assert "Traceback" not in result.output and not path.exists()


def test_cli_refuses_to_append_to_a_broken_file(tmp_path: Path):
    path = write(tmp_path / "tokens.yaml", "tokens:\n  - name: a\n    bogus: 1\n")
    before = path.read_bytes()
    result = create(path, "b", "credit")
    assert result.exit_code == 1 and "unknown key 'bogus'" in result.stderr
    assert path.read_bytes() == before


def test_cli_list_of_a_missing_file_exits_1(tmp_path: Path):
    result = runner.invoke(tokens_app, ["list", "--file", str(tmp_path / "none.yaml")])
    assert result.exit_code == 1 and "no such token file" in result.stderr and "Traceback" not in result.output


def test_cli_create_a_collector_who_sees_every_portfolio(tmp_path: Path):
    path = tmp_path / "tokens.yaml"
    result = runner.invoke(tokens_app, ["create", "--file", str(path), "--name", "lea", "--user", "Lea",
                                        "--scope", "collector", "--collector", "Lea", "--all-portfolios"])
    assert result.exit_code == 0, result.output
    assert load_tokens(path).entries[0].all_portfolios and "all_portfolios: true" in path.read_text()
    assert create(path, "ana", "collector", collector="Ana").exit_code == 0
    assert "all_portfolios" not in path.read_text().split("name: ana")[1]  # the default is not written
    listed = runner.invoke(tokens_app, ["list", "--file", str(path)]).stdout
    assert "all" in listed and "own" in listed
