# The two commands of the README: `make demo` and `make test`. Both build .venv from the repo's own files.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-sqlite test-postgres lint install clean

$(STAMP): core/pyproject.toml tests/example_plugin/pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e 'core[dev]' -e tests/example_plugin -e tests/broken_plugin $(foreach p,$(wildcard plugins/*/pyproject.toml),-e $(dir $(p)))
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hub demo

test: $(STAMP) lint test-sqlite test-postgres

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy core/hub tests/example_plugin/hub_example plugins/cplug_pos/hub_cplug plugins/bling/hub_bling

test-sqlite: $(STAMP)
	$(BIN)/pytest -q

# PostgreSQL + Redis on 127.0.0.1 (started if down), then alembic check and migrations up and down.
test-postgres: $(STAMP)
	bash .ci/services
	$(BIN)/python .ci/pgdb.py hub_ci
	HUB_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/hub_ci $(BIN)/hub db upgrade
	HUB_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/hub_ci $(BIN)/alembic check
	HUB_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/hub_ci $(BIN)/hub db downgrade base
	HUB_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/hub_ci $(BIN)/hub db upgrade
	HUB_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/hub_ci HUB_TEST_REDIS_URL=redis://127.0.0.1:6379/15 \
		$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .hub
