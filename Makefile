# Two entry points for people: `make demo` and `make test`. Everything else is a step of them
# or a contributor's tool (CONTRIBUTING.md describes every target).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/dev.lock

.PHONY: venv shell system-deps toolchains test lint typecheck pytest demo bench bench-peers clean cov lock test-fast

# Every library and tool at the version and hash the lock names; the package itself goes in
# without dependencies, so nothing the lock does not name is installed. Quiet: `make demo`'s
# first screen is the demo, not the install.
#
# The editable install filters exactly one message. setuptools installs every layout but a
# single source root (ours maps wasmq_sdk to sdk/) through an import hook and then emits an
# "Editable installation" notice, which pip 25+ shows as a warning for local directories; its
# other editable modes emit a notice of their own (strict) or cannot map wasmq_sdk (compat).
EDITABLE_NOTICE := ignore:Editable installation
$(STAMP): pyproject.toml $(LOCK)
	@if test -x $(BIN)/python; then echo "updating $(VENV) from $(LOCK)"; \
	else echo "setting up $(VENV) from $(LOCK) (first run only: about a minute)"; fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	@PYTHONWARNINGS="$(EDITABLE_NOTICE)" $(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

# An interactive shell with the venv's bin first on PATH, as `source .venv/bin/activate`
# leaves it; `exit` returns to the shell that ran make.
shell: $(STAMP)
	@echo "a shell with $(BIN) on PATH (wasmq, pytest, ruff...): 'exit' or Ctrl-D leaves it"
	@VIRTUAL_ENV="$(abspath $(VENV))" PATH="$(abspath $(BIN)):$$PATH" "$${SHELL:-/bin/sh}" -i

# Compiles of untrusted source run in bubblewrap; the browser tests (tests/browser) drive
# Debian's Chromium and chromedriver; the TLS tests put stunnel in front of Valkey. A fresh machine (CI runs as root) gets them from apt;
# the package lists are fetched only when the install cannot find them.
system-deps:
	@command -v bwrap >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
			|| { apt-get update -qq >/dev/null \
				&& apt-get install -y -qq bubblewrap >/dev/null; }; \
		else \
			echo "bwrap is missing: install bubblewrap, or set WASMQ_COMPILE_ISOLATION=none" \
				"for trusted source only" >&2; \
		fi; \
	}
	@{ test -x /usr/bin/chromium && test -x /usr/bin/chromedriver; } || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
			|| { apt-get update -qq >/dev/null \
				&& apt-get install -y -qq chromium chromium-driver >/dev/null; }; \
		else \
			echo "chromium or chromedriver is missing: install chromium and chromium-driver" \
				"(the browser tests skip without them)" >&2; \
		fi; \
	}
	@command -v stunnel4 >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y -qq stunnel4 >/dev/null 2>&1 \
			|| { apt-get update -qq >/dev/null \
				&& apt-get install -y -qq stunnel4 >/dev/null; }; \
		else \
			echo "stunnel4 is missing: install it (the TLS tests skip without it)" >&2; \
		fi; \
	}

# The AssemblyScript compiler (.ts tasks) at the version sdk/assemblyscript's lock pins,
# into its node_modules; needs Node.js 20+ with npm, without which .ts builds (and their
# tests) say what is missing.
ASC_DIR := sdk/assemblyscript
ASC_STAMP := $(ASC_DIR)/node_modules/.package-lock.json
toolchains: $(ASC_STAMP)

$(ASC_STAMP): $(ASC_DIR)/package.json $(ASC_DIR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(ASC_DIR) --ignore-scripts --no-audit --no-fund --silent && touch $@; \
	else \
		echo "npm is missing: install Node.js 20+ to build AssemblyScript (.ts) tasks" >&2; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check wasmq runtime compiler sdk tests benchmarks
	$(BIN)/ruff format --check wasmq runtime compiler sdk tests benchmarks
	$(BIN)/hadolint --config .hadolint.yaml Dockerfile

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) system-deps toolchains
	$(BIN)/pytest $(PYTEST_ARGS)

# The edit loop, well under a minute: no toolchain compiles, no subprocesses, nothing slow
# (the markers in pyproject.toml). Needs the venv but not the system deps.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not toolchain and not processes and not slow" $(PYTEST_ARGS)

test: system-deps lint typecheck pytest

# The suite with line and branch coverage of wasmq, runtime and compiler ([tool.coverage] in
# pyproject.toml): missing lines in the terminal, the browsable report in htmlcov/.
cov: $(STAMP) system-deps toolchains
	$(BIN)/pytest --cov --cov-report=term-missing --cov-report=html $(PYTEST_ARGS)

# On the `demo` queue, so the user's own workers never run a demo task; an embedded server
# that was running stays running (runtime/demo.py).
demo: $(STAMP) system-deps toolchains
	@$(BIN)/python -m runtime.demo

bench: $(STAMP)
	$(BIN)/wasmq bench

# A venv of its own (benchmarks/.venv) so the peers never reach the package's dev venv.
bench-peers:
	test -x benchmarks/.venv/bin/python || $(PYTHON) -m venv benchmarks/.venv
	test benchmarks/.venv/.installed -nt benchmarks/requirements.txt \
		&& test benchmarks/.venv/.installed -nt pyproject.toml || ( \
		benchmarks/.venv/bin/python -m pip install --quiet -e ".[go,zig]" \
			-r benchmarks/requirements.txt && touch benchmarks/.venv/.installed)
	benchmarks/.venv/bin/python benchmarks/run.py $(BENCH_ARGS)

# Rewrites requirements/dev.lock from pyproject.toml for CPython 3.11 on x86_64 Linux, with
# uv from a throwaway venv. Pins already in the lock stay while pyproject allows them;
# `make lock LOCK_ARGS=--upgrade` (or --upgrade-package NAME) moves them on.
UV_VERSION := 0.13.9
lock:
	tmp="$$(mktemp -d)" && trap 'rm -rf "$$tmp"' EXIT \
		&& $(PYTHON) -m venv "$$tmp" \
		&& "$$tmp/bin/python" -m pip install --quiet uv==$(UV_VERSION) \
		&& "$$tmp/bin/uv" pip compile pyproject.toml --extra dev --extra go --extra zig --extra otel \
			--generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
			--custom-compile-command "make lock" --quiet $(LOCK_ARGS) --output-file $(LOCK)

clean:
	rm -rf $(VENV) .wasmq wasm_task_functions/*.wasm wasm_task_functions/.cache runtime-logs \
		htmlcov .coverage
