# Two commands set everything up on a fresh machine (see README):
#   make run    - the main job (creates .venv, installs, runs the experiment)
#   make test   - lint + the default test suite
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch; override (e.g. TORCH="torch") where another build is wanted.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# optional extras: each has a pytest marker and a make test-<extra> target
EXTRAS := sb3 torchrl tianshou ray
space := $(subst ,, )

.PHONY: run test test-slow test-sb3 test-torchrl test-tianshou test-ray docs lint bench bench-quick results clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/reciprocity flagship --out runs/flagship

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -m "not slow and not $(subst $(space), and not ,$(EXTRAS))" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# the Stable-Baselines3 integration (extra [sb3]) in the same environment
test-sb3: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[sb3]"
	$(BIN)/python -c "import stable_baselines3"  # fail instead of silently skipping
	$(BIN)/python -m pytest -m sb3 $(PYTEST_ARGS)

# TorchRL + BenchMARL (extra [torchrl]) in the same environment; torch is named again so that
# pip keeps the CPU build (torchvision, pulled by BenchMARL, pins torch exactly)
test-torchrl: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[torchrl]" "$(TORCH)"
	$(BIN)/python -c "import torchrl, benchmarl"  # fail instead of silently skipping
	$(BIN)/python -m pytest -m torchrl $(PYTEST_ARGS)

# Tianshou (extra [tianshou]) in the same environment
test-tianshou: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[tianshou]" "$(TORCH)"
	$(BIN)/python -c "import tianshou"  # fail instead of silently skipping
	$(BIN)/python -m pytest -m tianshou $(PYTEST_ARGS)

# RLlib (extra [ray]) in its own environment: ray pins gymnasium 1.2.x
RAY_VENV := .venv-ray
$(RAY_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(RAY_VENV)
	$(RAY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(RAY_VENV)/bin/python -m pip install --quiet "$(TORCH)"
	$(RAY_VENV)/bin/python -m pip install --quiet -e ".[test,ray]"
	touch $@

test-ray: $(RAY_VENV)/.installed
	$(RAY_VENV)/bin/python -c "import ray.rllib"  # fail instead of silently skipping
	$(RAY_VENV)/bin/python -m pytest -m ray -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/env_speed.py

# The results benchmark on its quick settings (same code paths, 1-3 minutes), into
# build/bench-quick (its page: build/bench-quick/results.md)
bench-quick: $(STAMP)
	rm -rf build/bench-quick
	$(BIN)/reciprocity benchmark --quick --out build/bench-quick --quiet

# Regenerate docs/results.md, docs/results/ (the institutions study included), docs/attribution/
# and the tuning table of docs/agents.md (about 90 minutes on 2 cores, measured; run it on a quiet machine:
# the page reports wall-clock times)
results: $(STAMP)
	$(BIN)/reciprocity benchmark --out docs/results --tuning-doc docs/agents.md --overwrite
	$(BIN)/reciprocity attribute --report --out docs/attribution --doc docs/results.md --overwrite

# The site, built strictly (any warning fails) into a temporary folder. The API reference is read
# from build/docs-src/reciprocity/, a symlink tree in the installed layout (envs/ ->
# reciprocity/envs, ...; see mkdocs.yml). Afterwards `$(BIN)/mkdocs serve` works too.
DOCS_SRC := build/docs-src
$(VENV)/.docs-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed
	rm -rf $(DOCS_SRC) && mkdir -p $(DOCS_SRC)/reciprocity
	ln -s $(CURDIR)/reciprocity/* $(DOCS_SRC)/reciprocity/
	ln -s $(CURDIR)/envs $(CURDIR)/agents $(CURDIR)/baselines $(DOCS_SRC)/reciprocity/
	site=$$(mktemp -d) && trap 'rm -rf "$$site"' EXIT && \
		NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d "$$site"

clean:
	rm -rf $(VENV) $(RAY_VENV) runs build *.egg-info
