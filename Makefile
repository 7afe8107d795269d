# Fjord: `make demo` runs the demo chain, `make test` runs the tests. Both set up what they
# need first (Debian packages, then .venv), on a fresh Debian 12 / Ubuntu machine.
PY := .venv/bin/python
export QT_QPA_PLATFORM ?= offscreen

.PHONY: setup test demo package clean

setup:
	@bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q test

demo: setup
	$(PY) scripts/demo.py

package:
	python3 scripts/package.py

clean:
	rm -rf demo-output dist .pytest_cache
