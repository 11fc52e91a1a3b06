"""The one settings object (issue 15): every writable location and every `ARRISK_*` variable, with defaults
under `ARRISK_HOME` (the working folder by default), never under the installed package."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.settings import Settings, SettingsError, sqlite_path
from serving.activity import activity_store_exists, database_url
from training.tracking import default_tracking_uri


def test_locations_default_under_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_environ({})
    assert settings.home == tmp_path.resolve()
    assert settings.ledger == tmp_path / "out" / "demo" / "synthetic"
    assert settings.tracking_uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert settings.database_url == f"sqlite:///{tmp_path / 'out' / 'activity.sqlite'}"
    assert settings.reports == tmp_path / "out" / "reports"
    assert settings.audit_key_file == tmp_path / "out" / "audit.key"
    assert settings.log_file == tmp_path / "out" / "arrisk.log"
    assert settings.tokens_file is None and settings.api_tokens is None


def test_locations_follow_arrisk_home_and_each_variable_wins_over_it(tmp_path):
    settings = Settings.from_environ({"ARRISK_HOME": str(tmp_path / "home"), "ARRISK_REPORTS": "/srv/reports",
                                      "ARRISK_DATABASE_URL": "postgresql://db/ar", "ARRISK_API_TOKENS": "a:b:c:d"})
    assert settings.ledger == tmp_path / "home" / "out" / "demo" / "synthetic"
    assert sqlite_path(settings.tracking_uri) == tmp_path / "home" / "mlflow" / "mlflow.db"
    assert settings.reports == Path("/srv/reports")
    assert settings.database_url == "postgresql://db/ar" and sqlite_path(settings.database_url) is None
    assert settings.api_tokens == "a:b:c:d"
    # Secrets stay out of logs and error pages.
    assert "postgresql" not in repr(settings) and "a:b:c:d" not in repr(settings)


def test_only_the_mapping_given_counts_never_the_process_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ARRISK_LEDGER", "/from/the/process")
    monkeypatch.setenv("ARRISK_MAX_TEXT_CHARS", "7")
    settings = Settings.from_environ({"ARRISK_HOME": str(tmp_path)})
    assert settings.ledger == tmp_path / "out" / "demo" / "synthetic" and settings.max_text_chars == 2_000
    assert Settings.from_environ().ledger == Path("/from/the/process")  # None: the process environment


def test_a_blank_variable_counts_as_absent_and_a_bad_one_is_named(tmp_path):
    assert Settings.from_environ({"ARRISK_HOME": str(tmp_path), "ARRISK_TOKENS_FILE": " "}).tokens_file is None
    with pytest.raises(SettingsError, match="ARRISK_MAX_TEXT_CHARS"):
        Settings.from_environ({"ARRISK_MAX_TEXT_CHARS": "many"})


def test_the_readers_take_their_defaults_from_the_settings(tmp_path):
    environ = {"ARRISK_HOME": str(tmp_path)}
    assert not activity_store_exists(environ)  # reading never creates the store
    assert database_url(environ) == f"sqlite:///{tmp_path / 'out' / 'activity.sqlite'}"
    assert activity_store_exists({"ARRISK_DATABASE_URL": f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"})
    uri = default_tracking_uri(Settings.from_environ(environ))
    assert uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}" and (tmp_path / "mlflow").is_dir()
