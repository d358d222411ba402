# Two commands do everything on a fresh machine (Python 3.11, Java 17, Maven):
#   make demo   - create .venv, install, run the pipeline on the embedded store
#   make test   - create .venv, install, run the whole test suite (starts real servers)
#   make lint   - ruff, mypy and lint-imports (the layers contract in pyproject.toml)
#   make lock   - re-resolve requirements.lock after changing a dependency in pyproject.toml
# The venv installs the exact versions and hashes of requirements.lock (the base, every
# extra and the dev tools), then the project itself without resolving anything again.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
LOCK := requirements.lock
LOCK_EXTRAS := --extra dev --extra kafka --extra fluss --extra report --extra console --extra rest
JOB_LOCK := requirements-job.lock
JOB_EXTRAS := --extra kafka --extra fluss --extra rest
UV_VERSION := 0.13.9

.PHONY: demo test lint bench lock clean

$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet --require-hashes -r $(LOCK)
	$(VENV)/bin/pip install --quiet --no-deps -e .
	$(VENV)/bin/pip check
	touch $(STAMP)

# uv runs from its own throwaway venv, so the project's venv holds only locked packages.
# $(JOB_LOCK) is the Docker image's subset (base + kafka + fluss + rest), pinned to $(LOCK)'s versions.
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet uv==$(UV_VERSION)
	.venv-lock/bin/uv pip compile pyproject.toml --python-version 3.11 $(LOCK_EXTRAS) \
	    --generate-hashes --output-file $(LOCK) $(ARGS)
	.venv-lock/bin/uv pip compile pyproject.toml --python-version 3.11 $(JOB_EXTRAS) \
	    --constraint $(LOCK) --generate-hashes --output-file $(JOB_LOCK)
	@echo "$(LOCK) and $(JOB_LOCK) updated; commit them with pyproject.toml"

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
	$(VENV)/bin/python bench/console.py

clean:
	rm -rf $(VENV) .venv-lock runs .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
