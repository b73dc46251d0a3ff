# kgateway: the two commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= etc/gateway.xml
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv web system brokers brokers-stop run check lint unit test bench clean

help:
	@echo "make run    install everything, start the brokers, run the gateway on $(CONFIG)"
	@echo "make test   install everything the tests need, then ruff, mypy and the whole suite"
	@echo "make check  validate $(CONFIG) without starting anything"
	@echo "make unit   the fast unit tests only"
	@echo "make bench  the benchmarks (figures go to bench/results/)"

$(BIN)/.installed: setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	# compat mode: the flat layout shares the twisted.plugins namespace with Twisted
	$(BIN)/pip install -q --disable-pip-version-check \
		--config-settings editable_mode=compat -e '.[test]'
	touch $@

venv: $(BIN)/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

web: node_modules/.installed
	scripts/vendor-web.sh

system:
	scripts/system-deps.sh

brokers: system
	scripts/rabbitmq.sh start
	scripts/activemq.sh start

brokers-stop:
	-scripts/activemq.sh stop
	-scripts/rabbitmq.sh stop

run: venv web
	@$(MAKE) --no-print-directory brokers || \
		echo "kgateway: brokers not started; echo works, the AMQP and JMS tutorials need them"
	$(BIN)/twistd -n --pidfile= kgateway -c $(CONFIG)

check: venv
	$(BIN)/kgateway check $(CONFIG)

lint: venv
	$(BIN)/ruff check kgateway tests bench twisted
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

test: venv web brokers lint
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: venv web brokers
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) node_modules web/vendor build dist *.egg-info .pytest_cache .mypy_cache
