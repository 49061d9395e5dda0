# The two commands of the README: `make demo` and `make test`.
# Each creates or updates the virtualenv in .venv, installs the package, then runs.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean system-packages

# Real peers the tests start themselves: the interop harness runs the openssl binary, the
# Wireshark tests run tshark on captures of our connections, the roles' tests start PostgreSQL
# and drive Debian's Chromium (nothing downloads a browser), the OIDC interop runs node.
SYSTEM_PACKAGES := openssl:openssl tshark:tshark pg_ctlcluster:postgresql chromium:chromium \
	chromedriver:chromium-driver npm:npm

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The ecosystem demo; its pcaps, key log, summary and logs stay in demo-output/ (a fresh one each run).
demo: $(STAMP)
	rm -rf demo-output
	$(VENV)/bin/milagro demo --dir demo-output

system-packages:
	scripts/ensure-system-packages $(SYSTEM_PACKAGES)

# One pytest worker per CPU, at most 4 (each starts its own chain, PostgreSQL and role servers);
# a test file runs whole in one worker, so its module fixtures are built once.
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)

test: $(STAMP) system-packages
	$(VENV)/bin/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(STAMP)
	for script in benchmarks/bench_*.py; do echo "== $$script"; $(VENV)/bin/python $$script || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
