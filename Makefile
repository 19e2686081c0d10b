# Quick start: `make demo` (the laptop demo table) and `make test` (the test suite). Both install the
# project and its dev extras first (once; `make install` re-runs it after pyproject.toml changes).
# SKIP_INSTALL=1 uses the current environment as it is.
PYTHON ?= python
STAMP := build/.installed
DEMO_DIR := results/runs/demo/$(shell date +%Y-%m-%d_%H-%M-%S)

.PHONY: install demo test tables bench lint docs-numbers

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
	$(PYTHON) train.py -m experiment=demo hydra.sweep.dir=$(DEMO_DIR)
	$(PYTHON) -m ramda.tables --runs $(DEMO_DIR) --table demo --print

test: $(INSTALLED)
	$(PYTHON) -m pytest -q

# SOURCE=wandb PROJECT=<entity/project> reads the runs from Weights & Biases instead of results/runs.
tables: $(INSTALLED)
	$(PYTHON) -m ramda.tables $(if $(SOURCE),--source $(SOURCE)) $(if $(PROJECT),--wandb-project $(PROJECT))

bench: $(INSTALLED)
	$(PYTHON) scripts/bench_optim.py

lint:
	ruff check . && ruff format --check .

# Reruns the commands whose numbers the docs quote and rewrites those blocks (scripts/docs_numbers.py);
# ONLY=<block> reruns one of them (demo, demo-seeds, demo-ddp).
docs-numbers: $(INSTALLED)
	$(PYTHON) scripts/docs_numbers.py $(if $(ONLY),--only $(ONLY))
