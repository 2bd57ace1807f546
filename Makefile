# The two commands of a fresh machine: `make demo` (set up, run the small sweep, draw its phase
# diagram) and `make test` (set up, run the tests). Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup browser bytecode demo test test-fast clean-results

$(BIN)/urn-study: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# constraints.txt: the versions the tests ran with (torch 2.13.0: the CPU build on this disk, no multi-GB download)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(BIN)/urn-study

setup: $(BIN)/urn-study

# tests/test_ui.py drives Debian's chromium (Playwright never downloads a browser here): installed when missing and
# apt-get can (as root); elsewhere that test skips, saying why
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } || \
		echo "no chromium (apt-get install chromium as root): tests/test_ui.py will be skipped"

demo: setup
	$(BIN)/urn-study sweep search_spaces/quickstart.yaml
	$(BIN)/urn-study phase search_spaces/quickstart.yaml --out urn_results/figures/quickstart

# the tests run on every core (at most 4: each slow test starts its own Ray or server); a test's worker takes the next
# test when it is free (worksteal), so the long ones do not queue behind each other
XDIST := -n auto --maxprocesses 4 --dist worksteal

# The project's own bytecode, compiled once: pip compiles what it installs, but not an editable project, and where
# PYTHONDONTWRITEBYTECODE is set (as on this machine) every process that imports urn_study would compile it again
# (~0.4 s of CPU each; the tests start over a hundred: Ray's workers, drivers, servers). Up to date in a second.
bytecode: setup
	$(BIN)/python -m compileall -q urn_study analysis benchmarks > /dev/null

test: setup browser bytecode
	$(BIN)/python -m pytest -q $(XDIST)

test-fast: setup bytecode
	$(BIN)/python -m pytest -q -m "not slow" $(XDIST)

clean-results:
	rm -rf urn_results
