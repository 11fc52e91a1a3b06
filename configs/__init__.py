"""Default policies, mappings and example tokens, shipped as package data (read with importlib.resources)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


def config_path(*parts: str) -> Path:
    """The path of a shipped default, e.g. `config_path("worklist", "default.yaml")`."""
    # The package is installed as plain files (a wheel unpacks to site-packages), so the resource is a path.
    return Path(str(files(__name__).joinpath(*parts)))


def validated_policy(path: str | Path, model: type[ModelT], error: type[Exception]) -> ModelT:
    """A policy YAML read and validated with `model`; `error` names the file and what is wrong with it
    (cannot be read, not valid YAML, or each field the model refuses)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as problem:
        raise error(f"{path}: cannot read ({problem.strerror or problem})") from None
    except yaml.YAMLError as problem:
        raise error(f"{path}: not valid YAML ({str(problem).splitlines()[0]})") from None
    try:
        return model.model_validate(raw or {})
    except ValidationError as problem:
        fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'policy'}: {e['msg']}" for e in problem.errors())
        raise error(f"{path}: {fields}") from None
