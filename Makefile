# Common tasks. `make help` lists them.
PY ?= .venv/bin/python
PIP ?= .venv/bin/pip
ARGS ?=

.PHONY: help install test test-fast train bench lint format clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_%-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-12s %s\n", $$1, $$2}'

install:  ## create .venv and install the project with dev extras (CPU torch)
	test -d .venv || python3 -m venv .venv
	$(PIP) install -q -e '.[dev]'

test:  ## run the whole test suite
	$(PY) -m pytest -q -p no:cacheprovider

test-fast:  ## skip the slow end-to-end tests
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow"

train:  ## train on the embedded sample set (pass Hydra overrides with ARGS="...")
	$(PY) train.py $(ARGS)

bench:  ## print FLOPs / inference and training speed / data throughput figures
	$(PY) bench/flops.py
	$(PY) bench/data_throughput.py
	$(PY) bench/infer_speed.py
	$(PY) bench/train_speed.py

data-%:  ## download + verify a dataset: make data-vimeo / data-davis / data-set8 (others print manual steps)
	$(PY) -m datamodules.prepare_data $* $(ARGS)

lint:  ## ruff lint + format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format:  ## apply ruff fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:  ## remove run outputs and caches
	rm -rf outputs multirun logs wandb lightning_logs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
