#!/usr/bin/env bash
# `make test-containers`: the container e2e suite (tests/containers/) on a real Docker
# engine, with nothing from an image registry.
#
# 1. a Docker engine and Compose (scripts/docker-engine.sh: installs Debian's, starts dockerd)
# 2. the image from a local Debian base (debootstrap, cached) and host-built wheels
# 3. pytest tests/containers: the compose devnet under a project name of its own
# 4. always, pass or fail: that project's containers, networks and volumes, the app
#    containers its agents started, the agents' volume directories, the test image, and
#    the engine if this script started it. The cached base image stays.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_BIN=${VENV_PYTHON:-.venv/bin/python}
SUITE_DEADLINE_S=${SUITE_DEADLINE_S:-780}  # the suite must stay under 15 minutes in CI
export FLUX_E2E_PROJECT=${FLUX_E2E_PROJECT:-fluxchain-e2e-$$}
export FLUX_E2E_IMAGE=${FLUX_E2E_IMAGE:-fluxchain:e2e}
# the agents' volume directories on the host (docker-compose.yml), removed at the end
export FLUX_VOLUMES_ROOT=${FLUX_VOLUMES_ROOT:-/var/tmp/$FLUX_E2E_PROJECT-volumes}
started=$SECONDS

engine_was_up=0
docker info >/dev/null 2>&1 && engine_was_up=1

cleanup() {
    local status=$?
    set +e
    echo "test-containers: tearing down $FLUX_E2E_PROJECT" >&2
    FLUX_IMAGE=$FLUX_E2E_IMAGE scripts/compose.sh -p "$FLUX_E2E_PROJECT" \
        down -v --remove-orphans --timeout 10 >/dev/null 2>&1
    local leftovers
    leftovers=$(docker ps -aq --filter "label=com.docker.compose.project=$FLUX_E2E_PROJECT")
    # shellcheck disable=SC2086  # one id per word
    [ -z "$leftovers" ] || docker rm -f $leftovers >/dev/null
    rm -rf "$FLUX_VOLUMES_ROOT"
    docker image rm "$FLUX_E2E_IMAGE" >/dev/null 2>&1
    docker image prune -f --filter label=io.fluxchain.stage=build >/dev/null 2>&1
    [ "$engine_was_up" = 1 ] || scripts/docker-engine.sh stop
    echo "test-containers: finished with status $status in $((SECONDS - started)) s" >&2
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

scripts/docker-engine.sh start
IMAGE=$FLUX_E2E_IMAGE BASE_IMAGE=local scripts/docker-image.sh
echo "test-containers: image ready after $((SECONDS - started)) s" >&2
timeout --kill-after=30 "$SUITE_DEADLINE_S" \
    "$PYTHON_BIN" -m pytest tests/containers -p no:cacheprovider -vv --timeout 600
