#!/usr/bin/env bash
# Build wheels of every dependency on the host, into build/wheelhouse, for an image build
# that cannot reach PyPI (Dockerfile: --build-arg WHEELHOUSE=build/wheelhouse).
#
#   PYTHON=python3 scripts/docker-wheels.sh
#
# The host's Python must be 3.11 on glibc, like the image (Debian bookworm), so the
# wheels it picks (cp311, manylinux) install there. fluxchain itself is built inside the
# image from the source, so the wheelhouse also carries its build backend.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
OUT=build/wheelhouse

version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$version" != 3.11 ]; then
    echo "docker-wheels: $PYTHON is Python $version; the image runs 3.11" >&2
    exit 1
fi
STAMP=$OUT/.complete  # newer than the dependency lists: the wheelhouse is current

if [ -f "$STAMP" ] && [ "$STAMP" -nt setup.cfg ] && [ "$STAMP" -nt pyproject.toml ]; then
    echo "docker-wheels: $OUT is current" >&2
    exit 0
fi
mkdir -p "$OUT"
rm -f "$STAMP"
echo "docker-wheels: building wheels into $OUT" >&2
log=$(mktemp)
# pip's stderr is kept for a failure; on success only what is not a find-links notice
if ! "$PYTHON" -m pip wheel -q --disable-pip-version-check --wheel-dir "$OUT" \
    . 'setuptools>=68' wheel 2>"$log"; then
    cat "$log" >&2
    rm -f "$log"
    exit 1
fi
grep -v "is ignored: it is neither a file nor a directory" "$log" >&2 || true
rm -f "$log"
rm -f "$OUT"/fluxchain-*.whl # built from source in the image, never from a stale wheel
touch "$STAMP"
