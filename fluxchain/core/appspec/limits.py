"""The fixed bounds of an app spec (the genesis-dependent ones are params: instances, expire,
components) and the patterns its fields follow. Shared by the codec, the rules and the form.
"""

from __future__ import annotations

import re
from typing import Final

from fluxchain.core.params import Tier

SPEC_VERSION: Final = 1
MAX_APP_NAME: Final = 63  # one DNS label (RFC 1035), so `<name>.app.<domain>` works
MAX_DESCRIPTION: Final = 256
MAX_CONTACTS: Final = 5
MAX_CONTACT: Final = 75
MAX_COMPONENTS_HARD: Final = 10  # decode bound; params.app_max_components may be lower
MAX_COMPONENT_NAME: Final = 63
MAX_IMAGE: Final = 200  # registry/repository:tag as Flux users write it
MAX_PORTS: Final = 5  # per component
MIN_HOST_PORT: Final = 31_000  # the range nodes open for apps; keeps node services out
MAX_HOST_PORT: Final = 39_999
MAX_CONTAINER_PORT: Final = 65_535
MAX_ENV: Final = 20  # entries per component
MAX_ENV_ENTRY: Final = 400
MAX_COMMAND: Final = 20  # arguments per component
MAX_COMMAND_ARG: Final = 400
MIN_DATA_PATH: Final = 2
MAX_DATA_PATH: Final = 200
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
COUNTRY: Final = re.compile(r"[A-Z]{2}")
CPU: Final = re.compile(r"([0-9]{1,4})(?:\.([0-9]))?")
