# The README's two commands: `make demo` (main job end to end) and `make test`.
# Both create the virtual environment and install the project when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := out/demo
export BENTOML_DO_NOT_TRACK := True
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/arrisk generate --customers 300 --months 24 --seed 7 --out $(DEMO)/synthetic
	$(BIN)/arrisk import samples/ibm/ibm_wa_accounts_receivable.csv --mapping ibm_sample --out $(DEMO)/ibm
	$(BIN)/arrisk validate $(DEMO)/synthetic
	$(BIN)/arrisk validate $(DEMO)/ibm
	$(BIN)/arrisk train --ledger $(DEMO)/synthetic --report-dir $(DEMO)/backtest-synthetic
	$(BIN)/arrisk backtest --ledger $(DEMO)/ibm --out $(DEMO)/backtest-ibm --origins 6

test: $(STAMP)
	$(BIN)/ruff check .
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2

bench: $(STAMP)
	$(BIN)/python benchmarks/generate.py
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/backtest_models.py

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
