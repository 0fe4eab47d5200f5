# The two user-facing commands are `make demo` and `make test` (see README.md).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint reproduce bench-deps bench bench-ldp-deps bench-ldp clean

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "error: $(PY) not found; set PY=/path/to/python3.11"; exit 1; }
	$(PY) -m venv $(VENV)

# torch is installed first, pinned, so that pip never resolves a CUDA build for it.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lowcomm run --config configs/demo.yaml

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

reproduce: $(STAMP)
	$(BIN)/python benchmarks/fedavg_vs_fedsgd.py

# Opt-in benchmark environment (docs/benchmarks.md), separate from .venv: lowcomm next to
# Flower's simulation engine and pfl-research. torch is pinned first, as above, and pinned again
# in the second install so that neither flwr nor pfl can replace it.
BENCH_VENV := .bench-venv
BENCH_BIN := $(BENCH_VENV)/bin
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_DATA ?= ../shared/data
BENCH_OUT ?= results/bench_sim.json

$(BENCH_BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "error: $(PY) not found; set PY=/path/to/python3.11"; exit 1; }
	$(PY) -m venv $(BENCH_VENV)

$(BENCH_STAMP): pyproject.toml | $(BENCH_BIN)/python
	$(BENCH_BIN)/python -m pip install --quiet --upgrade pip
	$(BENCH_BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BENCH_BIN)/python -m pip install --quiet -e . "flwr[simulation]==1.42.0" \
		"pfl[pytorch]==0.6.0" "torch==2.13.0"
	$(BENCH_BIN)/python -c "import torch, flwr, pfl, ray; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	@touch $(BENCH_STAMP)

bench-deps: $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_BIN)/python benchmarks/simulation/run.py --workload all --data-dir $(BENCH_DATA) \
		--out $(BENCH_OUT)

# Opt-in LDP benchmark (docs/benchmarks.md): lowcomm's frequency oracles next to pure-ldp and
# multi-freq-ldpy, in a venv of its own. pure-ldp 1.2.0 imports scikit-learn and statsmodels
# without declaring them, and both peers' local hashing breaks with xxhash >= 4 (str seeds).
LDP_VENV := .bench-ldp-venv
LDP_BIN := $(LDP_VENV)/bin
LDP_STAMP := $(LDP_VENV)/.installed
LDP_OUT ?= results/ldp_peers.json

$(LDP_BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "error: $(PY) not found; set PY=/path/to/python3.11"; exit 1; }
	$(PY) -m venv $(LDP_VENV)

$(LDP_STAMP): pyproject.toml | $(LDP_BIN)/python
	$(LDP_BIN)/python -m pip install --quiet --upgrade pip
	$(LDP_BIN)/python -m pip install --quiet "torch==2.13.0"
	$(LDP_BIN)/python -m pip install --quiet -e . "pure-ldp==1.2.0" "multi-freq-ldpy==0.2.5" \
		"xxhash<4" scikit-learn statsmodels "torch==2.13.0"
	$(LDP_BIN)/python -c "import pure_ldp, multi_freq_ldpy, torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	@touch $(LDP_STAMP)

bench-ldp-deps: $(LDP_STAMP)

bench-ldp: $(LDP_STAMP)
	$(LDP_BIN)/python benchmarks/ldp_peers.py --out $(LDP_OUT)

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(LDP_VENV) build src/*.egg-info .pytest_cache .ruff_cache
