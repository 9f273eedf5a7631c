# Two commands set everything up on a fresh machine:
#   make demo   create .venv, install deepscope, run every system (smoke scale) + the report
#   make test   create .venv, install deepscope with test tools, run the tests
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; pip keeps it when deepscope's own range (torch>=2.2) is resolved.
TORCH ?= torch==2.13.0

.PHONY: env demo test test-browser test-distributed test-slurm test-vision lint bench docs gpu-check clean

# torchvision (image datasets) needs another torch build: it gets its own environment. On x86_64
# that build is a CUDA one (about 5.6 GiB installed): its files are not precompiled (Python
# compiles what the tests import) and pip keeps no cache of them.
VENV_VISION ?= .venv-vision
TORCH_VISION ?= torch==2.14.1 torchvision==0.29.1

$(BIN)/deepscope: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,cluster,attacks,tracking,flow]"
	$(BIN)/pip install -q --no-deps "torchattacks==3.5.1"
	touch $@

env: $(BIN)/deepscope

# Every system at its smallest meaningful size, then the HTML report (runs/demo/report.html).
demo: env
	$(BIN)/deepscope reproduce all --scale smoke --out runs/demo

# The main suite, every docstring example included (tests/test_doctests.py); the slower checks
# (torchrun, SLURM, browser) have targets of their own.
test: env
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m "not distributed and not slurm and not browser"

# The report and the documentation site (build it first: make docs) in headless Chromium
# (Debian's chromium; .ci/run installs it).
test-browser: env
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m browser tests/browser

test-distributed: env
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m distributed tests

# deepscope sweep --executor slurm against a real single-node SLURM started here and stopped
# after, even when the test fails. Needs root and Debian's slurmctld slurmd slurm-client munge.
test-slurm: env
	bash scripts/slurm-local.sh start && \
	  OMP_NUM_THREADS=1 DEEPSCOPE_REQUIRE_SLURM=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m slurm tests/cluster; \
	  rc=$$?; bash scripts/slurm-local.sh stop; exit $$rc

$(VENV_VISION)/bin/deepscope: pyproject.toml
	$(PY) -m venv $(VENV_VISION)
	$(VENV_VISION)/bin/pip install -q --upgrade pip
	$(VENV_VISION)/bin/pip install -q --no-cache-dir --no-compile $(TORCH_VISION)
	$(VENV_VISION)/bin/pip install -q --no-cache-dir -e ".[dev,vision]"
	touch $@

test-vision: $(VENV_VISION)/bin/deepscope
	OMP_NUM_THREADS=1 $(VENV_VISION)/bin/python -m pytest -q -p no:cacheprovider -m vision tests

# The documentation site: executes the tutorials, builds site/ with --strict (a broken link,
# a missing reference or a tutorial that raises fails the build).
$(VENV)/.docs-installed: pyproject.toml $(BIN)/deepscope
	$(BIN)/pip install -q -e ".[docs]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# mkdocs-jupyter keeps executed notebooks in .cache/: drop them, so every tutorial runs against
# the code as it is now.
docs: $(VENV)/.docs-installed
	rm -rf .cache/mkdocs-jupyter
	NO_MKDOCS_2_WARNING=1 OMP_NUM_THREADS=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/mkdocs build --strict --clean

# Every CUDA path in one run (<= 8 minutes on a GPU); DEVICE=cpu runs the same steps tiny on the CPU.
DEVICE ?= cuda
GPU_CHECK_OUT ?= runs/gpu-check-$(DEVICE)
gpu-check: env
	$(BIN)/python scripts/gpu_check.py --device $(DEVICE) --out $(GPU_CHECK_OUT)

lint: env
	$(BIN)/ruff check .

bench: env
	$(BIN)/python benchmarks/mi_accuracy.py
	$(BIN)/python benchmarks/mi_speed.py
	$(BIN)/python benchmarks/mi_floor.py

clean:
	rm -rf $(VENV) $(VENV_VISION) build site .cache *.egg-info src/*.egg-info
