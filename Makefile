# Two commands do all set-up on a fresh Debian machine (as root):
#   make run    install the app (system PortAudio + a venv) and launch it
#   make test   install everything the tests need (apt packages included) and run the suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3
ARGS   ?=

.PHONY: run test test-live test-soak install install-test system-test lint typecheck pytest clean

# pip's own lines ("Collecting …", "Installing collected packages …") are the progress:
# a first install takes a minute or two and must not look stuck.
$(VENV)/.run-stamp: pyproject.toml
	@echo "==> system packages (PortAudio)"
	bash tools/setup-system.sh run
	@echo "==> creating $(VENV)"
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@echo "==> installing voicetui and its dependencies into $(VENV) (first time: a minute or two)"
	$(PY) -m pip install --disable-pip-version-check --progress-bar on -e .
	@echo "==> done: $(VENV)/bin/voicetui (try: make run ARGS=demo)"
	touch $@

# apt packages first, so a fresh machine has them before pip builds anything
system-test:
	bash tools/setup-system.sh test

$(VENV)/.test-stamp: pyproject.toml | system-test
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@ $(VENV)/.run-stamp

install: $(VENV)/.run-stamp

install-test: system-test $(VENV)/.test-stamp

run: install
	$(VENV)/bin/voicetui $(ARGS)

lint: $(VENV)/.test-stamp
	$(VENV)/bin/ruff check voicetui tests benchmarks
	$(VENV)/bin/ruff format --check voicetui tests benchmarks

typecheck: $(VENV)/.test-stamp
	$(VENV)/bin/mypy

# Real-time audio tests on two shared cores: a timing failure gets one more try (pytest shows it
# as R and lists it as "rerun"; a test that fails twice fails the run).
# The audio sandbox (private PulseAudio) is started by tests/conftest.py; the keyring sandbox
# (private D-Bus + gnome-keyring) wraps the whole run. TEXTUAL_THEME/NO_COLOR would change
# every SVG snapshot.
pytest: install-test
	env -u TEXTUAL_THEME -u NO_COLOR bash tools/keyring-sandbox.sh -- $(VENV)/bin/pytest -q --reruns 1 --reruns-delay 1 -m "not soak" $(ARGS)

test: install-test lint typecheck pytest

# Long real-time device soaks (AEC over the sandbox echo room, rollover across three sessions):
# kept out of `make test` for time (the default policy, aec, has a short device test there).
test-soak: install-test
	env -u TEXTUAL_THEME -u NO_COLOR bash tools/keyring-sandbox.sh -- $(VENV)/bin/pytest -q -m soak $(ARGS)

# The real services, with your keys: VOICETUI_LIVE=1 OPENAI_API_KEY=… MISTRAL_API_KEY=… make test-live
# (without them every live test is skipped with the reason, and this exits 0).
test-live: install-test
	env -u TEXTUAL_THEME -u NO_COLOR bash tools/keyring-sandbox.sh -- $(VENV)/bin/pytest -q -rs -m live tests/live $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
