# Two commands set everything up on a fresh machine with Python >= 3.10:
#   make demo    the main job on the embedded default data
#   make test    the whole test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
# no run ever waits on the network
export WANDB_MODE ?= offline
export HF_DATASETS_OFFLINE ?= 1
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-fast lint bench clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# torch first: the tested version unless an importable torch is already there,
	@# so that resolving the project never pulls a different (CUDA) build.
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==$(TORCH_VERSION)"
	@# extras: test (pytest, ruff), sample (gensim ships the embedded enwiki excerpt), beam (Apache Beam pipeline),
	@# bench (HF transformers: benchmark peer only, never imported by ut/ or data_prep/)
	$(PY) -m pip install -q -e ".[test,sample,beam,bench]"
	@$(PY) -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
	@touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m experiments.demo

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(PY) -m ruff check ut data_prep experiments benchmarks tests

bench: install
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) .pytest_cache outputs wandb lightning_logs
