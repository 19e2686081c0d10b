# Quick start: `make demo` (the laptop demo table) and `make test` (the test suite). Both install the
# project and its dev extras first (once; `make install` re-runs it after pyproject.toml changes).
# SKIP_INSTALL=1 uses the current environment as it is.
PYTHON ?= python
STAMP := build/.installed
DEMO_DIR := results/runs/demo/$(shell date +%Y-%m-%d_%H-%M-%S)

.PHONY: install demo test tables bench lint

$(STAMP): pyproject.toml scripts/ci/install.sh
ifneq ($(SKIP_INSTALL),1)
	bash scripts/ci/install.sh
endif
	@mkdir -p $(dir $(STAMP)) && touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@$(PYTHON) -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('ramda.tables') is None)" \
		|| { echo "error: ramda.tables is not installed; the demo table cannot be printed" >&2; exit 1; }
	$(PYTHON) train.py -m experiment=demo hydra.sweep.dir=$(DEMO_DIR)
	$(PYTHON) -m ramda.tables --runs $(DEMO_DIR) --table demo --print

test: $(STAMP)
	$(PYTHON) -m pytest -q

tables: $(STAMP)
	$(PYTHON) -m ramda.tables

bench: $(STAMP)
	$(PYTHON) scripts/bench_optim.py

lint:
	ruff check . && ruff format --check .
