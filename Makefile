# diversity-cli: install, lint, test, and the paper's tables.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install test lint format demo clean

# torch==2.14.1 / torchvision==0.29.1 are pinned in pyproject.toml; pip takes them from this machine's disk.
install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'

test:
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests $(PYTEST_ARGS)

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The main job on the built-in pair: base, distilled and hybrid samples of one prompt.
demo:
	for method in base distilled hybrid; do \
	  $(BIN)/diversity-cli generate method=$$method prompt="a red circle" n=8 out=results/demo || exit 1; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
