"""Default policies, mappings and example tokens, shipped as package data (read with importlib.resources)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def config_path(*parts: str) -> Path:
    """The path of a shipped default, e.g. `config_path("worklist", "default.yaml")`."""
    # The package is installed as plain files (a wheel unpacks to site-packages), so the resource is a path.
    return Path(str(files(__name__).joinpath(*parts)))
