# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Every target installs what it needs when it is missing; nothing here is done by hand.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NODE_DIR := tests/interop/node
CHROMIUM := /usr/bin/chromium
HOST ?= 127.0.0.1
PORT ?= 8000
LINTED := $(wildcard src tests bench examples docs setup.py)

.PHONY: demo test docs lint typecheck unit bench bench-broadcast fuzz deps venv extension system-deps node-deps clean

# ---- set-up ---------------------------------------------------------------------------------

$(VENV)/.stamp-deps: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 'setuptools>=77' wheel 'Cython>=3.1'
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

venv: $(VENV)/.stamp-deps

# The compiled speedups (hand-written C, and Cython from the .py + .pxd), built in place next
# to their pure-Python reference.
extension: venv
	$(PY) setup.py --quiet build_ext --inplace

# Chromium for the browser tests; gcc and zlib's headers for the benchmark's C load generator;
# a real Redis (redis-server, and redis-cli from its dependency redis-tools) for the broker tests;
# nginx and Apache httpd for the proxy tests (tests/test_proxy_config.py).
system-deps:
	@missing=""; \
	[ -x $(CHROMIUM) ] || missing="$$missing chromium"; \
	{ command -v redis-server && command -v redis-cli; } > /dev/null || missing="$$missing redis-server"; \
	command -v gcc > /dev/null || missing="$$missing gcc"; \
	[ -f /usr/include/zlib.h ] || missing="$$missing zlib1g-dev"; \
	[ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	[ -x /usr/sbin/apache2 ] || missing="$$missing apache2"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian's$$missing"; \
	  (apt-get update -q && apt-get install -y -q $$missing) > /tmp/fullduplex-apt.log 2>&1 \
	    || { tail -20 /tmp/fullduplex-apt.log; exit 1; }; \
	fi

$(NODE_DIR)/node_modules/.stamp: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --silent --no-audit --no-fund
	touch $@

node-deps: $(NODE_DIR)/node_modules/.stamp

deps: venv extension system-deps node-deps

# ---- the two commands -----------------------------------------------------------------------

demo: venv extension
	$(PY) -m fullduplex demo --host $(HOST) --port $(PORT)

test: deps lint typecheck
	$(PY) -m pytest -q
	@echo "== core tests again without the compiled speedups (the pure-Python reference)"
	FULLDUPLEX_NO_EXTENSIONS=1 $(PY) -m pytest -q tests/protocol tests/conformance tests/asyncio tests/app tests/test_compiled.py

# ---- parts ----------------------------------------------------------------------------------

lint: venv
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

typecheck: venv
	$(VENV)/bin/mypy

bench: deps
	$(PY) -m bench

# Cross-process broadcast through one redis-server (bench/README.md, "Cross-process broadcast").
bench-broadcast: venv extension system-deps
	$(PY) -m bench.broadcast

# The fuzz targets of tests/fuzz (HTTP request reader, server handshake, frame parsers C and
# Python, deflate, the sans-I/O connection, proxy replies) for FUZZ_SECONDS each: under atheris
# (the fuzz extra, installed when missing) where it installs, else under hypothesis. Crashing
# inputs land in .fuzz/TARGET/. `make test` runs a short hypothesis pass of the same targets.
FUZZ_SECONDS ?= 60
fuzz: venv extension
	@$(PY) -c "import atheris" 2> /dev/null || $(PY) -m pip install --quiet \
	  $$($(PY) -c "import tomllib; print(' '.join(repr(r) for r in tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['fuzz']))") \
	  || echo "atheris does not install here: fuzzing with hypothesis"
	$(PY) -m tests.fuzz --seconds $(FUZZ_SECONDS)

# The documentation site, warnings as errors. The docs extra (listed once, in pyproject.toml)
# is installed when missing, without reinstalling the package.
docs: venv
	@$(PY) -c "import sphinx, myst_parser, furo" 2> /dev/null || $(PY) -m pip install --quiet \
	  $$($(PY) -c "import tomllib; print(' '.join(repr(r) for r in tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['docs']))")
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

clean:
	rm -rf $(VENV) build dist src/*.egg-info docs/_build $(NODE_DIR)/node_modules
	find src -name '*.so' -delete
	rm -f src/fullduplex/protocol/frames.c src/fullduplex/protocol/connection.c src/fullduplex/asyncio/connection.c
