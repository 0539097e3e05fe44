# Common tasks. `make help` lists them.
PY ?= .venv/bin/python
PIP ?= .venv/bin/pip
ARGS ?=

.PHONY: help install test test-fast train bench device-kit lint format clean

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

SHARED_DATA ?= ../shared/data
# What bench/device_checks.sh needs on a lent GPU machine that its image lacks (see that script):
# the wheels (Python 3.12, x86-64; the versions of this .venv) and the shared frames it reads.
device-kit:  ## wheels + shared frames for bench/device_checks.sh -> .whl/, .device_data/ (~57 MB)
	rm -rf .whl .device_data && mkdir -p .whl .device_data/set8 .device_data/tennis_videnn
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux2014_x86_64 -d .whl \
	  $$($(PIP) freeze | grep -iE '^(hydra-core|omegaconf|kornia|kornia.rs|av)==')
	$(PIP) wheel -q --no-deps -w .whl $$($(PIP) freeze | grep -i '^antlr4-python3-runtime==')
	cp -r $(SHARED_DATA)/davis2017_480p .device_data/
	cp -r $(SHARED_DATA)/set8/hypersmooth .device_data/set8/
	cp -r $(SHARED_DATA)/tennis_videnn/original .device_data/tennis_videnn/
	mkdir -p .device_data/vimeo90k_septuplet/sequences/00002
	cp $(SHARED_DATA)/vimeo90k_septuplet/*.txt .device_data/vimeo90k_septuplet/
	cp -r $(SHARED_DATA)/vimeo90k_septuplet/sequences/00002/0004 \
	  .device_data/vimeo90k_septuplet/sequences/00002/
	du -sh .whl .device_data

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
