"""The layers of DESIGN.md §2 are enforced: `lint-imports` passes on the tree and fails on a back-edge."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("configs", "ledger", "features", "models", "training", "rules", "activity", "runs", "monitoring", "serving")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH points at the copy, so grimp reads its packages and not the installed ones.
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", str(root / "pyproject.toml")],
                          cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


def copy_of_the_tree(destination: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, destination / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", destination / "pyproject.toml")
    return destination


def test_the_tree_keeps_its_layers(tmp_path):
    result = lint_imports(copy_of_the_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_ledger_module_importing_serving_breaks_the_build(tmp_path):
    root = copy_of_the_tree(tmp_path)
    with (root / "ledger" / "schema.py").open("a") as module:
        module.write("\nimport serving.views  # a deliberate back-edge\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "ledger imports nothing of ours BROKEN" in result.stdout
    assert "ledger.schema -> serving.views" in result.stdout
