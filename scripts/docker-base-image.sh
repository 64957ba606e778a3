#!/usr/bin/env bash
# Build a Debian bookworm base image with Python 3.11 from Debian's package mirror, for
# hosts that reach no image registry: debootstrap (minbase) + `docker import`.
#
#   scripts/docker-base-image.sh [IMAGE]     default IMAGE: fluxchain-base:bookworm
#
# Skips all work when IMAGE already exists with the same package list (its label
# io.fluxchain.base-packages; delete the image to rebuild anyway). The result is what the
# Dockerfile's BASE_IMAGE needs: python3 with venv (bookworm's python3 is 3.11, the same
# minor version as an official python:3.11-slim image), and Debian's syncthing, which the
# agents run for replicated volumes (docs/apps.md): installed here, from the same mirror as
# python3, so that building the fluxchain image on this base needs no network at all.
set -euo pipefail

IMAGE=${1:-fluxchain-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates,syncthing
LABEL_KEY=io.fluxchain.base-packages

log() { echo "docker-base-image: $*" >&2; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    have=$(docker image inspect --format "{{index .Config.Labels \"$LABEL_KEY\"}}" "$IMAGE")
    if [ "$have" = "$PACKAGES" ]; then
        log "$IMAGE exists; reusing it"
        exit 0
    fi
    log "$IMAGE has packages '${have:-python3,python3-venv,ca-certificates}'; rebuilding it with $PACKAGES"
fi
if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

ROOTFS=$(mktemp -d /var/tmp/fluxchain-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
log "debootstrap --variant=minbase $SUITE from $MIRROR (a few minutes)"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" \
    >"$ROOTFS.log" 2>&1 || {
    tail -n 30 "$ROOTFS.log" >&2
    exit 1
}
rm -f "$ROOTFS.log"
# a smaller image: no apt lists, docs or caches
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/*
log "importing $IMAGE"
tar -C "$ROOTFS" --numeric-owner -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL $LABEL_KEY=$PACKAGES" \
    - "$IMAGE" >/dev/null
log "built $IMAGE"
