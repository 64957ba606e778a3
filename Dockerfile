# fluxchain: the node, the node daemon (agent) and the wallet in one image.
#
#   docker build -t fluxchain:dev .                      # base from a registry (python:3.11-slim)
#   docker build -t fluxchain:dev \                      # no registry: a local Debian base and
#       --build-arg BASE_IMAGE=fluxchain-base:bookworm \ # wheels built on the host
#       --build-arg WHEELHOUSE=build/wheelhouse .        # (make devnet-docker does both; docs/containers.md)
#
# BASE_IMAGE must provide python3 (3.11) with venv; both stages use it, so the virtualenv
# built in the first runs unchanged in the second.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# marks this stage's leftover (untagged) images, so a cleanup can prune exactly those
LABEL io.fluxchain.stage=build
# A directory of the build context holding wheels for every dependency (and setuptools,
# wheel to build fluxchain itself): pip then installs offline, for builds that cannot
# reach PyPI. Empty: dependencies come from PyPI.
ARG WHEELHOUSE=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
COPY . /src
RUN set -eu; \
    python3 -m venv /opt/fluxchain; \
    if [ -n "$WHEELHOUSE" ]; then \
        /opt/fluxchain/bin/pip install --no-index --find-links "/src/$WHEELHOUSE" /src; \
    else \
        /opt/fluxchain/bin/pip install /src; \
    fi; \
    /opt/fluxchain/bin/pip uninstall -y -q pip; \
    /opt/fluxchain/bin/python -m compileall -q /opt/fluxchain/lib

FROM ${BASE_IMAGE}
# Debian's syncthing: the agent runs it for replicated volumes (docs/apps.md). The local
# base (scripts/docker-base-image.sh) has it already, so that build stays offline; on a
# registry base (python:3.11-slim-bookworm, Debian too) apt fetches it from Debian's mirror.
RUN if ! command -v syncthing >/dev/null; then \
        apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends syncthing \
        && rm -rf /var/lib/apt/lists/*; \
    fi
# An unprivileged user owns the node home; uid/gid fixed so volumes keep their owner
# across image rebuilds.
RUN groupadd --system --gid 10001 flux \
    && useradd --system --uid 10001 --gid flux --home-dir /home/flux --create-home \
        --shell /usr/sbin/nologin flux \
    && install -d -o flux -g flux -m 0700 /home/flux/.fluxnode /home/flux/wallet
COPY --from=build /opt/fluxchain /opt/fluxchain
COPY scripts/devnet-docker-init.sh /usr/local/bin/fluxchain-devnet-init
ENV PATH=/opt/fluxchain/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FLUX_HEALTH_URL=http://127.0.0.1:26700/health
USER flux
WORKDIR /home/flux
# p2p, API
EXPOSE 26600 26700
# healthy = the node's own /health answers 200 (503 while the node is unhealthy, e.g. its
# agent stopped reporting). A container of this image with no node home (an app the
# agents run from it, a one-off wallet command) has no node to check and passes.
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; os.path.exists('/home/flux/.fluxnode/config.toml') and u.urlopen(os.environ['FLUX_HEALTH_URL'], timeout=2)"]
CMD ["fluxchain", "run", "--home", "/home/flux/.fluxnode"]
