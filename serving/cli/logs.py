"""Where the CLI's log goes: a file, not the user's terminal.

Libraries chatter (MLflow's "Creating initial MLflow database tables", alembic's migration lines, model
registration); the terminal shows our output and progress only. The log is `ARRISK_LOG_FILE`, else
`HOME/out/arrisk.log` (`ARRISK_HOME`, default the working folder); it is created when something is first
logged. Internal
errors write their traceback there. Configured by the app's callback, never at import (DESIGN.md §8).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

LOG_FILE_ENV = "ARRISK_LOG_FILE"
HOME_ENV = "ARRISK_HOME"  # as in configs.settings, read here without validating every setting
# No network at run time (DESIGN.md §8): for this process and any server it starts.
OFFLINE = {"BENTOML_DO_NOT_TRACK": "True", "MLFLOW_DISABLE_TELEMETRY": "true"}
# MLflow's loggers left to ours (and so to the log file) rather than to its own stderr handler: this process only.
OWN_LOGGING = {"MLFLOW_CONFIGURE_LOGGING": "false"}
_set_here: set[str] = set()


def quiet_libraries() -> None:
    """Set the environment that keeps BentoML and MLflow offline and off the terminal; before either is used.
    A value the user set is kept."""
    for name, value in (OFFLINE | OWN_LOGGING).items():
        if name not in os.environ:
            os.environ[name] = value
            _set_here.add(name)


def server_environment(**extra: str) -> dict[str, str]:
    """The environment of a server this process starts: offline (unless the user said otherwise), its logging
    its own (a logging setting this process made for itself is left out), and `extra`."""
    environment = {name: value for name, value in os.environ.items()
                   if not (name in OWN_LOGGING and name in _set_here)}
    return OFFLINE | environment | extra


def log_file() -> Path:
    """The log file: `ARRISK_LOG_FILE`, else `HOME/out/arrisk.log`."""
    return Path(os.environ.get(LOG_FILE_ENV) or Path(os.environ.get(HOME_ENV) or ".") / "out" / "arrisk.log")


class _LazyFileHandler(logging.FileHandler):
    """A file handler that creates the file (and its folder) only when a record is first written."""

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def log_to_file() -> None:
    """Send every INFO record (ours and the libraries') to the log file, and none to the terminal.

    Idempotent: called again (tests invoke the app many times) it only follows a changed `ARRISK_LOG_FILE`."""
    quiet_libraries()
    path = log_file().resolve()
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if isinstance(handler, _LazyFileHandler)]
    if any(Path(handler.baseFilename) == path for handler in ours):
        return
    for handler in ours:
        root.removeHandler(handler)
        handler.close()
    handler = _LazyFileHandler(path, delay=True, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # Python's last-resort handler prints to stderr when no handler exists; ours now exists. Loggers that a
    # library configured before us to print on their own are sent to the root (and so to the file).
    for name in ("mlflow", "alembic", "sqlalchemy.engine", "huey", "bentoml"):
        library = logging.getLogger(name)
        library.handlers = [h for h in library.handlers if not isinstance(h, logging.StreamHandler)
                            or isinstance(h, logging.FileHandler)]
        library.propagate = True
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)


class _LogWriter(io.TextIOBase):
    """A text stream whose lines become INFO records of `logger`."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger, self.pending = logger, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                self.logger.info(line)
        return len(text)

    def flush(self) -> None:
        if self.pending.strip():
            self.logger.info(self.pending)
        self.pending = ""


@contextlib.contextmanager
def stderr_to_log(name: str = "libraries") -> Iterator[None]:
    """Within the block, what libraries print on stderr (MLflow's "Successfully registered model", warnings)
    goes to the log file. Our errors are raised, and printed after the block."""
    writer = _LogWriter(logging.getLogger(name))
    with contextlib.redirect_stderr(writer):
        try:
            yield
        finally:
            writer.flush()
