# Two commands on a fresh machine with only Python: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-all lint bench docs figures clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[tasks,export,dev,docs]'
	touch $(STAMP)

# The main job: a character-level LSTM language model on the embedded English corpus.
run: $(STAMP)
	$(PY) -m rnnlab train char-lm --out runs/char-lm

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m ""

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks docs

# The static site (the tour + the API reference from the docstrings) into site/; --strict:
# a broken link or docstring reference is an error. Open site/index.html.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# Redraw the tour's pictures (docs/img/*.png) from the committed results (docs/results/);
# `$(PY) -m docs.figures --measure NAME` re-runs a picture's measurements first.
figures: $(STAMP)
	$(PY) -m docs.figures

bench: $(STAMP)
	$(PY) benchmarks/kernels.py

clean:
	rm -rf $(VENV) runs site
