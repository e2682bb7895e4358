# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The CPU build of torch is installed first, pinned; the package itself only asks for torch>=2.4.
TORCH_PIN ?= torch==2.13.0

.PHONY: setup demo test lint typecheck bench-pusht bench-pusht-dp clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/scorepolicy demo --out runs/demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: lint typecheck
	$(VENV)/bin/pytest

bench-pusht: $(STAMP)
	$(PY) benchmarks/pusht.py

bench-pusht-dp: $(STAMP)
	$(PY) benchmarks/pusht.py --protocol dp

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
