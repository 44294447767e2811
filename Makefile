# Two entry points for people: `make demo` and `make test`. Everything else is a step of them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv system-deps test lint typecheck pytest demo bench bench-peers clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,go,zig]"
	touch $(STAMP)

venv: $(STAMP)

# Compiles of untrusted source run in bubblewrap. A fresh machine (CI runs as root) gets it
# from apt; the package lists are fetched only when the install cannot find it.
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

lint: $(STAMP)
	$(BIN)/ruff check wasmq runtime compiler tests benchmarks
	$(BIN)/ruff format --check wasmq runtime compiler tests benchmarks
	$(BIN)/hadolint --config .hadolint.yaml Dockerfile

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) system-deps
	$(BIN)/pytest $(PYTEST_ARGS)

test: system-deps lint typecheck pytest

demo: $(STAMP) system-deps
	$(BIN)/python -m runtime.demo

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

clean:
	rm -rf $(VENV) .wasmq wasm_task_functions/*.wasm wasm_task_functions/.cache runtime-logs
