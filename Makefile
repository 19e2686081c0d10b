# Quick start: `make demo` (the laptop demo table) and `make test` (the test suite). Each installs what it needs
# first, once (scripts/ci/install.sh): `make demo` the project with its `demo` extra, `make test` (and
# `make install`) everything the suite uses, Debian packages included. SKIP_INSTALL=1 uses the current
# environment as it is.
PYTHON ?= python
STAMP := build/.installed
DEMO_STAMP := build/.installed-demo
DEMO_DIR := results/runs/demo/$(shell date +%Y-%m-%d_%H-%M-%S)
FRONTIER_DIR := results/runs/frontier/$(shell date +%Y-%m-%d_%H-%M-%S)

.PHONY: install demo test tables frontier bench lint docs-numbers

ifeq ($(SKIP_INSTALL),1)
INSTALLED :=
DEMO_INSTALLED :=
else
INSTALLED := $(STAMP)
DEMO_INSTALLED := $(DEMO_STAMP)
endif

$(STAMP): pyproject.toml scripts/ci/install.sh
	bash scripts/ci/install.sh test
	@mkdir -p $(dir $(STAMP)) && touch $(STAMP)

$(DEMO_STAMP): pyproject.toml scripts/ci/install.sh
	bash scripts/ci/install.sh demo
	@mkdir -p $(dir $(DEMO_STAMP)) && touch $(DEMO_STAMP)

install: $(STAMP)

demo: $(DEMO_INSTALLED)
	$(PYTHON) train.py -m experiment=demo hydra.sweep.dir=$(DEMO_DIR)
	$(PYTHON) -m ramda.tables --runs $(DEMO_DIR) --table demo --print

test: $(INSTALLED)
	$(PYTHON) -m pytest -q

# SOURCE=wandb PROJECT=<entity/project> reads the runs from Weights & Biases instead of results/runs.
tables: $(INSTALLED)
	$(PYTHON) -m ramda.tables $(if $(SOURCE),--source $(SOURCE)) $(if $(PROJECT),--wandb-project $(PROJECT))

# The λ frontier on digits (docs/export.md): 4 optimizers × 6 λ × 3 seeds, each exported, in two processes
# (one thread each), then accuracy against FLOPs kept in results/figures/frontier.png and results/tables/.
frontier: $(INSTALLED)
	$(PYTHON) train.py -m experiment=frontier optimizer=ramda,rmda hydra.sweep.dir=$(FRONTIER_DIR)/a & a=$$!; \
	$(PYTHON) train.py -m experiment=frontier optimizer=proxsgd,proxgen hydra.sweep.dir=$(FRONTIER_DIR)/b & b=$$!; \
	wait $$a; ra=$$?; wait $$b; rb=$$?; test $$ra = 0 -a $$rb = 0
	$(PYTHON) -m ramda.tables --runs $(FRONTIER_DIR) --frontier --print

bench: $(INSTALLED)
	$(PYTHON) scripts/bench_optim.py

lint:
	ruff check . && ruff format --check .

# Reruns the commands whose numbers the docs quote and rewrites those blocks (scripts/docs_numbers.py);
# ONLY=<block> reruns one of them (demo, demo-seeds, demo-ddp).
docs-numbers: $(INSTALLED)
	$(PYTHON) scripts/docs_numbers.py $(if $(ONLY),--only $(ONLY))
