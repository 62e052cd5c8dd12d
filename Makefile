# The two commands of the README: `make demo` and `make test`. Both build .venv from the repo's own files.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test browser test-sqlite test-postgres lint install clean

# The product: the core and the platform plugins. Test-only plugins (the lojinha example, a plugin that fails to
# import) are installed by the test targets alone, so `make demo` shows what a user installs.
$(STAMP): core/pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e 'core[dev]' $(foreach p,$(wildcard plugins/*/pyproject.toml),-e $(dir $(p)))
	touch $(STAMP)

$(TEST_STAMP): $(STAMP) tests/example_plugin/pyproject.toml tests/broken_plugin/pyproject.toml
	$(BIN)/pip install -q -e tests/example_plugin -e tests/broken_plugin
	touch $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hub demo

test: $(TEST_STAMP) browser lint test-sqlite test-postgres

browser: $(TEST_STAMP)  # chromium, chromium-driver and selenium for tests/console/test_browser.py
	bash .ci/browser $(BIN)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy core/hub tests/example_plugin/hub_example plugins/cplug_pos/hub_cplug plugins/bling/hub_bling plugins/zydon/hub_zydon plugins/pluggto/hub_pluggto plugins/amazon_fba/hub_amazon_fba

# Each test has its own store, home and ports: the SQLite pass runs on every core.
test-sqlite: $(TEST_STAMP)
	$(BIN)/pytest -q -n auto --durations=10

# PostgreSQL + Redis on 127.0.0.1 (started if down), then alembic check and migrations up and down; the store tests
# on both cores, each xdist worker on its own database and Redis number (tests/conftest.py).
test-postgres: $(TEST_STAMP)
	bash .ci/services
	$(BIN)/python .ci/pgdb.py hub_ci
	HUB_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/hub_ci $(BIN)/hub db upgrade
	HUB_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/hub_ci $(BIN)/alembic check
	HUB_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/hub_ci $(BIN)/hub db downgrade base
	HUB_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/hub_ci $(BIN)/hub db upgrade
	HUB_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/hub_ci HUB_TEST_REDIS_URL=redis://127.0.0.1:6379/15 \
		$(BIN)/pytest -q -n 2 --durations=10

clean:
	rm -rf $(VENV) .hub
