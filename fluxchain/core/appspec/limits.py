"""The fixed bounds of an app spec (the genesis-dependent ones are params: instances, expire,
components) and the patterns its fields follow. Shared by the codec, the rules and the form.
"""

from __future__ import annotations

import re
from typing import Final

from fluxchain.core.params import Tier

# 2: a component's ports are port records (host, container, protocol, domains) instead of
# the parallel `ports` / `container_ports` lists of version 1 (issue 20).
SPEC_VERSION: Final = 2
MAX_APP_NAME: Final = 63  # one DNS label (RFC 1035), so `<name>.app.<domain>` works
MAX_DESCRIPTION: Final = 256
MAX_CONTACTS: Final = 5
MAX_CONTACT: Final = 75
MAX_COMPONENTS_HARD: Final = 10  # decode bound; params.app_max_components may be lower
MAX_COMPONENT_NAME: Final = 63
MAX_IMAGE: Final = 200  # registry/repository:tag as Flux users write it
MAX_PORTS: Final = 5  # per component
MIN_HOST_PORT: Final = 1_024  # below it are privileged ports: ssh, dns, the gateway's 80/443
MAX_HOST_PORT: Final = 65_535
MAX_CONTAINER_PORT: Final = 65_535
# Host ports no app may publish (all protocols), with why: a node's own services, and
# infrastructure a container must never be mistaken for on the node's address. Inclusive
# ranges, sorted; docs/apps.md publishes the same table.
BANNED_HOST_PORTS: Final[tuple[tuple[int, int, str], ...]] = (
    (2_375, 2_377, "the Docker Engine API and swarm management"),
    (2_379, 2_380, "etcd client and peer ports"),
    (4_789, 4_789, "VXLAN overlay networks (Docker swarm, flannel)"),
    (6_443, 6_443, "the Kubernetes API server"),
    (7_946, 7_946, "Docker swarm node discovery"),
    (8_404, 8_404, "the gateway's HAProxy statistics page"),
    (9_100, 9_100, "the Prometheus node exporter of the host"),
    (10_250, 10_250, "the kubelet API"),
    (16_124, 16_129, "a Flux node's daemon and FluxOS ports, often on the same host"),
    (26_600, 26_799, "the node's p2p (26600+) and API (26700+) defaults, devnets included"),
)
MAX_DOMAINS: Final = 3  # per port: a name, its www. form and one more
MAX_DOMAIN: Final = 253  # RFC 1035: a name in text form without its trailing dot
MAX_DOMAIN_LABEL: Final = 63
MAX_ENV: Final = 20  # entries per component
MAX_ENV_ENTRY: Final = 400
MAX_COMMAND: Final = 20  # arguments per component
MAX_COMMAND_ARG: Final = 400
MIN_DATA_PATH: Final = 2
MAX_DATA_PATH: Final = 200
# declared volumes per component besides data_path: each replicated one is a Syncthing folder
# on every host of the app, so a handful keeps the agents' folder count small
MAX_VOLUMES: Final = 4
MAX_GEO_RULES: Final = 10
MAX_PINNED: Final = 120
NODE_ID_SIZE: Final = 20  # same as tx.NODE_ID_SIZE (tx imports this module, not the reverse)
OWNER_SIZE: Final = 20
# Per instance, summed over components: what the largest tier can hold after its reserve.
MIN_COMPONENT_CPU: Final = 1  # 0.1 core
MAX_APP_CPU: Final = 150  # 15 cores
MIN_COMPONENT_RAM_MB: Final = 100
MAX_APP_RAM_MB: Final = 59_000
MIN_COMPONENT_DISK_GB: Final = 1
MAX_APP_DISK_GB: Final = 820
MAX_EXPIRE_HARD: Final = 2**32  # decode bound; params.app_max_expire is the real limit
MAX_INSTANCES_HARD: Final = 1_000  # decode bound; params.app_max_instances is the real limit

CONTINENTS: Final = frozenset({"AF", "AN", "AS", "EU", "NA", "OC", "SA"})
TIER_NAMES: Final[dict[str, Tier]] = {t.name.lower(): t for t in Tier}

NAME: Final = re.compile(r"[a-z]([a-z0-9-]*[a-z0-9])?")
ENV_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# [registry[:port]/]path[:tag][@sha256:digest], lowercase path components as Docker requires
IMAGE: Final = re.compile(
    r"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[0-9a-f]{64})?"
)
# one DNS label as we accept it: lowercase ASCII letters, digits and '-', not at either end
DOMAIN_LABEL: Final = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
COUNTRY: Final = re.compile(r"[A-Z]{2}")
CPU: Final = re.compile(r"([0-9]{1,4})(?:\.([0-9]))?")


def banned_port_reason(port: int) -> str | None:
    """Why no app may publish host `port`, or None if one may (range checked apart)."""
    for lo, hi, why in BANNED_HOST_PORTS:
        if lo <= port <= hi:
            return why
    return None
