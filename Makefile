# Fjord: `make demo` runs the demo chain, `make test` runs the tests. Both set up what they
# need first (Debian packages, then .venv), on a fresh Debian 12 / Ubuntu machine.
# `make test-fast` leaves the slow tests out, `make lint` runs ruff;
# `make screenshots` (after `make demo`) remakes docs/screenshots in the QGIS desktop under Xvfb;
# `make package` builds the plugin ZIP.
PY := .venv/bin/python
export QT_QPA_PLATFORM ?= offscreen

.PHONY: setup lint test test-fast demo package screenshots clean

setup:
	@bash scripts/setup.sh

lint: setup
	$(PY) -m ruff check .

test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=25 test

# every test but the slow ones (pytest -m slow): about 2 minutes on 2 cores
test-fast: setup
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=10 -m "not slow" test

demo: setup
	$(PY) scripts/demo.py

screenshots: setup
	$(PY) scripts/screenshots.py

package:
	python3 scripts/package.py

clean:
	rm -rf demo-output dist .pytest_cache
