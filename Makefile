# The two commands of the README:
#   make demo   set up a fresh machine, then build a world, train and evaluate, export the models
#               to a Triton repository and check that the real tritonserver serves them
#   make test   set up, then lint and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
RUNS ?= runs
CONFIG ?= tiny
SEED ?= 7
REPOSITORY ?= model_repository
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install-torch.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	scripts/install-torch.sh $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[export,serve,dev]"
	touch $@

demo: setup
	@if [ -f $(RUNS)/world/world.json ]; then echo "reusing $(RUNS)/world"; \
	else $(BIN)/phoenix world --seed $(SEED) --out $(RUNS)/world; fi
	@if [ -f $(RUNS)/checkpoint-$(CONFIG)/model.safetensors ]; then \
	echo "reusing $(RUNS)/checkpoint-$(CONFIG)"; \
	else $(BIN)/phoenix train --world $(RUNS)/world --config $(CONFIG) \
	--out $(RUNS)/checkpoint-$(CONFIG); fi
	$(BIN)/phoenix eval --world $(RUNS)/world --checkpoint $(RUNS)/checkpoint-$(CONFIG)
	$(BIN)/phoenix export --checkpoint $(RUNS)/checkpoint-$(CONFIG) --out $(REPOSITORY)
	$(BIN)/phoenix triton --repository $(REPOSITORY) --check --http-port 0 --grpc-port 0 \
	--metrics-port 0

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest

bench: setup
	$(BIN)/phoenix bench ranker

clean:
	rm -rf $(VENV) $(RUNS) .pytest_cache .ruff_cache $(REPOSITORY)/phoenix_*
