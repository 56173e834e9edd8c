# convlens — two commands matter: `make test` and `make serve`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup test lint format bench pretrained serve browser clean

setup: $(STAMP)

# The virtual environment is (re)built whenever pyproject.toml changes. Debian's python3
# ships without venv/ensurepip; install python3-venv when we can (root with apt-get).
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && apt-get install -y -q python3-venv; \
	  else \
	    echo "convlens needs Python's venv module: sudo apt-get install python3-venv" >&2; exit 1; \
	  fi; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# Open the explainer on the shipped model.
serve: setup
	$(BIN)/convlens serve

# The page tests drive Debian's Chromium (never a downloaded browser).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && apt-get install -y -q chromium; \
	  else \
	    echo "the page tests need Chromium: sudo apt-get install chromium" >&2; exit 1; \
	  fi; }

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two test processes on two cores: one thread each (BLAS, OpenMP and convlens's own batch
# splitting), or their spinning threads thrash (measured: the training tests take 34 s
# instead of 0.8 s). tests/test_threads.py turns the splitting on where it tests it.
test: setup lint browser
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 CONVLENS_NUM_THREADS=1 $(BIN)/pytest -n 2

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python bench/bench_engine.py
	$(BIN)/python bench/bench_parity.py
	$(BIN)/python bench/bench_explain.py
	$(BIN)/python bench/bench_serve.py
	$(BIN)/python bench/bench_training.py
	$(BIN)/python bench/bench_training_page.py
	$(BIN)/python bench/bench_page.py

# The model shipped in the package: mnist_net trained on the bundled digits by our own CLI.
PRETRAINED_ARGS := --model mnist-net --dataset mnist-bundled --epochs 20 --batch-size 32 \
	--optimizer adam --lr 0.001 --augment-shift 2 --seed 0
pretrained: setup
	$(BIN)/convlens train $(PRETRAINED_ARGS) --out build/pretrained --overwrite
	cp build/pretrained/model.safetensors convlens/models/files/mnist_net.safetensors

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
