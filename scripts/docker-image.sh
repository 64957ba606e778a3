#!/usr/bin/env bash
# Build the fluxchain image (Dockerfile) as $IMAGE (default fluxchain:dev).
#
#   BASE_IMAGE=python:3.11-slim-bookworm scripts/docker-image.sh   base from a registry (default)
#   BASE_IMAGE=local scripts/docker-image.sh                         no registry needed: a base
#       built from Debian's mirror (scripts/docker-base-image.sh, cached) and wheels built on
#       the host (scripts/docker-wheels.sh), so the build reaches neither a registry nor PyPI
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-fluxchain:dev}
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim-bookworm}
LOCAL_BASE=fluxchain-base:bookworm

args=()
if [ "$BASE_IMAGE" = local ]; then
    scripts/docker-base-image.sh "$LOCAL_BASE"
    scripts/docker-wheels.sh
    args+=(--build-arg "BASE_IMAGE=$LOCAL_BASE" --build-arg WHEELHOUSE=build/wheelhouse)
else
    args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
fi
echo "docker-image: building $IMAGE" >&2
docker build -q "${args[@]}" -t "$IMAGE" . >/dev/null
echo "docker-image: built $IMAGE" >&2
