# Two entry points: `make demo` and `make test`. Both build .venv from requirements.txt
# (plus this package, editable) when it is missing or older than requirements/pyproject.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_IMAGES ?= 200
DEMO_DIR ?= out/demo
PYTEST_ARGS ?=

.PHONY: demo test test-slow venv clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-beam.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet -r requirements-beam.txt -c requirements.txt   # optional (Beam); tested by make test
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) evaluate.py --model=abs --attacks=none --num_images=$(DEMO_IMAGES) --output_dir=$(DEMO_DIR)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) out
