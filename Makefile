# `make run` and `make test` set up their own virtual environment on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU build of torch (a plain `torch` pulls several GB of CUDA wheels). On a GPU
# machine: make run TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH  ?= torch==2.13.0
CONFIG ?= $(if $(wildcard config.yaml),config.yaml,)

.PHONY: run test test-fast test-unit test-integration test-e2e setup clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BIN)/callmood serve $(if $(CONFIG),--config $(CONFIG),)

# Every tier: tests/unit, tests/integration, tests/e2e.
test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Unit and integration tiers only (no running service, no `callmood` processes).
test-fast: setup
	$(BIN)/python -m pytest tests/unit tests/integration $(PYTEST_ARGS)

test-unit test-integration test-e2e: test-%: setup
	$(BIN)/python -m pytest tests/$* $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
