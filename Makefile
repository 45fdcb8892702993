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

.PHONY: demo test lab bench soak brokers node-tools doctor clean help
.DEFAULT_GOAL := help

help:
	@echo "make demo    - start the lab, compare the protocols, write exports/"
	@echo "make test    - run every test, notebooks included"
	@echo "make lab     - open JupyterLab on notebooks/"
	@echo "make bench   - run the benchmarks, append to benchmarks/RESULTS.md (long: the paired ladders alone ~30 min)"
	@echo "make soak    - 10-minute soak of all four protocols at once (takes ~11 minutes; not in test or bench)"
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

# The AsyncAPI project's own parser, which checks every exported document (labkit/asyncapi/validate.py).
# Installed into .node/ (gitignored). Without npm this prints the command and carries on; the AsyncAPI
# tests then fail saying what is missing.
NODE_DIR := .node
$(NODE_DIR)/node_modules/@asyncapi/parser/package.json:
	@if command -v npm >/dev/null 2>&1; then \
		npm install --prefix $(NODE_DIR) --no-audit --no-fund @asyncapi/parser@3 \
			|| echo "npm install failed: run it again by hand: npm install --prefix $(NODE_DIR) @asyncapi/parser@3"; \
	else \
		echo "npm not found: install Node.js >= 18 with npm, then run: npm install --prefix $(NODE_DIR) @asyncapi/parser@3"; \
	fi

node-tools: $(NODE_DIR)/node_modules/@asyncapi/parser/package.json

demo: $(STAMP) brokers
	$(BIN)/labkit demo --out exports

test: $(STAMP) brokers node-tools
	MPLBACKEND=Agg LABKIT_QUICK=1 $(BIN)/python -m pytest --durations=15 --nbmake --nbmake-timeout=300 \
		$(PYTEST_ARGS) tests notebooks

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP) brokers
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks paired
	$(BIN)/python -m benchmarks pacer --append
	$(BIN)/python -m benchmarks crowd --append

soak: $(STAMP) brokers
	$(BIN)/python -m benchmarks soak $(SOAK_ARGS)

doctor: $(STAMP)
	$(BIN)/labkit doctor

clean:
	rm -rf $(VENV) exports .pytest_cache
