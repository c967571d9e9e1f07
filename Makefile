# patchd — build, test and demo. Every target sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
# Debian packages the tests and the demo drive for real (see docs/development.md).
DEBIAN_PACKAGES := apt-utils dpkg-dev busybox-static btrfs-progs snapper zfs-fuse \
	rpm dnf createrepo-c zypper pacman-package-manager makepkg libarchive-tools zstd zchunk \
	flatpak postgresql chromium systemd man-db groff-base zsh fish shellcheck \
	debootstrap systemd-container \
	$(PACKAGE_BUILD_DEPS)
# What `make deb` and `make rpm` need to build CPython and the packages (packaging/linux/build.py).
PACKAGE_BUILD_DEPS := build-essential patch xz-utils libssl-dev libffi-dev libsqlite3-dev \
	zlib1g-dev libbz2-dev liblzma-dev uuid-dev libreadline-dev libncurses-dev dpkg-dev rpm

.PHONY: all demo test lint typecheck unit bench clean debian-deps venv deb rpm

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
	$(VENV)/bin/ruff check patchd tests scripts packaging
	$(VENV)/bin/ruff format --check patchd tests scripts packaging

typecheck: venv
	$(VENV)/bin/mypy

unit: venv debian-deps
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck unit

demo: venv debian-deps
	$(PY) scripts/demo.py

# Every benchmark runs (each prints its ratios against limits measured in the same run);
# the target fails if any of them missed its target.
BENCHES := scripts/bench.py scripts/bench_rpm.py scripts/bench_pacman.py scripts/bench_collector.py

bench: venv debian-deps
	@status=0; for b in $(BENCHES); do echo "== $$b"; $(PY) $$b || status=1; done; exit $$status

# OS packages carrying their own Python under /opt/patchd, into dist/ (docs/install.md,
# "Building the packages"). PATCHD_VERSION=1.2.3 builds them as another version.
PATCHD_VERSION ?= $(PATCHD_DEB_VERSION)
PACKAGE_ARGS = $(if $(PATCHD_VERSION),--version $(PATCHD_VERSION))

deb: venv debian-deps
	$(PY) packaging/linux/build.py deb $(PACKAGE_ARGS)

rpm: venv debian-deps
	$(PY) packaging/linux/build.py rpm $(PACKAGE_ARGS)

clean:
	rm -rf $(VENV) $(STAMPS) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
