# kgateway: the two commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= etc/gateway.xml
PYTEST_ARGS ?=
BENCH ?=
MINUTES ?= 60
SOAK_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv web system system-test brokers brokers-stop run check lint unit test bench \
	bench-quick bench-publish soak clean

help:
	@echo "make run    install what running needs, start the brokers, run the gateway on $(CONFIG)"
	@echo "make test   install what the tests need too (HAProxy, Chromium...), ruff, mypy, the suite"
	@echo "make check  validate $(CONFIG) without starting anything"
	@echo "make unit   the fast unit tests only"
	@echo "make bench  every benchmark, bench.relay (kgateway vs websockify vs a naive relay)"
	@echo "            first; figures, tables and plots go to bench/out/ (not tracked by git)"
	@echo "            BENCH='relay pool' runs only those"
	@echo "make bench-quick    bench.relay --quick: one short round of each scenario (smoke)"
	@echo "make soak MINUTES=60  bench.soak: every service type under churning load for"
	@echo "                    MINUTES (RSS, fds, lost messages); SOAK_ARGS='--tracemalloc'"
	@echo "make bench-publish  copy bench/out/ to the tracked bench/published/ and its table"
	@echo "                    into README.md, NOTE='...' beside it (then review and commit)"

$(BIN)/.installed: setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	# compat mode: the flat layout shares the twisted.plugins namespace with Twisted
	$(BIN)/pip install --disable-pip-version-check --progress-bar off \
		--config-settings editable_mode=compat -e '.[test]'
	touch $@

venv:
	@echo "==> [venv] Python environment in $(VENV) (first time: 1-2 min)"
	@$(MAKE) --no-print-directory $(BIN)/.installed

# What running needs (brokers, npm for web/vendor), before anything uses npm.
system:
	@echo "==> [system] Debian packages for running (first time as root: a few minutes)"
	scripts/system-deps.sh run

# the benchmarks' extra: websockify (the peer bench.relay measures against) and matplotlib
$(BIN)/.bench-installed: $(BIN)/.installed setup.py
	$(BIN)/pip install -q --disable-pip-version-check \
		--config-settings editable_mode=compat -e '.[test,bench]'
	touch $@

# What only the tests need on top (HAProxy, nginx, Chromium, slapd...).
system-test:
	@echo "==> [system-test] Debian packages for the tests"
	scripts/system-deps.sh test

web:
	@echo "==> [web] browser clients for the tutorials (npm ci, then web/vendor/)"
	scripts/vendor-web.sh

brokers:
	@echo "==> [brokers] RabbitMQ and ActiveMQ on 127.0.0.1"
	scripts/rabbitmq.sh start
	scripts/activemq.sh start

brokers-stop:
	-scripts/activemq.sh stop
	-scripts/rabbitmq.sh stop

run:
	@$(MAKE) --no-print-directory system || \
		echo "kgateway: Debian packages missing (above); echo works, the tutorials need them"
	@$(MAKE) --no-print-directory venv
	@$(MAKE) --no-print-directory web || \
		echo "kgateway: web/vendor/ not built; the AMQP and JMS tutorial pages need it"
	@$(MAKE) --no-print-directory brokers || \
		echo "kgateway: brokers not started; echo works, the AMQP and JMS tutorials need them"
	@echo "==> [gateway] $(BIN)/kgateway run $(CONFIG) (Ctrl-C stops it)"
	$(BIN)/kgateway run $(CONFIG)

check: venv
	$(BIN)/kgateway check $(CONFIG)

lint: venv
	$(BIN)/ruff check kgateway tests bench twisted
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

test: system system-test venv web brokers lint
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: system $(BIN)/.bench-installed web brokers
	$(BIN)/python -m bench $(BENCH)

bench-quick: $(BIN)/.bench-installed
	$(BIN)/python -m bench.relay --quick

soak: $(BIN)/.bench-installed brokers
	$(BIN)/python -m bench.soak --minutes $(MINUTES) $(SOAK_ARGS)

bench-publish: venv
	$(BIN)/python -m bench.publish --note "$(NOTE)"

clean:
	rm -rf $(VENV) node_modules web/vendor build dist *.egg-info .pytest_cache .mypy_cache
