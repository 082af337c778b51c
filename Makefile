# `make run` and `make test` set up their own virtual environment on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU build of torch (a plain `torch` pulls several GB of CUDA wheels). On a GPU
# machine: make run TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_VERSION ?= 2.13.0
TORCH  ?= torch==$(TORCH_VERSION)
# Unset: `callmood` finds the config itself, as every command does: $CALLMOOD_CONFIG, else
# ./config.yaml when there is one, else the built-in defaults. `make run CONFIG=x.yaml` names one.
CONFIG ?=

.PHONY: run test test-fast test-unit test-integration test-e2e test-browser browser setup lock translations clean

# Everything but torch comes from requirements.lock: the exact versions, each checked
# against its hashes, so every install runs what the tests ran. Then CallMood itself.
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BIN)/callmood serve $(if $(CONFIG),--config $(CONFIG),)

# Every tier: tests/unit, tests/integration, tests/e2e, tests/browser.
test: setup browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Unit and integration tiers only (no running service, no `callmood` processes).
test-fast: setup
	$(BIN)/python -m pytest tests/unit tests/integration $(PYTEST_ARGS)

test-unit test-integration test-e2e: test-%: setup
	$(BIN)/python -m pytest tests/$* $(PYTEST_ARGS)

test-browser: setup browser
	$(BIN)/python -m pytest tests/browser $(PYTEST_ARGS)

# The browser tests drive the OS's Chromium (Playwright's own browser download is not
# used), with a font for Chinese text (the screenshots): installed from the OS packages
# when missing, saying so.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } && \
	  { ! command -v fc-list >/dev/null 2>&1 || fc-list :lang=zh | grep -q .; } || \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "Chromium or a Chinese font is missing: installing them from the OS packages (apt-get install chromium fonts-wqy-zenhei) for tests/browser"; \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium fonts-wqy-zenhei; \
	  else \
	    echo "Chromium is missing and this system has no apt-get: install Chromium (the chromium package) for tests/browser, or they are skipped"; \
	  fi

# The pages' message catalogue: extract the English ids from the code and the templates,
# merge them into the Chinese catalogue (new ones come in empty: translate them), compile.
# Marked as _(), gettext(), ngettext() ..., and lazy_gettext() (also imported as _l) for module-level text.
# zh_Hans_CN: Babel's name for zh_CN, the folder Flask-Babel looks in (plugin/web/i18n.py).
translations: setup
	$(BIN)/pybabel -q extract -F babel.cfg -k _l -k lazy_gettext --no-location --sort-output -o $(VENV)/messages.pot plugin
	$(BIN)/pybabel -q update -i $(VENV)/messages.pot -d plugin/web/translations -l zh_Hans_CN --no-fuzzy-matching --ignore-obsolete
	$(BIN)/pybabel -q compile -d plugin/web/translations -l zh_Hans_CN

# After changing dependencies in pyproject.toml: pin them again (newest allowed versions,
# with the hashes PyPI lists for every platform). torch stays out (see TORCH above); the
# rest is resolved against TORCH_VERSION.
# pip-tools gets a virtual environment of its own, so it changes nothing the lock pinned.
LOCK_TOOLS := $(VENV)/lock-tools
lock:
	test -x $(LOCK_TOOLS)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_TOOLS) && \
	  $(LOCK_TOOLS)/bin/pip install --quiet --disable-pip-version-check 'pip-tools>=7.4'; }
	printf 'torch==%s\n' $(TORCH_VERSION) > $(LOCK_TOOLS)/torch-constraint.txt
	CUSTOM_COMPILE_COMMAND="make lock" \
	  $(LOCK_TOOLS)/bin/pip-compile --quiet --generate-hashes --strip-extras --extra test --extra postgres \
	  --unsafe-package torch --constraint $(LOCK_TOOLS)/torch-constraint.txt \
	  --no-emit-index-url --no-emit-find-links --output-file requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) var .pytest_cache artefacts
