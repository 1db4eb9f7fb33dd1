# The two commands of the README:
#   make demo   set up a fresh machine, then `phoenix demo`: build a world, train and evaluate,
#               export the models to a Triton repository, start tritonserver and the orchestrator,
#               and print the For You feed of a few viewers
#   make test   set up, then lint and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
RUNS ?= runs
CONFIG ?= tiny
SEED ?= 7
REPOSITORY ?= model_repository
# pytest workers (pytest-xdist): the suite waits on tritonserver and subprocesses a lot, so two
# workers finish it well sooner even on two cores; a file's tests stay on one worker.
WORKERS ?= 2
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install-torch.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	scripts/install-torch.sh $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[export,serve,loadtest,dev]"
	touch $@

demo: setup
	$(BIN)/phoenix demo --runs $(RUNS) --config $(CONFIG) --seed $(SEED) \
	--repository $(REPOSITORY)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest -n $(WORKERS) --dist loadfile

bench: setup
	$(BIN)/phoenix bench ranker

clean:
	rm -rf $(VENV) $(RUNS) .pytest_cache .ruff_cache $(REPOSITORY)/phoenix_*
