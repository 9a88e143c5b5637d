# Two commands for a fresh machine: `make quickstart` and `make test`.
# A torch that python3 already has (e.g. a CUDA build) is kept: the venv then sees system packages.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
# e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" where PyPI would give a CUDA build
TORCH_PIP_ARGS ?=

.PHONY: quickstart test install dev clean

$(VENV)/.edgefed-installed: pyproject.toml
	@if $(PYTHON) -c "import torch" 2>/dev/null; then \
		echo "using the existing torch of $(PYTHON)"; $(PYTHON) -m venv --system-site-packages $(VENV); \
	else $(PYTHON) -m venv $(VENV); fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC) $(TORCH_PIP_ARGS)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.edgefed-dev: $(VENV)/.edgefed-installed
	$(PY) -m pip install -q -e ".[dev]"
	@# the report's browser test drives Debian's chromium; as root (CI) it is installed when missing
	@if [ "$$(id -u)" = 0 ] && ! command -v chromium >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq chromium; fi
	touch $@

install: $(VENV)/.edgefed-installed

dev: $(VENV)/.edgefed-dev

quickstart: install
	$(VENV)/bin/edgefed run scenarios/quickstart.yaml

test: dev
	$(PY) -m pytest -q -n auto --dist loadgroup  # one test process per core (pytest-xdist)

clean:
	rm -rf $(VENV) runs .pytest_cache
