# The two commands of the README:
#   make lab    set up, then open the labs in JupyterLab
#   make test   set up, then run every test (unit, property, notebooks, browser)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PORT   ?= 8888
WORKERS ?= 2
ROOTFLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: lab test setup system notebooks nbgrader bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "kscale_lab needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test,teach]'
	touch $@

setup: $(VENV)/.installed

# Debian packages: chromium (browser test, the no-kernel HTML test, and the static PNG of each figure
# that the notebook build draws) and etcd-server (real-etcd cells and tests).
# Installed when this runs as root with apt; otherwise those tests say why they skip.
system:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v etcd >/dev/null 2>&1 || missing="$$missing etcd-server"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing:$$missing"; \
	    (apt-get install -y --no-install-recommends $$missing >/dev/null 2>&1 || \
	     (apt-get update >/dev/null && apt-get install -y --no-install-recommends $$missing >/dev/null)); \
	  else echo "note: not installed:$$missing (needs root + apt); their tests will be skipped"; fi; \
	fi

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=. --ServerApp.default_url=/lab/tree/labs/00_tour.ipynb --port=$(PORT) $(ROOTFLAG)

# nbval runs the solution copies (and copies without one, like the tour: conftest.py);
# tests/test_student_copies.py runs every student copy top to bottom.
test: setup system
	$(PY) -m pytest tests labs --nbval-lax --nbval-current-env -p no:cacheprovider -n $(WORKERS) --dist loadfile

notebooks: setup system
	$(PY) -m kscale_lab.notebooks build

# an nbgrader course (source/, nbgrader_config.py) in COURSE: then nbgrader generate_assignment / autograde there
COURSE ?= course
nbgrader: setup
	$(PY) -m kscale_lab.notebooks nbgrader $(COURSE)

bench: setup
	$(PY) benchmarks/bench_heartbeats.py
	$(PY) benchmarks/bench_dashboards.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
