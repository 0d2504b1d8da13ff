# Two commands set up a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test lint install install-test lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.txt pyproject.toml
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

## run: install, migrate the SQLite database in instance/ and start the app
run: install
	$(BIN)/flask --app wsgi db upgrade
	@echo
	@echo "supportbot is starting on http://$(HOST):$(PORT)"
	@echo "Telegram webhook: http://$(HOST):$(PORT)/telegram/webhook"
	@echo
	$(BIN)/flask --app wsgi run --host $(HOST) --port $(PORT)

## test: install and run the whole suite (set TEST_DATABASE_URL for PostgreSQL)
test: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## lock: re-pin requirements*.txt from the ranges in pyproject.toml
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet .
	.lock-venv/bin/pip freeze --exclude supportbot > requirements.txt
	.lock-venv/bin/pip install --quiet '.[test]'
	.lock-venv/bin/pip freeze --exclude supportbot \
		| grep -vxFf requirements.txt > requirements-test.txt.new
	(echo "-r requirements.txt"; cat requirements-test.txt.new) > requirements-test.txt
	rm -rf .lock-venv requirements-test.txt.new

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
