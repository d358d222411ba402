# Two commands do everything on a fresh machine (Python 3.11, Java 17, Maven):
#   make demo   - create .venv, install, run the pipeline on the embedded store
#   make test   - create .venv, install, run the whole test suite (starts real servers)
#   make lint   - ruff, mypy and lint-imports (the layers contract in pyproject.toml)
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tradeflow demo $(ARGS)

test: $(STAMP)
	$(VENV)/bin/pytest $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache --no-logo

bench: $(STAMP)
	$(VENV)/bin/python bench/indicators.py
	$(VENV)/bin/python bench/strategy.py
	$(VENV)/bin/python bench/risk.py
	$(VENV)/bin/python bench/kafka.py
	$(VENV)/bin/python bench/fluss.py
	$(VENV)/bin/python bench/pipeline.py
	$(VENV)/bin/python bench/execution.py
	$(VENV)/bin/python bench/chaos.py
	$(VENV)/bin/python bench/fuzz.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
