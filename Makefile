# The two commands of the quickstart: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
export DVC_NO_UPDATE_CHECK := 1

.PHONY: install demo site test lint typecheck lint-workflows bench docs-example docs-site clean lock

# The environment is uv.lock, installed as it is (.ci/install: uv sync --locked, never a
# re-resolution); the stamp makes a second `make install` a no-op until the lock changes.
$(BIN)/retrain: pyproject.toml uv.lock .ci/install
	VENV=$(VENV) PYTHON=$(PYTHON) bash .ci/install --extra dev
	@touch $@

install: $(BIN)/retrain  ## create .venv and install the locked packages with the dev tools

lock:  ## re-resolve uv.lock after editing pyproject.toml; `make lock UPGRADE=1` upgrades all
	VENV=$(VENV) PYTHON=$(PYTHON) bash .ci/install lock $(if $(UPGRADE),--upgrade)
	$(MAKE) install

demo: install  ## one full retraining cycle on the bundled example, offline, in .demo/
	$(BIN)/retrain demo --dir .demo

# The history page (`retrain site`) of the demo's sandbox, which has a promotion and a pending
# proposal after `make demo`; SITE_REPO=. builds the checkout's own (what pages.yml publishes).
SITE_REPO ?= .demo/work
SITE_OUT  ?= .demo/site
site: install  ## the static history page of the demo's sandbox (run `make demo` first) in .demo/site/
	@test -e $(SITE_REPO)/.git || { echo "make site: $(SITE_REPO) is not a git checkout; run 'make demo' first" >&2; exit 2; }
	cd $(SITE_REPO) && $(abspath $(BIN))/retrain site --output $(abspath $(SITE_OUT))

test: install lint typecheck lint-workflows  ## the whole test suite (+ linters)
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

lint-workflows: install  ## actionlint, zizmor, shellcheck over .github/workflows
	bash .ci/lint-workflows

bench: install  ## benchmarks (drift vs Evidently and a scipy loop; the loop; serve vs MLflow's server)
	$(BIN)/python benchmarks/bench_predlog.py
	$(BIN)/python benchmarks/bench_drift.py
	$(BIN)/python benchmarks/bench_loop.py
	$(BIN)/python benchmarks/bench_serve.py

docs-example: install  ## regenerate docs/example-pr/ (the PR of the demo's retrain)
	$(BIN)/retrain demo --dir .demo --export docs/example-pr

docs-site: install  ## regenerate docs/site.png (the example's site after promote → retrain → rollback)
	RETRAIN_SITE_SCREENSHOT=$(abspath docs/site.png) $(BIN)/python -m pytest -q -n 0 tests/test_site.py -k chromium

clean:
	rm -rf .demo .retrain reports/latest
