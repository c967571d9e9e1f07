# patchd — build, test and demo. Every target sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
# Debian packages the tests and the demo drive for real (see tests/README.md).
DEBIAN_PACKAGES := apt-utils dpkg-dev busybox-static btrfs-progs snapper zfs-fuse \
	rpm dnf createrepo-c zypper pacman-package-manager libarchive-tools zstd \
	flatpak postgresql chromium

.PHONY: all demo test lint typecheck unit bench clean debian-deps venv

all: test

$(STAMPS):
	@mkdir -p $(STAMPS)

debian-deps: | $(STAMPS)
	@scripts/install-debian-deps $(DEBIAN_PACKAGES)

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[collector,postgres,test]'
	@touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check patchd tests scripts
	$(VENV)/bin/ruff format --check patchd tests scripts

typecheck: venv
	$(VENV)/bin/mypy

unit: venv debian-deps
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck unit

demo: venv debian-deps
	$(PY) scripts/demo.py

bench: venv debian-deps
	$(PY) scripts/bench.py

clean:
	rm -rf $(VENV) $(STAMPS) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
