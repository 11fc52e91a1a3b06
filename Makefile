# The README's two commands: `make demo` (main job end to end) and `make test`.
# Both create the virtual environment and install the project when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := out/demo
# The demo ledger runs from 2022-01-01 for 24 months: its last day is the date the worklist and forecast are for.
DEMO_AS_OF := 2023-12-31
PORT ?= 3000
export BENTOML_DO_NOT_TRACK := True
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: install demo serve test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]' 'setuptools>=77'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/arrisk generate --customers 300 --months 24 --seed 7 --out $(DEMO)/synthetic
	$(BIN)/arrisk import samples/ibm/ibm_wa_accounts_receivable.csv --mapping ibm_sample --out $(DEMO)/ibm
	$(BIN)/arrisk validate $(DEMO)/synthetic
	$(BIN)/arrisk validate $(DEMO)/ibm
	$(BIN)/arrisk train --ledger $(DEMO)/synthetic --report-dir $(DEMO)/backtest-synthetic
	$(BIN)/arrisk backtest --ledger $(DEMO)/ibm --out $(DEMO)/backtest-ibm --origins 6
	$(BIN)/arrisk report drift --ledger $(DEMO)/synthetic --as-of $(DEMO_AS_OF) --out out/reports
	$(BIN)/arrisk report performance --ledger $(DEMO)/synthetic --out out/reports
	$(BIN)/arrisk report kpis --ledger $(DEMO)/synthetic --from 2023-01-01 --to $(DEMO_AS_OF) --out out/reports
	$(BIN)/arrisk run --ledger $(DEMO)/synthetic --as-of $(DEMO_AS_OF) --out out/runs
	$(BIN)/python -m serving.smoke --runs out/runs
	COLUMNS=150 $(BIN)/arrisk worklist --ledger $(DEMO)/synthetic --as-of $(DEMO_AS_OF) --runs out/runs --top 10
	COLUMNS=150 $(BIN)/arrisk forecast --ledger $(DEMO)/synthetic --as-of $(DEMO_AS_OF) --runs out/runs --horizon-weeks 13
	$(BIN)/arrisk reminders draft --ledger $(DEMO)/synthetic --as-of $(DEMO_AS_OF) --user demo
	$(BIN)/arrisk reminders send --user demo --dry-run $(DEMO)/eml
	COLUMNS=150 $(BIN)/arrisk provision report --ledger $(DEMO)/synthetic --as-of $(DEMO_AS_OF) --from 2023-09-30 --out $(DEMO)/provision.xlsx
	@echo "Reports: out/reports/ (drift, performance, kpis). API: make serve, then e.g."
	@echo "  curl -H 'Authorization: Bearer arr_demo_collector' 'http://127.0.0.1:$(PORT)/v1/worklist?top=10'"
	@echo "Web page (after make serve; log in with a demo token, e.g. arr_demo_collector or arr_demo_admin):"
	@echo "  http://127.0.0.1:$(PORT)/v1/ui/login"

serve: $(STAMP)
	$(BIN)/arrisk serve --runs out/runs --port $(PORT) --tokens-file configs/tokens.example.yaml

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_validation.py
	$(BIN)/python benchmarks/bench_backtest_models.py
	$(BIN)/python benchmarks/bench_forecast.py
	$(BIN)/python benchmarks/bench_serving.py

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
