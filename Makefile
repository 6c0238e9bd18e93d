# Quick start:  make demo   (set up, index the bundled sample, run three queries)
#               make test   (set up with test extras, run the test suite)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
DEMO_WS ?= brainrank-data/sample
RUN    := TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/brainrank

.PHONY: install demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "brainrank needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall whenever the dependency list changes. The constraints keep protobuf below 5,
# which TensorFlow 2.15 needs and Ray's extra would otherwise upgrade past.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,ray]' -c constraints.txt
	touch $@

install: $(VENV)/.installed
	$(RUN) encoder fetch

demo: install
	$(RUN) ingest data/docs.jsonl --workspace $(DEMO_WS)
	$(RUN) train --queries data/queries.jsonl --qrels data/qrels-train.txt \
		--clicks data/clicks.jsonl --workspace $(DEMO_WS)
	$(RUN) search "car parts for sale" --workspace $(DEMO_WS) -k 5 --where "price < 50"
	$(RUN) search "laptop won't turn on" --workspace $(DEMO_WS) -k 3 --snippets
	$(RUN) search "money back if I change my mind" --workspace $(DEMO_WS) -k 5
	@echo "Test queries (never trained on): every fixed mode against the learned model"
	$(RUN) eval --queries data/queries.jsonl --qrels data/qrels-test.txt \
		--mode bm25,dense,hybrid,hybrid-rrf,hybrid-minmax,learned --model latest \
		--workspace $(DEMO_WS)

# The debugger's end-to-end test drives Debian's headless Chromium; install it when missing.
test: install
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: the browser test will be skipped"
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/bench_retrieval.py

clean:
	rm -rf $(VENV) brainrank-data bench/.work .pytest_cache
