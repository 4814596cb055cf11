# The two commands a new user runs: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test bench clean

install: $(STAMP)

# One virtual environment with the pinned, tested versions (constraints.txt).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[torch,plot,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edgeformer demo --out demo-out

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bundle_vs_eager.py
	$(BIN)/python benchmarks/minilm_vs_transformers.py
	$(BIN)/python benchmarks/quantize_minilm.py
	$(BIN)/python benchmarks/runtime_footprint.py
	$(BIN)/python benchmarks/generation.py
	$(BIN)/python benchmarks/distill.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
