# Two commands do everything on a fresh machine (Python 3.11, Java 17, Maven):
#   make demo   - create .venv, install, run the pipeline on the embedded store
#   make test   - create .venv, install, run the whole test suite (starts real servers)
#   make lint   - ruff, mypy and lint-imports (the layers contract in pyproject.toml)
#   make lock   - re-resolve requirements.lock after changing a dependency in pyproject.toml
#   make images - build every container image from a debootstrap base (needs dockerd, debootstrap)
#   make up / make down - the whole system under docker-compose (deploy/compose.yaml)
# The venv installs the exact versions and hashes of requirements.lock (the base, every
# extra and the dev tools), then the project itself without resolving anything again.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
LOCK := requirements.lock
LOCK_EXTRAS := --extra dev --extra kafka --extra fluss --extra report --extra console --extra rest --extra parquet
JOB_LOCK := requirements-job.lock
JOB_EXTRAS := --extra kafka --extra fluss --extra rest
KAFKA_JOB_LOCK := requirements-job-kafka.lock
KAFKA_JOB_EXTRAS := --extra kafka --extra rest
TOOLS_LOCK := requirements-tools.lock
TOOLS_EXTRAS := --extra kafka --extra fluss --extra rest --extra report --extra console --extra parquet
UV_VERSION := 0.13.9

.PHONY: demo test lint bench lock clean images up down

$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet --require-hashes -r $(LOCK)
	$(VENV)/bin/pip install --quiet --no-deps -e .
	$(VENV)/bin/pip check
	touch $(STAMP)

# uv runs from its own throwaway venv, so the project's venv holds only locked packages.
# The images' subsets, all pinned to $(LOCK)'s versions: $(KAFKA_JOB_LOCK) (base + kafka +
# rest: the job image), $(JOB_LOCK) (plus fluss: the job image for Fluss) and $(TOOLS_LOCK)
# (plus report + console: the tools image).
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet uv==$(UV_VERSION)
	.venv-lock/bin/uv pip compile pyproject.toml --python-version 3.11 $(LOCK_EXTRAS) \
	    --generate-hashes --output-file $(LOCK) $(ARGS)
	.venv-lock/bin/uv pip compile pyproject.toml --python-version 3.11 $(JOB_EXTRAS) \
	    --constraint $(LOCK) --generate-hashes --output-file $(JOB_LOCK)
	.venv-lock/bin/uv pip compile pyproject.toml --python-version 3.11 $(KAFKA_JOB_EXTRAS) \
	    --constraint $(LOCK) --generate-hashes --output-file $(KAFKA_JOB_LOCK)
	.venv-lock/bin/uv pip compile pyproject.toml --python-version 3.11 $(TOOLS_EXTRAS) \
	    --constraint $(LOCK) --generate-hashes --output-file $(TOOLS_LOCK)
	@echo "$(LOCK) and the image locks updated; commit them with pyproject.toml"

demo: $(STAMP)
	$(VENV)/bin/tradeflow demo $(ARGS)

test: $(STAMP)
	$(VENV)/bin/pytest $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache --no-logo

COMPOSE := docker-compose -p tradeflow -f deploy/compose.yaml

images: $(STAMP)
	$(VENV)/bin/python -m tradeflow.infra.images build

up:
	$(COMPOSE) up -d
	@echo "feed a market: $(COMPOSE) run --rm feed   (make down: stop, remove the volumes)"

down:
	$(COMPOSE) down -v --remove-orphans

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
	$(VENV)/bin/python bench/images.py

clean:
	rm -rf $(VENV) .venv-lock runs .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
