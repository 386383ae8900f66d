# damon-bpf: one setup path for users, tests, the demo and CI.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test bench lint mutants clean

setup:
	@scripts/setup.sh

demo: setup
	$(VENV)/bin/damon-bpf demo

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(PY) bench/engine.py

# every deliberate engine/DAMOS bug in scripts/mutants.py must make the unit suite fail
mutants: setup
	$(PY) scripts/mutants.py

# strict mypy over damon_bpf/ (the [lint] extra installs the mypy it is clean under)
lint: setup
	@$(PY) -m mypy --version >/dev/null 2>&1 || $(PY) -m pip install -q -e '.[lint]'
	$(PY) -m mypy

clean:
	rm -rf $(VENV) build *.egg-info
