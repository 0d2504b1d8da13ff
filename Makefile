# Two commands set up a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

ASSETS := static/vendor/socket.io.min.js static/vendor/uPlot.iife.min.js

.PHONY: run test install install-test assets lock clean

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

# Browser libraries come from npm, pinned by package-lock.json, and are served
# from static/vendor: no page loads a script from a CDN.
$(ASSETS) &: package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p static/vendor
	cp node_modules/socket.io-client/dist/socket.io.min.js static/vendor/
	cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css static/vendor/
	touch $(ASSETS)

assets: $(ASSETS)

install: $(VENV)/.installed $(ASSETS)

install-test: install $(VENV)/.installed-test

## run: install, migrate the SQLite database in instance/ and start the app
run: install
	$(BIN)/flask --app wsgi db upgrade
	@$(BIN)/flask --app wsgi staff check
	@echo
	@echo "supportbot is starting: the staff console is at http://$(HOST):$(PORT)/console/"
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
	rm -rf $(VENV) node_modules static/vendor .pytest_cache .ruff_cache .hypothesis
