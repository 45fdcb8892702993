# labkit: two commands do everything on a fresh machine with Python >= 3.11.
#   make demo   start the default lab, run the protocol comparison, write exports/
#   make test   every test, notebooks included
# Both create .venv when missing and install what they need, RabbitMQ and
# Mosquitto included (as root through apt-get; otherwise they print the command).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.labkit-installed
PYTEST_ARGS ?=

.PHONY: demo test lab bench brokers doctor clean help
.DEFAULT_GOAL := help

help:
	@echo "make demo    - start the lab, compare the protocols, write exports/"
	@echo "make test    - run every test, notebooks included"
	@echo "make lab     - open JupyterLab on notebooks/"
	@echo "make bench   - run the benchmarks, append to benchmarks/RESULTS.md"
	@echo "make doctor  - say which brokers can run here"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "labkit needs Python >= 3.11; set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

brokers:
	@sh .ci/install-brokers

demo: $(STAMP) brokers
	$(BIN)/labkit demo --out exports

test: $(STAMP) brokers
	MPLBACKEND=Agg LABKIT_QUICK=1 $(BIN)/python -m pytest --durations=15 --nbmake --nbmake-timeout=300 \
		$(PYTEST_ARGS) tests notebooks

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP) brokers
	$(BIN)/python -m benchmarks

doctor: $(STAMP)
	$(BIN)/labkit doctor

clean:
	rm -rf $(VENV) exports .pytest_cache
