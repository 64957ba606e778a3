# Every target creates the venv and installs the project first, so a fresh machine needs
# nothing but Python 3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SEEDS ?= 10000

.PHONY: venv browser haproxy syncthing test lint typecheck unit soak bench devnet clean docker-image \
	devnet-docker devnet-docker-down test-containers testnet-wan testnet-wan-down test-wan

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The dashboard's tests drive a real headless Chromium (tests/dashboard/browser.py). Debian's
# own chromium and chromium-driver are installed when the driver is missing (CI runs as root
# with only the distribution's registry reachable, so nothing downloads a browser itself).
# FLUX_CHROMEDRIVER points the tests (tests/dashboard/browser.py) and this check elsewhere.
CHROMEDRIVER ?= $(or $(FLUX_CHROMEDRIVER),/usr/bin/chromedriver)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

browser:
	@test -x $(CHROMEDRIVER) || { \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium chromium-driver; }

# The gateway's tests (tests/gateway) and the devnet's gateway drive a real HAProxy: Debian's
# `haproxy` is installed the same way when it is missing. HAPROXY points elsewhere.
HAPROXY ?= $(or $(shell command -v haproxy),/usr/sbin/haproxy)

haproxy:
	@test -x $(HAPROXY) || { \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q haproxy; }

# Replicated volumes (docs/apps.md) are synced by each agent's own Syncthing: Debian's
# `syncthing` is installed the same way when it is missing. SYNCTHING_BIN points elsewhere.
SYNCTHING_BIN ?= $(or $(shell command -v syncthing),/usr/bin/syncthing)

syncthing:
	@test -x $(SYNCTHING_BIN) || { \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q syncthing; }

# --dist loadgroup: tests marked with one xdist_group (the dashboard's, which share one devnet
# and one browser) run in one worker; every other test is spread as before.
# The property tests draw their examples from one fixed seed, so `make test` is the same run
# every time; `make test HYPOTHESIS_SEED=<n>` (or `make soak`) explores other examples.
# --durations: the slowest tests are named at the end of every run (CI's included), so that
# whoever keeps CI under its 30 minutes sees where they go.
HYPOTHESIS_SEED ?= 0
unit: $(STAMP) browser haproxy syncthing
	$(BIN)/python -m pytest -n 2 --dist loadgroup --hypothesis-seed=$(HYPOTHESIS_SEED) \
		--durations=15

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m bench.import
	$(BIN)/python -m bench.sync
	$(BIN)/python -m bench.restart
	$(BIN)/python -m bench.placement

# 10,000 consensus simulation seeds, each with idealised and with the real gossip (CI runs 200
# of each in `make test`; SEEDS=<n> for another count),
# then random chain histories replayed by a long-lived, a restarted and a fresh node
# (>= HISTORY_BLOCKS blocks; tests/property/soak_history.py). HISTORY_SEED=<n> replays a
# printed seed.
HISTORY_BLOCKS ?= 10000
HISTORY_SEED ?=
ifeq ($(HISTORY_SEED),)
HISTORY_SEED := $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
endif
soak: $(STAMP)
	FLUX_SOAK_SEEDS=$(SEEDS) $(BIN)/python -m pytest tests/consensus/test_soak.py -n 2 -q
	@echo "history soak: seed $(HISTORY_SEED), $(HISTORY_BLOCKS) blocks"
	FLUX_SOAK_HISTORY_BLOCKS=$(HISTORY_BLOCKS) $(BIN)/python -m pytest \
		tests/property/soak_history.py -n 0 -q -s -p no:cacheprovider --hypothesis-seed=$(HISTORY_SEED)

# Four validators on 127.0.0.1 (APIs on :26700-26703) and the gateway (every app at
# <app>.apps.localhost on 127.0.0.1:26780, docs/ingress.md); Ctrl-C stops them. State is kept
# in .devnet/ and resumed next time; `rm -rf .devnet` for a fresh chain.
devnet: $(STAMP) haproxy syncthing
	$(BIN)/fluxchain devnet up --nodes 4 --home .devnet

# The same devnet in containers (docker-compose.yml, docs/containers.md): 4 validators and
# a non-validator node, APIs on 127.0.0.1:26700-26704. BASE_IMAGE=local builds the base
# from Debian's mirror and the wheels on the host, for hosts that reach no image registry.
# Starts a Docker engine first when none answers (installing Debian's docker.io if needed).
IMAGE ?= fluxchain:dev
BASE_IMAGE ?= python:3.11-slim-bookworm
DEVNET_PROJECT ?= fluxchain-devnet
# DOCKER_GID: the group owning the Docker socket, which the agents (uid 10001) join to use
# it; read when the recipe runs, after docker-engine.sh may have created the socket
COMPOSE = FLUX_IMAGE=$(IMAGE) DOCKER_GID=$${DOCKER_GID:-$$(stat -c %g /var/run/docker.sock 2>/dev/null || echo 0)} \
	scripts/compose.sh -p $(DEVNET_PROJECT)

docker-image:
	scripts/docker-engine.sh start
	IMAGE=$(IMAGE) BASE_IMAGE=$(BASE_IMAGE) PYTHON=$(PYTHON) scripts/docker-image.sh

devnet-docker: docker-image
	$(COMPOSE) up -d
	$(COMPOSE) ps

devnet-docker-down:
	FLUX_IMAGE=$(IMAGE) scripts/devnet-docker-down.sh $(DEVNET_PROJECT)

# End-to-end on a real Docker engine (tests/containers/): needs root on a Debian host or
# a running engine; builds everything locally, so no registry is needed. Tears down all it
# started, pass or fail.
test-containers: $(STAMP)
	PYTHON=$(PYTHON) scripts/test-containers.sh

# The WAN testnet (tests/wan/testnet.py, docs/operations.md): 16 validators and 3 full
# nodes, each in its own network namespace, in three regions 90/130/160 ms apart (jitter,
# 0.5 % loss, user-space delay: this kernel has no netem), each node given one seed. Needs
# root. Runs until Ctrl-C or `make testnet-wan-down`, which remove every namespace, link
# and process it made; a fresh chain each time (state in .testnet-wan/, node logs there).
WAN_VALIDATORS ?= 16
WAN_FULL_NODES ?= 3
testnet-wan: $(STAMP)
	$(SUDO) $(BIN)/python -m tests.wan.testnet down --root .testnet-wan
	rm -rf .testnet-wan
	$(SUDO) $(BIN)/python -m tests.wan.testnet up --root .testnet-wan \
		--validators $(WAN_VALIDATORS) --full-nodes $(WAN_FULL_NODES)

testnet-wan-down: $(STAMP)
	$(SUDO) $(BIN)/python -m tests.wan.testnet down --root .testnet-wan

# Perturbations over the WAN testnet (tests/wan/, a few minutes; root). Not in `make unit`
# (setup.cfg ignores tests/wan): .ci/run calls it.
test-wan: $(STAMP)
	$(SUDO) $(BIN)/python -m pytest tests/wan -n 0 -p no:cacheprovider -v

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
