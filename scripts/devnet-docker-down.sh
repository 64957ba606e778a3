#!/usr/bin/env bash
# Remove the container devnet: the compose project's containers, network and volumes, then
# the apps its agents started, with their volumes and networks (they outlive the agents,
# as workloads do on a real node; the agents go first, or they would start the apps again),
# and the agents' volume directories under $FLUX_VOLUMES_ROOT (docker-compose.yml).
#
#   FLUX_IMAGE=fluxchain:dev scripts/devnet-docker-down.sh PROJECT
#
# The validators use node keys 0-3 of the published test mnemonic; each agent labels its
# containers io.fluxchain.node=<first 12 hex digits of its node key>.
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=${1:?usage: $0 PROJECT}
IMAGE=${FLUX_IMAGE:-fluxchain:dev}
VALIDATORS=4
VOLUMES_ROOT=${FLUX_VOLUMES_ROOT:-/var/tmp/fluxchain-devnet-volumes}

FLUX_IMAGE=$IMAGE scripts/compose.sh -p "$PROJECT" down -v --remove-orphans --timeout 20
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    tags=$(docker run --rm --network none "$IMAGE" python3 -c "
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path
for i in range($VALIDATORS):
    print(derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)).public_key.hex()[:12])
")
    for tag in $tags; do
        ids=$(docker ps -aq --filter "label=io.fluxchain.node=$tag")
        # shellcheck disable=SC2086  # one id per word
        [ -z "$ids" ] || docker rm -f $ids >/dev/null
        volumes=$(docker volume ls -q --filter "name=flux-$tag-")
        # shellcheck disable=SC2086
        [ -z "$volumes" ] || docker volume rm $volumes >/dev/null
        networks=$(docker network ls -q --filter "label=io.fluxchain.node=$tag")
        # shellcheck disable=SC2086
        [ -z "$networks" ] || docker network rm $networks >/dev/null
    done
fi
if [ -d "$VOLUMES_ROOT" ]; then
    # the apps' files belong to the agents' user and to whatever users the apps ran as:
    # removed by root in a container, so the host user needs no root of its own
    if docker image inspect "$IMAGE" >/dev/null 2>&1; then
        docker run --rm --network none --user 0:0 -v "$VOLUMES_ROOT:/volumes" "$IMAGE" \
            sh -c 'rm -rf /volumes/agent*'
    fi
    rm -rf "$VOLUMES_ROOT" 2>/dev/null || echo "devnet-docker-down: remove $VOLUMES_ROOT yourself" >&2
fi
