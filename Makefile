# Quick start: `make demo` (the laptop demo table) and `make test` (the test suite). Both install the
# project and its dev extras first (once; `make install` re-runs it after pyproject.toml changes).
# SKIP_INSTALL=1 uses the current environment as it is.
PYTHON ?= python
STAMP := build/.installed
DEMO_DIR := results/runs/demo/$(shell date +%Y-%m-%d_%H-%M-%S)

.PHONY: install demo test tables bench lint

ifeq ($(SKIP_INSTALL),1)
INSTALLED :=
else
INSTALLED := $(STAMP)
endif

$(STAMP): pyproject.toml scripts/ci/install.sh
	bash scripts/ci/install.sh
	@mkdir -p $(dir $(STAMP)) && touch $(STAMP)

install: $(STAMP)

demo: $(INSTALLED)
	@$(PYTHON) -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('ramda.tables') is None)" \
		|| { echo "error: ramda.tables is not installed; the demo table cannot be printed" >&2; exit 1; }
	$(PYTHON) train.py -m experiment=demo hydra.sweep.dir=$(DEMO_DIR)
	$(PYTHON) -m ramda.tables --runs $(DEMO_DIR) --table demo --print

test: $(INSTALLED)
	$(PYTHON) -m pytest -q

tables: $(INSTALLED)
	$(PYTHON) -m ramda.tables

bench: $(INSTALLED)
	$(PYTHON) scripts/bench_optim.py

lint:
	ruff check . && ruff format --check .
