# Two entry points for people: `make demo` and `make test`. Everything else is a step of them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint typecheck pytest demo bench bench-peers clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,go,zig]"
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check runtime compiler tests benchmarks
	$(BIN)/ruff format --check runtime compiler tests benchmarks
	$(BIN)/hadolint --config .hadolint.yaml Dockerfile

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

demo: $(STAMP)
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
