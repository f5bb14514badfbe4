# Two commands do all set-up on a fresh machine:
#   make serve   -> creates .venv, installs everything, runs the server on the bundled model
#   make test    -> creates .venv, installs everything, runs lint and the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint install system-deps node-deps proto clean

$(STAMP): pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# Pinned CPU torch first: an unpinned torch would pull several GB of CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ./client -e ".[train,dev]"
	touch $(STAMP)

install: $(STAMP)

# The TTS engines the tests synthesize with (espeak-ng, flite, mbrola voices, Pico, RHVoice; the last
# three from Debian's contrib/non-free, which the script enables); needs root (CI and the dev machines
# are root). Quick when they are installed already.
system-deps:
	@bash training/tts/install-engines.sh

serve: $(STAMP)
	$(BIN)/asr-server

# The Node.js client's packages (tests/test_node_client.py); skipped where there is no npm.
node-deps:
	@if command -v npm >/dev/null 2>&1; then cd client/node && npm ci --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the Node.js client's test will be skipped"; fi

test: $(STAMP) system-deps node-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

proto: $(STAMP)
	bash proto/generate.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
